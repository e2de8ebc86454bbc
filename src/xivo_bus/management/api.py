"""RabbitMQ's management HTTP API (``rabbitmq_management``'s ``/api/...``): its paths,
methods, JSON bodies, status codes and error bodies, with HTTP Basic authentication
against the broker's users and RabbitMQ's rules for their tags:

- ``management`` (and ``policymaker``): the vhosts they have permissions on, their own
  connections and channels, and the queues, exchanges and bindings there;
- ``monitoring``: everything, read-only beyond what ``management`` may change;
- ``administrator``: everything, users, vhosts, permissions and definitions included.

Changes to queues, exchanges and bindings also need the user's configure, write or read
permission on them, as over AMQP. Every change is on disk before it is answered.

Against cross-site requests: a browser says where a request comes from (``Origin``,
``Sec-Fetch-Site``); a change asked for by a page of another site is refused, whatever
credentials the browser would send with it.

Served as an ASGI application (``server``), beside the dashboard's files.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

from pamqp import commands

from xivo_bus.amqp import properties as amqp_properties
from xivo_bus.amqp.errors import AMQPError
from xivo_bus.broker.access import DEFAULT_EXCHANGE, Access
from xivo_bus.broker.admin import Admin, AdminError, connection_name
from xivo_bus.broker.auth import AuthenticationFailed, authenticate
from xivo_bus.broker.definitions import json_value
from xivo_bus.broker.model.exchanges import Exchange
from xivo_bus.broker.model.message import Message
from xivo_bus.broker.session.server_state import ServerState
from xivo_bus.management import listing, objects
from xivo_bus.management.sampler import Sampler, churn

log = logging.getLogger("xivo_bus.management")

STATIC = Path(__file__).parent / "static"
MAX_BODY = 64 << 20  # definitions of many queues and users
MANAGEMENT_TAGS = ("administrator", "monitoring", "policymaker", "management")
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
}
REALM = 'Basic realm="RabbitMQ Management"'
# the dashboard's files: no script or style from elsewhere, never framed by another site
PAGE_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}
NO_VHOST_ACCESS = "User not authorised to access virtual host"


class HttpError(Exception):
    """An answer other than success: status, RabbitMQ's ``error`` and ``reason``."""

    def __init__(self, status: int, error: str, reason: str, headers: dict | None = None):
        super().__init__(reason)
        self.status, self.error, self.reason = status, error, reason
        self.headers = headers or {}


def not_found() -> HttpError:
    return HttpError(404, "Object Not Found", "Not Found")


def bad_request(reason: str) -> HttpError:
    return HttpError(400, "bad_request", reason)


def not_authorised(reason: str = "Not administrator user") -> HttpError:
    return HttpError(401, "not_authorised", reason)


class Request:
    def __init__(self, scope: dict, body: bytes):
        self.method: str = scope["method"]
        raw = scope.get("raw_path") or scope["path"].encode()
        path = raw.decode("latin-1").split("?", 1)[0]
        # each segment decoded on its own: a vhost named "/" is %2F in one segment
        self.segments = [unquote(part) for part in path.split("/")[1:]]
        self.query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        self.headers = {
            key.decode("latin-1").lower(): value.decode("latin-1")
            for key, value in scope.get("headers", [])
        }
        self.body = body
        client = scope.get("client")
        self.peer_host = client[0] if client else None
        self.user: Any = None

    def json(self, bad: str = "not_json") -> Any:
        """The body as JSON (an empty body: an empty object); 400 ``bad`` otherwise."""
        if not self.body.strip():
            return {}
        try:
            return json.loads(self.body)
        except ValueError:
            raise bad_request(bad) from None


Handler = Callable[..., Awaitable[Any]]


class ManagementApi:
    """The ASGI application: ``/api/...``, and the dashboard's files at ``/``."""

    def __init__(
        self,
        state: ServerState,
        admin: Admin,
        sampler: Sampler,
        listeners=(),
        data_dir: str | None = None,
    ):
        self.state = state
        self.data_dir = data_dir
        self.started_at = time.time()
        self.admin = admin
        self.sampler = sampler
        self.listeners = listeners  # (Listener, host, port) of the AMQP listeners
        self.host, self.port = "", 0  # this API's address, once bound
        self.routes: list[tuple[tuple[str, ...], dict[str, Handler]]] = _routes(self)

    # -- ASGI -------------------------------------------------------------------------

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if len(body) > MAX_BODY:
                await _send(send, 413, _error_body("payload_too_large", "request too large"))
                return
            if not message.get("more_body"):
                break
        request = Request(scope, body)
        try:
            if request.segments[:1] == ["api"]:
                status, payload, headers = await self._api(request)
                if payload is None:
                    await _send(send, status, b"", headers=headers)
                else:
                    await _send(send, status, _json(payload), headers=headers)
            else:
                await self._static(request, send)
        except HttpError as error:
            body = _error_body(error.error, error.reason) if error.error else b""
            await _send(send, error.status, body, headers=error.headers)
        except Exception:  # a bug of ours answers 500 and the broker goes on
            log.exception("management API: %s %s", request.method, "/".join(request.segments))
            await _send(send, 500, _error_body("internal_server_error", "internal error"))

    async def _static(self, request: Request, send) -> None:
        if request.method not in ("GET", "HEAD"):
            raise HttpError(405, "method_not_allowed", "Method Not Allowed")
        parts = [part for part in request.segments if part]
        if not parts or parts == ["index.html"]:
            path = STATIC / "index.html"
        elif parts[0] == "static" and not any(part.startswith(".") for part in parts):
            path = STATIC.joinpath(*parts[1:])
        else:
            raise not_found()
        try:
            path.resolve().relative_to(STATIC.resolve())
            data = path.read_bytes()
        except (OSError, ValueError):
            raise not_found() from None
        kind = CONTENT_TYPES.get(path.suffix, "application/octet-stream")
        await _send(send, 200, data, kind, {"cache-control": "no-cache", **PAGE_HEADERS})

    async def _api(self, request: Request) -> tuple[int, Any, dict]:
        parts = request.segments[1:]
        if parts and parts[-1] == "":
            parts = parts[:-1]  # /api/queues/ as /api/queues
        if request.method not in ("GET", "HEAD", "OPTIONS") and _cross_site(request):
            raise HttpError(403, "forbidden", "changes asked for by another site are refused")
        for pattern, methods in self.routes:
            args = _match(pattern, parts)
            if args is None:
                continue
            method = "GET" if request.method == "HEAD" else request.method
            allowed = ", ".join((["HEAD"] if "GET" in methods else []) + [*methods, "OPTIONS"])
            if method == "OPTIONS":
                return 200, None, {"allow": allowed}
            handler = methods.get(method)
            if handler is None:
                return 405, None, {"allow": allowed}
            request.user = self._authenticate(request)
            result = await handler(request, *args)
            if isinstance(result, tuple):
                return result
            if result is None:
                return 204, None, {}
            return 200, result, {}
        raise not_found()

    # -- authentication and authorisation ---------------------------------------------

    def _authenticate(self, request: Request):
        # the dashboard says it is a script: no browser login box for it
        challenge = {} if request.headers.get("x-requested-with") else {"www-authenticate": REALM}
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            raise HttpError(401, "", "", challenge)  # RabbitMQ answers no body
        failed = HttpError(401, "not_authorized", "Login failed", challenge)
        try:
            name, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
            user = authenticate(
                self.state.users,
                "PLAIN",
                b"\0" + name.encode() + b"\0" + password.encode(),
                request.peer_host,
            )
        except (binascii.Error, UnicodeDecodeError, AuthenticationFailed):
            raise failed from None
        if not set(user.tags) & set(MANAGEMENT_TAGS):
            raise not_authorised("Not management user")
        return user

    @staticmethod
    def _is(request: Request, *tags: str) -> bool:
        return bool(set(request.user.tags) & set(tags))

    def _require_admin(self, request: Request) -> None:
        if not self._is(request, "administrator"):
            raise not_authorised("Not administrator user")

    def _require_monitor(self, request: Request) -> None:
        if not self._is(request, "administrator", "monitoring"):
            raise not_authorised("Not monitor user")

    def _sees_all_connections(self, request: Request) -> bool:
        return self._is(request, "administrator", "monitoring")

    def _visible_vhosts(self, request: Request) -> list:
        """An administrator sees every vhost, anyone else those they have permissions on."""
        if self._is(request, "administrator"):
            return list(self.state.vhosts.values())
        return [
            vhost for name, vhost in self.state.vhosts.items() if name in request.user.permissions
        ]

    def _vhost(self, request: Request, name: str):
        vhost = self.state.vhosts.get(name)
        if vhost is None:
            raise not_found()
        if not self._is(request, "administrator") and name not in request.user.permissions:
            raise not_authorised(NO_VHOST_ACCESS)
        return vhost

    def _vhost_for_change(self, request: Request, name: str):
        """A vhost where the user may change things: its own permissions decide, as over
        AMQP (an administrator needs them too)."""
        vhost = self.state.vhosts.get(name)
        if vhost is None:
            raise HttpError(404, "not_found", "vhost_not_found")
        if name not in request.user.permissions:
            raise not_authorised(NO_VHOST_ACCESS)
        return vhost

    def _check(self, request: Request, vhost: str, perm: str, kind: str, name: str) -> None:
        try:
            Access(request.user, vhost).check(perm, kind, name)
        except AMQPError as error:
            raise not_authorised(error.reply_text) from None

    def _connections(self, request: Request) -> list:
        found = [c for c in self.state.connections if c.user is not None and c.vhost is not None]
        if self._sees_all_connections(request):
            return found
        return [c for c in found if c.user.name == request.user.name]

    # -- listings ---------------------------------------------------------------------

    def _list(self, request: Request, items: list[dict]) -> Any:
        try:
            return listing.answer(items, request.query)
        except listing.ListingError as error:
            raise HttpError(400, error.error, str(error)) from None

    # -- overview, node, identity -----------------------------------------------------

    async def overview(self, request: Request):
        vhosts = self._visible_vhosts(request)
        queues = [queue for vhost in vhosts for queue in vhost.queues.values()]
        connections = self._connections(request)
        ready = sum(queue.message_count for queue in queues)
        unacked = sum(queue.unacked for queue in queues)
        lengths = {
            "messages": ready + unacked,
            "messages_ready": ready,
            "messages_unacknowledged": unacked,
        }
        rates = self.sampler.overview_rates()
        counts = self.sampler.overview_stats().totals()
        queue_totals: dict[str, Any] = {**lengths}
        stats = objects.message_stats(counts, rates, objects.OVERVIEW_STATS)
        for name in lengths:
            queue_totals[f"{name}_details"] = {"rate": rates.get(name, 0.0)}
        age = _age(request.query, "msg_rates_age", "msg_rates_incr")
        if age is not None:
            samples = self.sampler.overview_samples(*age)
            for name in objects.OVERVIEW_STATS[0]:
                if name in stats:
                    stats[f"{name}_details"].update(_samples(samples, "counts", name))
        age = _age(request.query, "lengths_age", "lengths_incr")
        if age is not None:
            samples = self.sampler.overview_samples(*age)
            for name in lengths:
                queue_totals[f"{name}_details"].update(_samples(samples, "lengths", name))
        listeners = [
            {
                "node": objects.NODE,
                "protocol": "amqp/ssl" if listener.tls is not None else "amqp",
                "ip_address": host,
                "port": port,
                "socket_opts": {},
            }
            for listener, host, port in self.listeners
        ]
        return {
            **objects.versions(),
            "cluster_name": objects.NODE,
            "node": objects.NODE,
            "rates_mode": "basic",
            "release_series_support_status": "supported",
            "disable_stats": False,
            "enable_queue_totals": False,
            "exchange_types": [
                {"name": name, "description": "", "enabled": True}
                for name in objects.EXCHANGE_TYPES
            ],
            "sample_retention_policies": {
                "global": [600, 3600, 28800, 86400],
                "basic": [600, 3600],
                "detailed": [600],
            },
            "message_stats": stats,
            "churn_rates": {
                key: value
                for name, count in churn(self.state).items()
                for key, value in (
                    (name, count),
                    (f"{name}_details", {"rate": rates.get(name, 0.0)}),
                )
            },
            "queue_totals": queue_totals,
            "object_totals": {
                "channels": sum(len(c.channels) for c in connections),
                "connections": len(connections),
                "consumers": sum(queue.consumer_count for queue in queues),
                "exchanges": sum(len(vhost.exchanges) for vhost in vhosts),
                "queues": len(queues),
            },
            "statistics_db_event_queue": 0,
            "listeners": listeners,
            "contexts": [
                {
                    "node": objects.NODE,
                    "description": "RabbitMQ Management",
                    "path": "/",
                    "ip": self.host,
                    "port": str(self.port),
                }
            ],
        }

    async def whoami(self, request: Request):
        return {"name": request.user.name, "tags": list(request.user.tags)}

    async def cluster_name(self, request: Request):
        return {"name": objects.NODE}

    async def extensions(self, request: Request):
        return []

    def _node(self) -> dict:
        return objects.node(self.state, self.started_at, self.data_dir)

    async def nodes(self, request: Request):
        self._require_monitor(request)
        return self._list(request, [self._node()])

    async def node(self, request: Request, name: str):
        self._require_monitor(request)
        if name != objects.NODE:
            raise not_found()
        return self._node()

    # -- connections and channels -----------------------------------------------------

    def _connection(self, request: Request, name: str):
        for connection in self._connections(request):
            if connection_name(connection) == name:
                return connection
        raise not_found()

    async def connections(self, request: Request, vhost: str | None = None):
        found = self._connections(request)
        if vhost is not None:
            self._vhost(request, vhost)
            found = [c for c in found if c.vhost.name == vhost]
        return self._list(request, [objects.connection(c) for c in found])

    async def connection(self, request: Request, name: str):
        return objects.connection(self._connection(request, name))

    async def close_connection(self, request: Request, name: str):
        connection = self._connection(request, name)
        reason = request.headers.get("x-reason", "Closed via management plugin")
        await self.admin.close_connection(connection_name(connection), reason)

    def _channels(self, connections) -> list[dict]:
        return [
            objects.channel(connection, channel, self.sampler)
            for connection in connections
            for channel in list(connection.channels.values())
        ]

    async def channels(self, request: Request, vhost: str | None = None):
        connections = self._connections(request)
        if vhost is not None:
            self._vhost(request, vhost)
            connections = [c for c in connections if c.vhost.name == vhost]
        return self._list(request, self._channels(connections))

    async def connection_channels(self, request: Request, name: str):
        return self._list(request, self._channels([self._connection(request, name)]))

    async def channel(self, request: Request, name: str):
        for connection in self._connections(request):
            for channel in list(connection.channels.values()):
                if objects.channel_name(connection, channel.number) == name:
                    info = objects.channel(connection, channel, self.sampler)
                    info["consumer_details"] = [
                        objects.consumer(consumer) for consumer in channel.consumers.values()
                    ]
                    info["deliveries"] = []
                    info["publishes"] = []
                    return info
        raise not_found()

    async def consumers(self, request: Request, vhost: str | None = None):
        vhosts = [self._vhost(request, vhost)] if vhost else self._visible_vhosts(request)
        return self._list(
            request,
            [
                objects.consumer(consumer)
                for found in vhosts
                for queue in found.queues.values()
                for consumer in queue.consumers
            ],
        )

    # -- exchanges --------------------------------------------------------------------

    def _exchange(self, request: Request, vhost_name: str, name: str) -> tuple[Any, Exchange]:
        vhost = self._vhost(request, vhost_name)
        exchange = vhost.exchanges.get("" if name == DEFAULT_EXCHANGE else name)
        if exchange is None:
            raise not_found()
        return vhost, exchange

    async def exchanges(self, request: Request, vhost: str | None = None):
        vhosts = [self._vhost(request, vhost)] if vhost else self._visible_vhosts(request)
        return self._list(
            request,
            [
                objects.exchange(found.name, exchange, self.sampler)
                for found in vhosts
                for exchange in found.exchanges.values()
            ],
        )

    async def exchange(self, request: Request, vhost: str, name: str):
        found, exchange = self._exchange(request, vhost, name)
        return {
            **objects.exchange(found.name, exchange, self.sampler),
            "incoming": [],
            "outgoing": [],
        }

    async def declare_exchange(self, request: Request, vhost_name: str, name: str):
        vhost = self._vhost_for_change(request, vhost_name)
        body = _object(request.json())
        if name == DEFAULT_EXCHANGE or name.startswith("amq."):
            raise not_authorised("Access refused.")
        self._check(request, vhost_name, "configure", "exchange", name)
        kind = body.get("type", "direct")
        if kind not in objects.EXCHANGE_TYPES:
            raise bad_request(f"unknown exchange type '{kind}'")
        existed = name in vhost.exchanges
        _amqp(
            vhost.declare_exchange,
            name,
            kind,
            _flag(body, "durable", True),
            _flag(body, "auto_delete", False),
            _flag(body, "internal", False),
            _arguments(body),
        )
        await self.admin.settled()
        return (204, None, {}) if existed else (201, None, {})

    async def delete_exchange(self, request: Request, vhost_name: str, name: str):
        vhost, exchange = self._exchange(request, vhost_name, name)
        self._vhost_for_change(request, vhost_name)
        if exchange.name == "" or exchange.name.startswith("amq."):
            raise not_authorised("Access refused.")
        self._check(request, vhost_name, "configure", "exchange", name)
        _amqp(vhost.delete_exchange, exchange.name, request.query.get("if-unused") == "true")
        await self.admin.settled()

    async def publish(self, request: Request, vhost_name: str, name: str):
        vhost = self._vhost_for_change(request, vhost_name)
        exchange = vhost.exchanges.get("" if name == DEFAULT_EXCHANGE else name)
        if exchange is None:
            raise bad_request(f"404 NOT_FOUND - no exchange '{name}' in vhost '{vhost_name}'")
        body = _object(request.json())
        self._check(request, vhost_name, "write", "exchange", exchange.name or DEFAULT_EXCHANGE)
        _require(body, "routing_key", "properties", "payload", "payload_encoding")
        payload = body["payload"]
        if body["payload_encoding"] == "base64":
            try:
                data = base64.b64decode(payload, validate=True)
            except (binascii.Error, TypeError):
                raise bad_request("payload is not valid base64") from None
        elif body["payload_encoding"] == "string":
            data = str(payload).encode()
        else:
            raise bad_request(f"unsupported payload_encoding: {body['payload_encoding']}")
        props = _properties(_object(body["properties"]))
        message = Message(exchange.name, str(body["routing_key"]), props, data)
        limit = self.state.max_message_size
        if len(data) > limit:
            raise bad_request(f"message size {len(data)} is larger than max size {limit}")
        queues = vhost.route(exchange, message)
        exchange.stats.publish_in += 1
        if queues:
            exchange.stats.publish_out += 1
            message = message.without_bcc()
            for queue in queues:
                queue.enqueue(message)
        await self.admin.settled()
        return {"routed": bool(queues)}

    # -- queues -----------------------------------------------------------------------

    def _queue(self, request: Request, vhost_name: str, name: str):
        vhost = self._vhost(request, vhost_name)
        queue = vhost.queues.get(name)
        if queue is None:
            raise not_found()
        return vhost, queue

    async def queues(self, request: Request, vhost: str | None = None):
        vhosts = [self._vhost(request, vhost)] if vhost else self._visible_vhosts(request)
        return self._list(
            request,
            [
                objects.queue(found.name, queue, self.sampler)
                for found in vhosts
                for queue in list(found.queues.values())
            ],
        )

    async def queue(self, request: Request, vhost_name: str, name: str):
        vhost, queue = self._queue(request, vhost_name, name)
        info = objects.queue(vhost.name, queue, self.sampler)
        info["consumer_details"] = [objects.consumer(consumer) for consumer in queue.consumers]
        info["deliveries"] = []
        info["incoming"] = []
        return info

    async def declare_queue(self, request: Request, vhost_name: str, name: str):
        vhost = self._vhost_for_change(request, vhost_name)
        body = _object(request.json())
        self._check(request, vhost_name, "configure", "queue", name)
        existed = name in vhost.queues
        if body.get("exclusive"):
            raise bad_request("exclusive queues cannot be declared over HTTP")
        _amqp(
            vhost.declare_queue,
            name,
            _flag(body, "durable", True),
            False,
            _flag(body, "auto_delete", False),
            _arguments(body),
            None,
        )
        await self.admin.settled()
        return (204, None, {}) if existed else (201, None, {})

    async def delete_queue(self, request: Request, vhost_name: str, name: str):
        vhost, queue = self._queue(request, vhost_name, name)
        self._vhost_for_change(request, vhost_name)
        self._check(request, vhost_name, "configure", "queue", name)
        if request.query.get("if-empty") == "true" and queue.message_count:
            raise bad_request(f"queue '{name}' in vhost '{vhost_name}' not empty")
        if request.query.get("if-unused") == "true" and queue.consumer_count:
            raise bad_request(f"queue '{name}' in vhost '{vhost_name}' in use")
        vhost.delete_queue(queue)
        await self.admin.settled()

    async def purge(self, request: Request, vhost_name: str, name: str):
        _, queue = self._queue(request, vhost_name, name)
        self._vhost_for_change(request, vhost_name)
        self._check(request, vhost_name, "read", "queue", name)
        queue.purge()
        await self.admin.settled()

    async def get(self, request: Request, vhost_name: str, name: str):
        vhost = self._vhost_for_change(request, vhost_name)
        queue = vhost.queues.get(name)
        if queue is None:
            raise HttpError(
                404, "not_found", f"NOT_FOUND - no queue '{name}' in vhost '{vhost_name}'"
            )
        self._check(request, vhost_name, "read", "queue", name)
        body = _object(request.json())
        _require(body, "count", "ackmode", "encoding")
        ackmode = body["ackmode"]
        if ackmode not in GET_ACKMODES:
            raise bad_request(f"unknown ackmode: {ackmode}")
        if body["encoding"] not in ("auto", "base64"):
            raise bad_request(f"unknown encoding: {body['encoding']}")
        count = _int(body["count"], "count")
        truncate = _int(body["truncate"], "truncate") if body.get("truncate") else None
        if queue.exclusive_owner is not None:
            raise bad_request(
                f"RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '{name}'"
                f" in vhost '{vhost_name}'"
            )
        got, deliveries = [], []
        for _ in range(count):
            taken = queue.get(False)
            if taken is None:
                break
            entry, delivery = taken
            deliveries.append(delivery)
            got.append(_got(entry, queue.message_count, body["encoding"], truncate))
        if deliveries:
            settle = GET_ACKMODES[ackmode]
            settle(queue, deliveries)
        await self.admin.settled()
        return got

    async def queue_bindings(self, request: Request, vhost_name: str, name: str):
        vhost, queue = self._queue(request, vhost_name, name)
        return self._list(
            request,
            [
                found
                for found in objects.bindings(vhost)
                if found["destination_type"] == "queue" and found["destination"] == queue.name
            ],
        )

    # -- bindings ---------------------------------------------------------------------

    async def bindings(self, request: Request, vhost: str | None = None):
        vhosts = [self._vhost(request, vhost)] if vhost else self._visible_vhosts(request)
        return self._list(request, [found for v in vhosts for found in objects.bindings(v)])

    async def exchange_bindings(self, request: Request, vhost_name: str, name: str, side: str):
        vhost, exchange = self._exchange(request, vhost_name, name)
        if side not in ("source", "destination"):
            raise not_found()
        found = [
            binding
            for binding in objects.bindings(vhost)
            if binding[side] == exchange.name
            and (side == "source" or binding["destination_type"] == "exchange")
        ]
        return self._list(request, found)

    def _binding_ends(self, request, vhost_name, source, kind, destination):
        vhost = self._vhost(request, vhost_name)
        exchange = vhost.exchanges.get(source)
        if kind == "q":
            target = vhost.queues.get(destination)
        elif kind == "e":
            target = vhost.exchanges.get(destination)
        else:
            raise not_found()
        if exchange is None:
            raise HttpError(404, "not_found", f"no exchange '{source}' in vhost '{vhost_name}'")
        if target is None:
            what = "queue" if kind == "q" else "exchange"
            raise HttpError(404, "not_found", f"no {what} '{destination}' in vhost '{vhost_name}'")
        return vhost, exchange, target

    def _between(self, vhost, exchange, target) -> list[dict]:
        kind = "exchange" if isinstance(target, Exchange) else "queue"
        return [
            found
            for found in objects.bindings(vhost)
            if found["source"] == exchange.name
            and found["destination"] == target.name
            and found["destination_type"] == kind
            and found["source"] != ""
        ]

    async def bindings_between(self, request, vhost_name, source, kind, destination):
        found = self._binding_ends(request, vhost_name, source, kind, destination)
        return self._list(request, self._between(*found))

    async def bind(self, request, vhost_name, source, kind, destination):
        vhost, exchange, target = self._binding_ends(request, vhost_name, source, kind, destination)
        self._vhost_for_change(request, vhost_name)
        body = _object(request.json())
        if exchange.name == "":
            raise not_authorised("ACCESS_REFUSED - operation not permitted on the default exchange")
        target_kind = "exchange" if kind == "e" else "queue"
        self._check(request, vhost_name, "write", target_kind, target.name)
        self._check(request, vhost_name, "read", "exchange", exchange.name)
        key = str(body.get("routing_key", ""))
        arguments = _arguments(body)
        _amqp(vhost.bind, exchange, target, key, arguments)
        await self.admin.settled()
        # as RabbitMQ: relative to the request's path, the destination then the binding
        props = objects.properties_key(key, arguments)
        location = f"{quote(target.name, safe='')}/{quote(props, safe='')}"
        return 201, None, {"location": location}

    async def binding(self, request, vhost_name, source, kind, destination, props):
        found = self._binding_ends(request, vhost_name, source, kind, destination)
        for binding in self._between(*found):
            if binding["properties_key"] == props:
                return binding
        raise not_found()

    async def unbind(self, request, vhost_name, source, kind, destination, props):
        vhost, exchange, target = self._binding_ends(request, vhost_name, source, kind, destination)
        self._vhost_for_change(request, vhost_name)
        for binding in self._between(vhost, exchange, target):
            if binding["properties_key"] == props:
                target_kind = "exchange" if kind == "e" else "queue"
                self._check(request, vhost_name, "write", target_kind, target.name)
                self._check(request, vhost_name, "read", "exchange", exchange.name)
                arguments = _find_arguments(exchange, target, binding["routing_key"], props)
                vhost.unbind(exchange, target, binding["routing_key"], arguments)
                await self.admin.settled()
                return None
        raise not_found()

    # -- vhosts -----------------------------------------------------------------------

    async def vhosts(self, request: Request):
        return self._list(
            request,
            [objects.vhost(found, self.sampler) for found in self._visible_vhosts(request)],
        )

    async def vhost(self, request: Request, name: str):
        return objects.vhost(self._vhost(request, name), self.sampler)

    async def put_vhost(self, request: Request, name: str):
        self._require_admin(request)
        request.json()  # description and tags are accepted, not kept
        existed = name in self.state.vhosts
        await _admin(self.admin.add_vhost(name))
        return (204, None, {}) if existed else (201, None, {})

    async def delete_vhost(self, request: Request, name: str):
        self._require_admin(request)
        if name not in self.state.vhosts:
            raise not_found()
        await _admin(self.admin.delete_vhost(name))

    async def vhost_permissions(self, request: Request, name: str):
        self._require_admin(request)
        self._vhost(request, name)
        return self._list(
            request,
            [
                objects.permission(user.name, name, user.permissions[name])
                for user in self.state.users
                if name in user.permissions
            ],
        )

    async def vhost_topic_permissions(self, request: Request, name: str):
        self._require_admin(request)
        self._vhost(request, name)
        return self._list(
            request,
            [
                objects.topic_permission(user.name, name, exchange, found)
                for user in self.state.users
                for exchange, found in sorted(user.topic_permissions.get(name, {}).items())
            ],
        )

    async def aliveness_test(self, request: Request, name: str):
        vhost = self._vhost(request, name)
        if name not in request.user.permissions:
            raise not_authorised("Access refused.")
        queue = _amqp(vhost.declare_queue, "aliveness-test", False, False, False, {}, None)
        queue.enqueue(Message("", "aliveness-test", b"\x00\x00", b"test_message"))
        taken = queue.get(True)
        if taken is None or bytes(taken[0].message.body) != b"test_message":
            return 503, {"status": "failed", "reason": "the test message did not come back"}, {}
        return {"status": "ok"}

    # -- users and permissions --------------------------------------------------------

    async def users(self, request: Request):
        self._require_admin(request)
        return self._list(request, [objects.user(found) for found in self.state.users])

    async def users_without_permissions(self, request: Request):
        self._require_admin(request)
        return self._list(
            request,
            [objects.user(found) for found in self.state.users if not found.permissions],
        )

    def _user(self, name: str):
        found = self.state.users.get(name)
        if found is None:
            raise not_found()
        return found

    async def user(self, request: Request, name: str):
        self._require_admin(request)
        return objects.user(self._user(name))

    async def put_user(self, request: Request, name: str):
        self._require_admin(request)
        body = _object(request.json())
        _require(body, "tags")
        tags = body["tags"]
        if isinstance(tags, str):
            tags = [tag.strip() for tag in tags.split(",") if tag.strip()]
        existed = name in self.state.users
        if "password_hash" in body:
            await _admin(
                self.admin.import_definitions(
                    {
                        "users": [
                            {
                                "name": name,
                                "password_hash": body["password_hash"],
                                "hashing_algorithm": body.get(
                                    "hashing_algorithm", "rabbit_password_hashing_sha256"
                                ),
                                "tags": tags,
                            }
                        ]
                    }
                )
            )
        elif "password" in body:
            if existed:
                await _admin(self.admin.change_password(name, str(body["password"])))
            else:
                await _admin(self.admin.add_user(name, str(body["password"])))
        elif not existed:
            await _admin(self.admin.add_user(name, None))
        await _admin(self.admin.set_user_tags(name, list(tags)))
        return (204, None, {}) if existed else (201, None, {})

    async def delete_user(self, request: Request, name: str):
        self._require_admin(request)
        self._user(name)
        await _admin(self.admin.delete_user(name))

    async def bulk_delete_users(self, request: Request):
        self._require_admin(request)
        names = _object(request.json()).get("users")
        if not isinstance(names, list):
            raise bad_request("[{key_missing,users}]")
        for name in names:
            if str(name) in self.state.users:
                await _admin(self.admin.delete_user(str(name)))

    async def user_permissions(self, request: Request, name: str):
        self._require_admin(request)
        found = self._user(name)
        return self._list(
            request,
            [
                objects.permission(found.name, vhost, permission)
                for vhost, permission in sorted(found.permissions.items())
            ],
        )

    async def user_topic_permissions(self, request: Request, name: str):
        self._require_admin(request)
        found = self._user(name)
        return self._list(
            request,
            [
                objects.topic_permission(found.name, vhost, exchange, permission)
                for vhost, by_exchange in sorted(found.topic_permissions.items())
                for exchange, permission in sorted(by_exchange.items())
            ],
        )

    async def permissions(self, request: Request):
        self._require_admin(request)
        return self._list(
            request,
            [
                objects.permission(user.name, vhost, permission)
                for user in self.state.users
                for vhost, permission in sorted(user.permissions.items())
            ],
        )

    async def topic_permissions(self, request: Request):
        self._require_admin(request)
        return self._list(
            request,
            [
                objects.topic_permission(user.name, vhost, exchange, permission)
                for user in self.state.users
                for vhost, by_exchange in sorted(user.topic_permissions.items())
                for exchange, permission in sorted(by_exchange.items())
            ],
        )

    async def permission(self, request: Request, vhost: str, name: str):
        self._require_admin(request)
        found = self._user(name)
        if vhost not in self.state.vhosts or vhost not in found.permissions:
            raise not_found()
        return objects.permission(found.name, vhost, found.permissions[vhost])

    async def put_permission(self, request: Request, vhost: str, name: str):
        self._require_admin(request)
        if vhost not in self.state.vhosts or name not in self.state.users:
            raise bad_request("vhost_or_user_not_found")
        body = _object(request.json())
        _require(body, "configure", "write", "read")
        existed = vhost in self._user(name).permissions
        await _admin(
            self.admin.set_permissions(
                vhost, name, str(body["configure"]), str(body["write"]), str(body["read"])
            )
        )
        return (204, None, {}) if existed else (201, None, {})

    async def delete_permission(self, request: Request, vhost: str, name: str):
        self._require_admin(request)
        if vhost not in self._user(name).permissions or vhost not in self.state.vhosts:
            raise not_found()
        await _admin(self.admin.clear_permissions(vhost, name))

    async def topic_permission(self, request: Request, vhost: str, name: str):
        self._require_admin(request)
        found = self._user(name).topic_permissions.get(vhost)
        if not found:
            raise not_found()
        return [
            objects.topic_permission(name, vhost, exchange, permission)
            for exchange, permission in sorted(found.items())
        ]

    async def put_topic_permission(self, request: Request, vhost: str, name: str):
        self._require_admin(request)
        if vhost not in self.state.vhosts or name not in self.state.users:
            raise bad_request("vhost_or_user_not_found")
        body = _object(request.json())
        _require(body, "exchange", "write", "read")
        await _admin(
            self.admin.set_topic_permissions(
                vhost, name, str(body["exchange"]), str(body["write"]), str(body["read"])
            )
        )
        return 201, None, {}

    async def delete_topic_permission(self, request: Request, vhost: str, name: str):
        self._require_admin(request)
        if not self._user(name).topic_permissions.get(vhost):
            raise not_found()
        await _admin(self.admin.clear_topic_permissions(vhost, name, None))

    # -- definitions ------------------------------------------------------------------

    async def definitions(self, request: Request, vhost: str | None = None):
        self._require_admin(request)
        exported = await self.admin.export_definitions()
        if vhost is None:
            headers = {}
            if "download" in request.query:
                filename = request.query["download"].replace('"', "")
                headers["content-disposition"] = f'attachment; filename="{filename}"'
            return 200, exported, headers
        self._vhost(request, vhost)
        return {
            "rabbit_version": exported["rabbit_version"],
            **{
                key: [
                    {k: v for k, v in entry.items() if k != "vhost"}
                    for entry in exported[key]
                    if entry.get("vhost") == vhost
                ]
                for key in ("parameters", "policies", "queues", "exchanges", "bindings")
            },
        }

    async def load_definitions(self, request: Request, vhost: str | None = None):
        self._require_admin(request)
        body = request.json()
        if isinstance(body, dict) and "file" in body and len(body) == 1:
            try:  # the dashboard's upload form sends the file's text
                body = json.loads(body["file"])
            except (TypeError, ValueError) as error:
                raise bad_request(f"the definitions are not JSON: {error}") from None
        body = _object(body)
        if vhost is not None:
            self._vhost(request, vhost)
            body = {
                key: [{**entry, "vhost": vhost} for entry in body.get(key) or []]
                for key in ("parameters", "policies", "queues", "exchanges", "bindings")
                if body.get(key)
            }
        await _admin(self.admin.import_definitions(body))

    # -- health checks ----------------------------------------------------------------

    async def alarms_check(self, request: Request):
        raised = self.state.alarms.raised
        if raised:
            return (
                503,
                {
                    "status": "failed",
                    "reason": "resource alarm(s) in effect in the cluster",
                    "alarms": [{"node": objects.NODE, "resource": name} for name in raised],
                },
                {},
            )
        return {"status": "ok"}

    async def virtual_hosts_check(self, request: Request):
        return {"status": "ok"}

    async def empty_list(self, request: Request, *_: str):
        return []


# -- helpers ----------------------------------------------------------------------------


def _cross_site(request: Request) -> bool:
    """A browser's request made by a page of another site."""
    if request.headers.get("sec-fetch-site") == "cross-site":
        return True
    origin = request.headers.get("origin")
    return origin is not None and origin.split("://", 1)[-1] != request.headers.get("host")


def _json(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def _error_body(error: str, reason: str) -> bytes:
    return _json({"error": error, "reason": reason})


async def _send(send, status: int, body: bytes, kind=None, headers=None) -> None:
    all_headers = {
        "content-type": kind or "application/json",
        "cache-control": "no-cache",
        "vary": "accept, accept-encoding, origin",
        **(headers or {}),
    }
    if not body:
        all_headers.pop("content-type")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(k.encode(), str(v).encode()) for k, v in all_headers.items()],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _match(pattern: tuple[str, ...], parts: list[str]) -> list[str] | None:
    if len(pattern) != len(parts):
        return None
    args = []
    for expected, part in zip(pattern, parts, strict=True):
        if expected == "*":
            args.append(part)
        elif expected != part:
            return None
    return args


def _object(body: Any) -> dict:
    if not isinstance(body, dict):
        raise bad_request("the body must be a JSON object")
    return body


def _require(body: dict, *keys: str) -> None:
    """400 naming every missing key, as RabbitMQ lists them."""
    missing = [f"{{key_missing,{key}}}" for key in keys if key not in body]
    if missing:
        raise bad_request("[" + ",\n ".join(missing) + "]")


def _flag(body: dict, key: str, default: bool) -> bool:
    value = body.get(key, default)
    if isinstance(value, str) and value in ("true", "false"):
        return value == "true"
    if not isinstance(value, bool):
        raise bad_request(f"{key} must be true or false")
    return value


def _int(value: Any, key: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise bad_request(f"{key} must be a whole number") from None
    if number < 0:
        raise bad_request(f"{key} must not be negative")
    return number


def _arguments(body: dict) -> dict:
    arguments = body.get("arguments") or {}
    if not isinstance(arguments, dict):
        raise bad_request("arguments must be a JSON object")
    return arguments


def _amqp(operation, *args):
    """A model operation; its AMQP refusal as RabbitMQ's API answers it."""
    try:
        return operation(*args)
    except AMQPError as error:
        if error.reply_code == 404:
            raise not_found() from None
        if error.reply_code == 403:
            raise not_authorised(error.reply_text) from None
        # the API says what is wrong without AMQP's reply-code prefix, as RabbitMQ's
        raise bad_request(re.sub(r"^[A-Z_]+ - ", "", error.reply_text)) from None


async def _admin(awaitable) -> Any:
    try:
        return await awaitable
    except AdminError as error:
        raise bad_request(str(error)) from None


def _age(query: dict, age_key: str, increment_key: str) -> tuple[float, float] | None:
    if age_key not in query:
        return None
    try:
        age = float(query[age_key])
        increment = float(query.get(increment_key, 5))
    except ValueError:
        raise bad_request(f"{age_key} and {increment_key} must be numbers") from None
    if age <= 0 or increment <= 0:
        raise bad_request(f"{age_key} and {increment_key} must be above 0")
    return age, increment


def _samples(samples, kind: str, name: str) -> dict:
    values = [
        {"sample": getattr(sample, kind).get(name, 0), "timestamp": objects.timestamp(sample.when)}
        for sample in samples
    ]
    if len(values) < 2:
        return {"samples": values, "avg": values[0]["sample"] if values else 0, "avg_rate": 0.0}
    first, last = samples[-1], samples[0]
    span = last.when - first.when
    change = getattr(last, kind).get(name, 0) - getattr(first, kind).get(name, 0)
    return {
        "samples": values,
        "avg": round(sum(value["sample"] for value in values) / len(values), 1),
        "avg_rate": round(change / span, 1) if span > 0 else 0.0,
    }


def _properties(given: dict) -> bytes:
    fields: dict[str, Any] = {}
    for key, value in given.items():
        if key not in PROPERTY_NAMES:
            raise bad_request(f"unknown message property: {key}")
        if key in ("delivery_mode", "priority", "timestamp"):
            value = _int(value, key)
        elif key == "headers":
            value = _object(value)
        else:
            value = str(value)
        fields[PROPERTY_NAMES[key]] = value
    try:
        return amqp_properties.encode(commands.Basic.Properties(**fields))
    except (TypeError, ValueError) as error:
        raise bad_request(f"bad message properties: {error}") from None


# the API's name of each property, and pamqp's attribute for it (AMQP's "type" is
# pamqp's message_type; cluster_id, deprecated in 0-9-1, is not one of the API's)
PROPERTY_NAMES = {
    "type" if name == "message_type" else name: name
    for name in amqp_properties.NAMES
    if name != "cluster_id"
}


def _got(entry, remaining: int, encoding: str, truncate: int | None) -> dict:
    message = entry.message
    body = bytes(message.body)
    shown = body if truncate is None else body[:truncate]
    payload_encoding = "base64"
    payload = base64.b64encode(shown).decode()
    if encoding == "auto":
        try:
            payload, payload_encoding = shown.decode("utf-8"), "string"
        except UnicodeDecodeError:
            pass
    decoded = amqp_properties.decode(message.raw_properties)
    shown_properties = {
        name: json_value(getattr(decoded, attribute))
        for name, attribute in PROPERTY_NAMES.items()
        if getattr(decoded, attribute, None) is not None
    }
    return {
        "payload_bytes": len(body),
        "redelivered": entry.redelivered,
        "exchange": message.exchange,
        "routing_key": message.routing_key,
        "message_count": remaining,
        "properties": shown_properties or [],  # RabbitMQ's empty list
        "payload": payload,
        "payload_encoding": payload_encoding,
    }


GET_ACKMODES = {
    "ack_requeue_true": lambda queue, deliveries: queue.requeue(deliveries),
    "reject_requeue_true": lambda queue, deliveries: queue.requeue(deliveries),
    "ack_requeue_false": lambda queue, deliveries: queue.ack(deliveries),
    "reject_requeue_false": lambda queue, deliveries: queue.reject(deliveries),
}


def _find_arguments(exchange: Exchange, target, routing_key: str, props: str) -> dict:
    for bound in exchange.bindings.values():
        if (
            bound.destination is target
            and bound.routing_key == routing_key
            and objects.properties_key(routing_key, bound.arguments) == props
        ):
            return bound.arguments
    return {}


def _routes(api: ManagementApi) -> list[tuple[tuple[str, ...], dict[str, Handler]]]:
    """Every path of the API (``*``: one path segment, handed to the handler)."""
    a = api
    table: list[tuple[str, dict[str, Handler]]] = [
        ("overview", {"GET": a.overview}),
        ("whoami", {"GET": a.whoami}),
        ("cluster-name", {"GET": a.cluster_name}),
        ("extensions", {"GET": a.extensions}),
        ("nodes", {"GET": a.nodes}),
        ("nodes/*", {"GET": a.node}),
        ("connections", {"GET": a.connections}),
        ("connections/*", {"GET": a.connection, "DELETE": a.close_connection}),
        ("connections/*/channels", {"GET": a.connection_channels}),
        ("channels", {"GET": a.channels}),
        ("channels/*", {"GET": a.channel}),
        ("consumers", {"GET": a.consumers}),
        ("consumers/*", {"GET": a.consumers}),
        ("exchanges", {"GET": a.exchanges}),
        ("exchanges/*", {"GET": a.exchanges}),
        (
            "exchanges/*/*",
            {"GET": a.exchange, "PUT": a.declare_exchange, "DELETE": a.delete_exchange},
        ),
        ("exchanges/*/*/bindings/*", {"GET": a.exchange_bindings}),
        ("exchanges/*/*/publish", {"POST": a.publish}),
        ("queues", {"GET": a.queues}),
        ("queues/*", {"GET": a.queues}),
        ("queues/*/*", {"GET": a.queue, "PUT": a.declare_queue, "DELETE": a.delete_queue}),
        ("queues/*/*/bindings", {"GET": a.queue_bindings}),
        ("queues/*/*/contents", {"DELETE": a.purge}),
        ("queues/*/*/get", {"POST": a.get}),
        ("bindings", {"GET": a.bindings}),
        ("bindings/*", {"GET": a.bindings}),
        ("bindings/*/e/*/*/*", {"GET": a.bindings_between, "POST": a.bind}),
        ("bindings/*/e/*/*/*/*", {"GET": a.binding, "DELETE": a.unbind}),
        ("vhosts", {"GET": a.vhosts}),
        ("vhosts/*", {"GET": a.vhost, "PUT": a.put_vhost, "DELETE": a.delete_vhost}),
        ("vhosts/*/permissions", {"GET": a.vhost_permissions}),
        ("vhosts/*/topic-permissions", {"GET": a.vhost_topic_permissions}),
        ("vhosts/*/connections", {"GET": a.connections}),
        ("vhosts/*/channels", {"GET": a.channels}),
        ("users", {"GET": a.users}),
        ("users/without-permissions", {"GET": a.users_without_permissions}),
        ("users/bulk-delete", {"POST": a.bulk_delete_users}),
        ("users/*", {"GET": a.user, "PUT": a.put_user, "DELETE": a.delete_user}),
        ("users/*/permissions", {"GET": a.user_permissions}),
        ("users/*/topic-permissions", {"GET": a.user_topic_permissions}),
        ("permissions", {"GET": a.permissions}),
        (
            "permissions/*/*",
            {"GET": a.permission, "PUT": a.put_permission, "DELETE": a.delete_permission},
        ),
        ("topic-permissions", {"GET": a.topic_permissions}),
        (
            "topic-permissions/*/*",
            {
                "GET": a.topic_permission,
                "PUT": a.put_topic_permission,
                "DELETE": a.delete_topic_permission,
            },
        ),
        ("definitions", {"GET": a.definitions, "POST": a.load_definitions}),
        ("definitions/*", {"GET": a.definitions, "POST": a.load_definitions}),
        ("aliveness-test/*", {"GET": a.aliveness_test}),
        ("health/checks/alarms", {"GET": a.alarms_check}),
        ("health/checks/local-alarms", {"GET": a.alarms_check}),
        ("health/checks/virtual-hosts", {"GET": a.virtual_hosts_check}),
        ("policies", {"GET": a.empty_list}),
        ("policies/*", {"GET": a.empty_list}),
        ("parameters", {"GET": a.empty_list}),
        ("global-parameters", {"GET": a.empty_list}),
        ("vhost-limits", {"GET": a.empty_list}),
    ]
    return [(tuple(path.split("/")), methods) for path, methods in table]
