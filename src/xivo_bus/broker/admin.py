"""What an operator does to a running broker: users, vhosts and permissions, as
``rabbitmqctl`` does them (``rabbit_auth_backend_internal``, ``rabbit_vhost``), with its
refusals and exit codes. Every change is on disk before it is answered.

``control`` serves these over a local socket to ``xivo-bus ctl``.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import time
from typing import Any

from xivo_bus import __version__
from xivo_bus.amqp import errors
from xivo_bus.amqp.errors import AMQPError
from xivo_bus.broker import definitions
from xivo_bus.broker.alarms import default_memory_limit, resources
from xivo_bus.broker.definitions import RABBITMQ_VERSION
from xivo_bus.broker.model.exchanges import Exchange
from xivo_bus.broker.model.vhost import VHost
from xivo_bus.broker.session.server_state import ServerState
from xivo_bus.broker.users import User, UserError

# sysexits, as rabbitmqctl uses them
EX_USAGE = 64
EX_DATAERR = 65
EX_NOUSER = 67
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70


class AdminError(Exception):
    """A refused command: rabbitmqctl's message and exit code."""

    def __init__(self, message: str, code: int = EX_SOFTWARE):
        super().__init__(message)
        self.code = code


class _CommitWaiter:
    """Resolves ``future`` once the store has committed write ``write``."""

    def __init__(self, store: Any, write: int, future: asyncio.Future):
        self.store, self.write, self.future = store, write, future

    def store_committed(self) -> None:
        if self.store.committed >= self.write:
            if not self.future.done():
                self.future.set_result(None)
        else:
            self.store.notify(self)


class Admin:
    def __init__(self, state: ServerState, clock: asyncio.AbstractEventLoop):
        self.state = state
        self.clock = clock
        self.started_at = time.time()
        # what the node listens on, as rabbitmqctl status lists it: {interface, port,
        # protocol, purpose}; set by whoever starts the listeners
        self.listeners: list[dict] = []

    @property
    def users(self):
        return self.state.users

    async def _on_disk(self, write: int) -> None:
        store = self.state.store
        if store is None or write <= store.committed:
            return
        future = asyncio.get_running_loop().create_future()
        store.notify(_CommitWaiter(store, write, future))
        await future

    async def settled(self) -> None:
        """Wait until every store write asked for so far is on disk (after a change made
        directly on the model, as the management API makes them)."""
        if self.state.store is not None:
            await self._on_disk(self.state.store.last_write)

    async def _save(self, user: User) -> None:
        if self.state.store is not None:
            await self._on_disk(self.state.store.save_user(user))

    def _user(self, name: str, quoted: bool = True) -> User:
        user = self.users.get(name)
        if user is None:
            shown = f'"{name}"' if quoted else name
            raise AdminError(f"User {shown} does not exist", EX_NOUSER)
        return user

    def _vhost(self, name: str) -> VHost:
        vhost = self.state.vhosts.get(name)
        if vhost is None:
            raise AdminError(f"Virtual host {name} does not exist", EX_UNAVAILABLE)
        return vhost

    def _close_connections(self, text: str, which) -> int:
        """Close, with 320 and ``text``, the connections ``which`` picks; how many."""
        closing = [connection for connection in self.state.connections if which(connection)]
        for connection in closing:
            connection.close(errors.CONNECTION_FORCED, f"CONNECTION_FORCED - {text}")
        return len(closing)

    # -- users ------------------------------------------------------------------------

    async def add_user(self, name: str, password: str | None) -> None:
        try:
            user = self.users.add(name, password)
        except UserError as error:
            raise AdminError(str(error), EX_SOFTWARE) from None
        await self._save(user)

    async def delete_user(self, name: str) -> None:
        self._user(name)
        self.users.delete(name)
        if self.state.store is not None:
            await self._on_disk(self.state.store.delete_user(name))
        self._close_connections(
            f"user '{name}' is deleted",
            lambda connection: connection.user is not None and connection.user.name == name,
        )

    async def change_password(self, name: str, password: str) -> None:
        self._user(name)
        await self._save(self.users.change_password(name, password))

    async def clear_password(self, name: str) -> None:
        self._user(name)
        await self._save(self.users.clear_password(name))

    async def authenticate_user(self, name: str, password: str) -> None:
        user = self.users.get(name)
        if user is None or not user.check_password(password):
            raise AdminError(
                f'Error: failed to authenticate user "{name}"\n'
                f"user '{name}' - invalid credentials",
                EX_DATAERR,
            )

    async def set_user_tags(self, name: str, tags: list[str]) -> None:
        self._user(name)
        await self._save(self.users.set_tags(name, tags))

    async def list_users(self) -> list[dict]:
        return [{"user": user.name, "tags": list(user.tags)} for user in self.users]

    # -- vhosts -----------------------------------------------------------------------

    async def add_vhost(self, name: str) -> None:
        if not name:
            raise AdminError("virtual host name cannot be empty", EX_DATAERR)
        if name in self.state.vhosts:
            return  # as rabbitmqctl: adding an existing vhost succeeds
        store = self.state.store
        self.state.vhosts[name] = VHost(self.clock, name, store)
        if store is not None:
            await self._on_disk(store.save_vhost(name))

    async def delete_vhost(self, name: str) -> None:
        vhost = self.state.vhosts.get(name)
        if vhost is None:
            raise AdminError(f"Virtual host '{name}' does not exist", EX_DATAERR)
        self._close_connections(
            f"vhost '{name}' is deleted", lambda connection: connection.vhost is vhost
        )
        del self.state.vhosts[name]
        vhost.delete_everything()
        store = self.state.store
        if store is not None:
            await self._on_disk(store.delete_vhost(name))
        for user in self.users.forget_vhost(name):
            await self._save(user)

    async def list_vhosts(self) -> list[dict]:
        return [{"name": name} for name in sorted(self.state.vhosts)]

    # -- the node ---------------------------------------------------------------------

    async def status(self) -> dict:
        """The node as ``rabbitmqctl status --formatter json`` shows it."""
        store = self.state.store
        data_dir = str(store.directory) if store is not None else None
        used = resources(data_dir)
        limit = self.state.alarms.memory_limit or default_memory_limit()
        node = f"xivo-bus@{platform.node()}"
        return {
            "pid": os.getpid(),
            "os": platform.system(),
            "uptime": int(time.time() - self.started_at),
            "is_under_maintenance": False,
            "rabbitmq_version": RABBITMQ_VERSION,
            "product_name": "xivo-bus",
            "product_version": __version__,
            "erlang_version": f"Python {platform.python_version()}",
            "data_directory": data_dir or "(in memory only)",
            "alarms": [{"node": node, "resource": name} for name in self.state.alarms.raised],
            "memory": {"total": {"rss": used["mem_used"]}},
            "vm_memory_calculation_strategy": "rss",
            "vm_memory_high_watermark_limit": limit,
            "disk_free": used["disk_free"],
            "file_descriptors": {"total_used": used["fd_used"], "total_limit": used["fd_total"]},
            "totals": {
                "virtual_host_count": len(self.state.vhosts),
                "connection_count": sum(1 for c in self.state.connections if c.user),
                "queue_count": sum(len(v.queues) for v in self.state.vhosts.values()),
            },
            "listeners": [{"node": node, **listener} for listener in self.listeners],
        }

    # -- listings and maintenance (rabbitmqctl's list_* and friends) -------------------

    def _columns(self, columns: list[str] | None, known: dict, default: tuple) -> list[str]:
        columns = list(columns or default)
        unknown = [column for column in columns if column not in known]
        if unknown:
            raise AdminError(f"Invalid info item(s): {', '.join(unknown)}", EX_USAGE)
        return columns

    async def list_queues(self, vhost: str, columns: list[str] | None = None) -> list[dict]:
        found = self._vhost(vhost)
        wanted = self._columns(columns, QUEUE_INFO, ("name", "messages"))
        return [
            {column: QUEUE_INFO[column](queue) for column in wanted}
            for queue in found.queues.values()
        ]

    async def list_exchanges(self, vhost: str, columns: list[str] | None = None) -> list[dict]:
        found = self._vhost(vhost)
        wanted = self._columns(columns, EXCHANGE_INFO, ("name", "type"))
        return [
            {column: EXCHANGE_INFO[column](exchange) for column in wanted}
            for exchange in found.exchanges.values()
        ]

    async def list_bindings(self, vhost: str) -> list[dict]:
        found = self._vhost(vhost)
        rows = [
            _binding_row("", queue.name, "queue", queue.name, {})  # the default exchange's
            for queue in found.queues.values()
        ]
        for exchange in found.exchanges.values():
            for binding in exchange.bindings.values():
                destination = binding.destination
                kind = "exchange" if isinstance(destination, Exchange) else "queue"
                rows.append(
                    _binding_row(
                        exchange.name,
                        destination.name,
                        kind,
                        binding.routing_key,
                        binding.arguments,
                    )  # fmt: skip
                )
        return rows

    async def list_connections(self, columns: list[str] | None = None) -> list[dict]:
        wanted = self._columns(
            columns, CONNECTION_INFO, ("user", "peer_host", "peer_port", "state")
        )
        return [
            {column: CONNECTION_INFO[column](connection) for column in wanted}
            for connection in self.state.connections
            if connection.user is not None
        ]

    async def list_channels(self) -> list[dict]:
        return [
            {
                "pid": channel_pid(connection, channel.number),
                "user": connection.user.name,
                "consumer_count": len(channel.consumers),
                "messages_unacknowledged": len(channel.unacked),
            }
            for connection in self.state.connections
            if connection.user is not None
            for channel in connection.channels.values()
        ]

    async def list_consumers(self, vhost: str) -> list[dict]:
        found = self._vhost(vhost)
        return [
            {
                "queue_name": queue.name,
                "channel_pid": channel_pid(consumer.channel.connection, consumer.channel.number),
                "consumer_tag": consumer.tag,
                "ack_required": not consumer.no_ack,
                "prefetch_count": consumer.prefetch,
                "active": True,
                "arguments": erlang_table({}),
            }
            for queue in found.queues.values()
            for consumer in queue.consumers
        ]

    async def purge_queue(self, vhost: str, queue: str) -> None:
        found = self._vhost(vhost).queues.get(queue)
        if found is None:
            raise AdminError("not_found", EX_UNAVAILABLE)
        found.purge()

    async def delete_queue(self, vhost: str, queue: str) -> str:
        host = self._vhost(vhost)
        found = host.queues.get(queue)
        if found is None:
            raise AdminError("not_found", EX_UNAVAILABLE)
        count = host.delete_queue(found)
        return f"Queue was successfully deleted with {count} ready messages"

    async def close_connection(self, name: str, reason: str) -> None:
        self._close_connections(reason, lambda connection: connection_name(connection) == name)

    async def close_all_connections(self, vhost: str, all_: bool, reason: str) -> str:
        closed = self._close_connections(
            reason,
            lambda connection: (
                all_ or (connection.vhost is not None and connection.vhost.name == vhost)
            ),
        )
        return f"Closed {closed} connections"

    # -- definitions ------------------------------------------------------------------

    async def export_definitions(self) -> dict:
        return definitions.export(self.state.vhosts, self.users)

    async def import_definitions(self, definitions_: dict) -> str:
        """Apply RabbitMQ definitions: users (hashes as they are), vhosts and their limits,
        permissions, exchanges, queues, bindings; all on disk before the answer."""
        try:
            definitions.check(definitions_)
            users = definitions.users_from(definitions_)
            limits = definitions.vhost_limits(definitions_)
        except definitions.DefinitionsError as error:
            refused = f"definitions refused, nothing imported: {error}"
            raise AdminError(refused, EX_DATAERR) from None
        store = self.state.store
        for name, vhost_limits in limits.items():
            vhost = self.state.vhosts.get(name)
            if vhost is None:
                vhost = self.state.vhosts[name] = VHost(self.clock, name, store)
            vhost.set_limits(vhost_limits)
        for user in users:
            self.users.put(user)
        counts = {"exchanges": 0, "queues": 0, "bindings": 0}
        try:
            for entry in definitions_.get("exchanges") or []:
                vhost = self._import_vhost(entry)
                vhost.declare_exchange(
                    entry["name"],
                    entry.get("type", "direct"),
                    bool(entry.get("durable", True)),
                    bool(entry.get("auto_delete", False)),
                    bool(entry.get("internal", False)),
                    entry.get("arguments") or {},
                )
                counts["exchanges"] += 1
            for entry in definitions_.get("queues") or []:
                vhost = self._import_vhost(entry)
                vhost.declare_queue(
                    entry["name"],
                    bool(entry.get("durable", True)),
                    False,
                    bool(entry.get("auto_delete", False)),
                    entry.get("arguments") or {},
                    None,
                )
                counts["queues"] += 1
            for entry in definitions_.get("bindings") or []:
                vhost = self._import_vhost(entry)
                source = vhost.exchange(entry["source"])
                kind = entry.get("destination_type", "queue")
                destination = (
                    vhost.exchange(entry["destination"])
                    if kind == "exchange"
                    else vhost.queue(entry["destination"], None)
                )
                key, arguments = entry.get("routing_key", ""), entry.get("arguments") or {}
                vhost.bind(source, destination, key, arguments)
                counts["bindings"] += 1
        except (AMQPError, KeyError) as error:
            text = error.reply_text if isinstance(error, AMQPError) else f"missing {error}"
            stopped = f"definitions partly imported, stopped at: {text}"
            raise AdminError(stopped, EX_DATAERR) from None
        finally:
            if store is not None:
                last = 0
                for name in limits:
                    last = store.save_vhost(name, self.state.vhosts[name].limits)
                for user in users:
                    last = store.save_user(user)
                await self._on_disk(last)
        return (
            f"{len(users)} users, {len(limits)} vhosts, {counts['exchanges']} exchanges, "
            f"{counts['queues']} queues, {counts['bindings']} bindings"
        )

    def _import_vhost(self, entry: dict) -> VHost:
        name = entry.get("vhost", "/")
        vhost = self.state.vhosts.get(name)
        if vhost is None:
            raise AdminError(
                f"definitions partly imported, stopped at: {entry.get('name')!r} is in vhost "
                f"'{name}', which neither exists nor is defined",
                EX_DATAERR,
            )
        return vhost

    # -- limits -----------------------------------------------------------------------

    async def _save_vhost(self, vhost: VHost) -> None:
        if self.state.store is not None:
            await self._on_disk(self.state.store.save_vhost(vhost.name, vhost.limits))

    async def set_vhost_limits(self, vhost: str, limits: str) -> None:
        found = self._vhost(vhost)
        found.set_limits(parse_limits(limits, VHOST_LIMITS))  # replaces them, as RabbitMQ
        await self._save_vhost(found)

    async def clear_vhost_limits(self, vhost: str) -> None:
        found = self._vhost(vhost)
        found.set_limits({})
        await self._save_vhost(found)

    async def list_vhost_limits(self, vhost: str, all_: bool = False):
        if all_:
            return [
                {"vhost": name, "limits": _limits(found.limits)}
                for name, found in sorted(self.state.vhosts.items())
                if found.limits
            ]
        return _limits(self._vhost(vhost).limits)

    async def set_user_limits(self, user: str, limits: str) -> None:
        found = self._user(user)
        found.limits = {**found.limits, **parse_limits(limits, USER_LIMITS)}  # merged
        await self._save(found)

    async def clear_user_limits(self, user: str, name: str) -> None:
        found = self._user(user)
        found.limits = {} if name == "all" else {k: v for k, v in found.limits.items() if k != name}
        await self._save(found)

    async def list_user_limits(self, user: str | None, all_: bool = False):
        if all_ or user is None:
            return [
                {"user": found.name, "limits": _limits(found.limits)}
                for found in self.users
                if found.limits
            ]
        return _limits(self._user(user).limits)

    # -- permissions ------------------------------------------------------------------

    async def set_permissions(
        self, vhost: str, user: str, configure: str, write: str, read: str
    ) -> None:
        self._user(user, quoted=False)
        self._vhost(vhost)
        try:
            changed = self.users.set_permissions(user, vhost, configure, write, read)
        except UserError as error:
            raise AdminError(str(error), EX_UNAVAILABLE) from None
        await self._save(changed)

    async def clear_permissions(self, vhost: str, user: str) -> None:
        self._user(user)
        self._vhost(vhost)
        await self._save(self.users.clear_permissions(user, vhost))

    async def list_permissions(self, vhost: str) -> list[dict]:
        self._vhost(vhost)
        return [
            {"user": user.name, **_permission(user.permissions[vhost])}
            for user in self.users
            if vhost in user.permissions
        ]

    async def list_user_permissions(self, user: str) -> list[dict]:
        found = self._user(user)
        return [
            {"vhost": vhost, **_permission(permission)}
            for vhost, permission in sorted(found.permissions.items())
        ]

    async def set_topic_permissions(
        self, vhost: str, user: str, exchange: str, write: str, read: str
    ) -> None:
        self._user(user, quoted=False)
        self._vhost(vhost)
        try:
            changed = self.users.set_topic_permissions(user, vhost, exchange, write, read)
        except UserError as error:
            raise AdminError(str(error), EX_UNAVAILABLE) from None
        await self._save(changed)

    async def clear_topic_permissions(self, vhost: str, user: str, exchange: str | None):
        self._user(user)
        self._vhost(vhost)
        await self._save(self.users.clear_topic_permissions(user, vhost, exchange))

    async def list_topic_permissions(self, vhost: str) -> list[dict]:
        self._vhost(vhost)
        return [
            {"user": user.name, "exchange": name, "write": p.write, "read": p.read}
            for user in self.users
            for name, p in sorted(user.topic_permissions.get(vhost, {}).items())
        ]

    async def list_user_topic_permissions(self, user: str) -> list[dict]:
        found = self._user(user)
        return [
            {"vhost": vhost, "exchange": name, "write": p.write, "read": p.read}
            for vhost, by_exchange in sorted(found.topic_permissions.items())
            for name, p in sorted(by_exchange.items())
        ]


VHOST_LIMITS = ("max-connections", "max-queues")
USER_LIMITS = ("max-connections", "max-channels")


def parse_limits(text: str, known: tuple[str, ...]) -> dict[str, int]:
    """A limits JSON object as rabbitmqctl takes it (a negative value: no limit)."""
    try:
        limits = json.loads(text)
    except ValueError:
        raise AdminError("JSON decoding error. Reason: badarg", EX_UNAVAILABLE) from None
    if not isinstance(limits, dict):
        raise AdminError("JSON decoding error. Reason: badarg", EX_UNAVAILABLE)
    unknown = [(key, value) for key, value in limits.items() if key not in known]
    if unknown:
        terms = ",".join(f'{{<<"{key}">>,{json.dumps(value)}}}' for key, value in unknown)
        raise AdminError(
            f"Validation failed\n\nUnrecognised terms [{terms}] in limits", EX_UNAVAILABLE
        )
    for key, value in limits.items():
        if not isinstance(value, int) or isinstance(value, bool):
            raise AdminError(
                f"Validation failed\n\n{key} should be a number, actually was {json.dumps(value)}",
                EX_UNAVAILABLE,
            )
    return limits


def _limits(limits: dict[str, int]) -> str:
    return json.dumps(dict(sorted(limits.items())), separators=(",", ":"))


def erlang_table(table: dict) -> str:
    """A field table as rabbitmqctl prints it: ``[{"x-max-length",10}]``."""
    return "[" + ",".join(f"{{{json.dumps(k)},{json.dumps(v)}}}" for k, v in table.items()) + "]"


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _binding_row(source, destination, kind, routing_key, arguments) -> dict:
    return {
        "source_name": source,
        "source_kind": "exchange",
        "destination_name": destination,
        "destination_kind": kind,
        "routing_key": routing_key,
        "arguments": erlang_table(arguments),
    }


def connection_name(connection) -> str:
    """As RabbitMQ names a connection: ``client address:port -> broker address:port``."""
    local = connection.transport.get_extra_info("sockname") if connection.transport else None
    return f"{connection.peer} -> {local[0]}:{local[1]}" if local else connection.peer


def channel_pid(connection, number: int) -> str:
    """A stand-in for RabbitMQ's channel pid: ``<connection name (channel number)>``."""
    return f"<{connection_name(connection)} ({number})>"


QUEUE_INFO = {
    "name": lambda q: q.name,
    "messages": lambda q: q.message_count + q.unacked,
    "messages_ready": lambda q: q.message_count,
    "messages_unacknowledged": lambda q: q.unacked,
    "consumers": lambda q: q.consumer_count,
    "durable": lambda q: _bool(q.durable),
    "auto_delete": lambda q: _bool(q.auto_delete),
    "exclusive": lambda q: _bool(q.exclusive),
    "arguments": lambda q: erlang_table(q.arguments),
    "type": lambda q: "classic",
    "state": lambda q: "running",
}
EXCHANGE_INFO = {
    "name": lambda e: e.name,
    "type": lambda e: e.type_name,
    "durable": lambda e: _bool(e.durable),
    "auto_delete": lambda e: _bool(e.auto_delete),
    "internal": lambda e: _bool(e.internal),
    "arguments": lambda e: erlang_table(e.arguments),
}
CONNECTION_INFO = {
    "name": connection_name,
    "user": lambda c: c.user.name,
    "peer_host": lambda c: c.peer_host,
    "peer_port": lambda c: int(c.peer.rsplit(":", 1)[1]) if ":" in c.peer else 0,
    "state": lambda c: c.flow_state,
    "vhost": lambda c: c.vhost.name if c.vhost is not None else "",
    "channels": lambda c: len(c.channels),
    "ssl": lambda c: _bool(c.transport.get_extra_info("ssl_object") is not None),
}


def _permission(permission) -> dict:
    return {
        "configure": permission.configure,
        "write": permission.write,
        "read": permission.read,
    }
