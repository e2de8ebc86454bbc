"""The compatibility harness: scenarios, observations, normalisation and client helpers.

A scenario is a function ``(url, prefix) -> observation``: it drives one broker through a
client library (pika mostly, aio-pika, kombu/py-amqp, or the raw-socket client for what
libraries cannot send) and returns what the client saw, as plain JSON-able data. Names it
creates start with ``prefix``, unique per run. The same scenario runs against our broker
and against RabbitMQ; the two observations must be equal after ``normalise``.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import decimal
import re
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pika
import pika.amqp_object
import pika.exceptions
import pika.frame
import pika.spec
from amqp_raw import RawClient
from pamqp import base as pamqp_base
from pamqp import body as pamqp_body
from pamqp import commands
from pamqp import header as pamqp_header

# -- the registry -------------------------------------------------------------------------


@dataclass(frozen=True)
class Divergence:
    """A deliberate difference from RabbitMQ (see README): each broker's observation is
    checked against its own documented expectation instead of being compared."""

    why: str
    ours: Any
    rabbitmq: Any


@dataclass
class Scenario:
    name: str
    func: Callable[[str, str], Any]
    covers: tuple[str, ...]  # AMQP methods ("queue.declare") and extensions ("ext:…")
    expect: Any = None  # a partial observation (see ``matches``) or a predicate
    divergence: Divergence | None = None
    timeout: float = 30.0
    # called as func(url, prefix, admin): admin(verb, *args) runs a rabbitmqctl verb on the
    # broker under test (``xivo-bus ctl`` for ours), for users, vhosts and permissions
    admin: bool = False


SCENARIOS: dict[str, Scenario] = {}


def scenario(
    *covers: str,
    expect: Any = None,
    name: str | None = None,
    divergence=None,
    timeout=30.0,
    admin: bool = False,
):
    """Register the decorated function as a scenario covering ``covers``."""

    def register(func):
        key = name or func.__name__
        assert key not in SCENARIOS, f"duplicate scenario {key}"
        SCENARIOS[key] = Scenario(key, func, tuple(covers), expect, divergence, timeout, admin)
        return func

    return register


def matches(observed: Any, expected: Any) -> bool:
    """True when ``observed`` has everything ``expected`` lists: dicts match on the keys
    given, lists element-wise, callables are predicates, other values by equality."""
    if callable(expected):
        return bool(expected(observed))
    if isinstance(expected, dict):
        return isinstance(observed, dict) and all(
            key in observed and matches(observed[key], value) for key, value in expected.items()
        )
    if isinstance(expected, list):
        return (
            isinstance(observed, list)
            and len(observed) == len(expected)
            and all(matches(o, e) for o, e in zip(observed, expected, strict=True))
        )
    return observed == expected


# -- observations -------------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """Plain JSON data from what client libraries hand back."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        try:
            return data.decode()
        except UnicodeDecodeError:
            return "b64:" + base64.b64encode(data).decode()
    if isinstance(value, decimal.Decimal):
        return f"decimal:{value}"
    if isinstance(value, datetime.datetime):
        return f"datetime:{value.replace(tzinfo=None).isoformat()}"
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, pika.frame.Method):
        return jsonable(value.method)
    if isinstance(value, pika.spec.BasicProperties):
        return {k: jsonable(v) for k, v in vars(value).items() if v is not None}
    if isinstance(value, pika.amqp_object.Method):
        return {"method": value.NAME, **jsonable(vars(value))}
    if isinstance(value, pamqp_base.BasicProperties):
        return {
            k: jsonable(getattr(value, k)) for k in value.__slots__ if getattr(value, k) is not None
        }
    if isinstance(value, pamqp_base.Frame):
        return {"method": value.name, **{k: jsonable(v) for k, v in value}}
    if isinstance(value, pamqp_header.ContentHeader):
        return {"header": value.body_size, "properties": jsonable(value.properties)}
    if isinstance(value, pamqp_body.ContentBody):
        return {"body": jsonable(value.value)}
    return repr(value)


SERVER_DEFINED = ("product", "version", "platform", "cluster_name", "copyright", "information")
_GENERATED = re.compile(r"(amq\.gen-|amq\.ctag-)[A-Za-z0-9_-]{22}")
_REPLY_TO = re.compile(r"amq\.rabbitmq\.reply-to\.[A-Za-z0-9+/=._-]+")


def normalise(value: Any, prefix: str) -> Any:
    """Replace what legitimately differs between two brokers: the run's name prefix,
    server-generated queue and consumer tag names, reply-to names, timestamps and the
    server's product/version strings."""
    if isinstance(value, str):
        value = value.replace(prefix, "<P>")
        value = _GENERATED.sub(lambda m: m.group(1) + "*", value)
        return _REPLY_TO.sub("amq.rabbitmq.reply-to.*", value)
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key in SERVER_DEFINED or key == "time":
                out[key] = "<server-defined>"
            else:
                out[normalise(key, prefix)] = normalise(item, prefix)
        return out
    if isinstance(value, list):
        return [normalise(v, prefix) for v in value]
    return value


def new_prefix(name: str) -> str:
    return f"compat-{name[:40]}-{uuid.uuid4().hex[:10]}"


def host_port(url: str) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 5672


def with_vhost(url: str, vhost: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return parts._replace(path="/" + urllib.parse.quote(vhost, safe="")).geturl()


def with_credentials(url: str, user: str, password: str) -> str:
    parts = urllib.parse.urlsplit(url)
    netloc = f"{user}:{password}@{parts.hostname}:{parts.port}"
    return parts._replace(netloc=netloc).geturl()


# -- running ------------------------------------------------------------------------------


@dataclass
class Observer:
    """Runs scenarios against one broker, several at a time, and keeps their
    observations. Worker threads are daemons: a scenario that hangs cannot hang the run."""

    url: str
    admin: Callable[..., Any] | None = None  # runs rabbitmqctl verbs on this broker
    no_admin: str = ""  # why there is none (its admin scenarios are skipped)
    parallel: int = 8
    results: dict[str, Any] = field(default_factory=dict)
    _events: dict[str, threading.Event] = field(default_factory=dict)
    _slots: threading.Semaphore = field(init=False)

    def __post_init__(self):
        self._slots = threading.Semaphore(self.parallel)

    def start(self, names) -> None:
        for name in names:
            if name not in self._events:
                self._events[name] = threading.Event()
                threading.Thread(target=self._run, args=(name,), daemon=True).start()

    def _run(self, name: str) -> None:
        item = SCENARIOS[name]
        prefix = new_prefix(name)
        with self._slots:
            try:
                if not item.admin:
                    observed = {"observed": jsonable(item.func(self.url, prefix))}
                elif self.admin is None:
                    observed = {"skipped": self.no_admin}
                else:
                    observed = {"observed": jsonable(item.func(self.url, prefix, self.admin))}
            except BaseException as exc:  # noqa: BLE001 - reported by the test
                observed = {"crashed": f"{type(exc).__name__}: {exc}"}
        observed["prefix"] = prefix
        self.results[name] = observed
        self._events[name].set()

    def observe(self, name: str) -> dict:
        self.start([name])
        if not self._events[name].wait(SCENARIOS[name].timeout):
            return {"crashed": f"timed out after {SCENARIOS[name].timeout} s", "prefix": ""}
        return self.results[name]


# -- pika helpers -------------------------------------------------------------------------


def connect(url: str, **params) -> pika.BlockingConnection:
    parameters = pika.URLParameters(url)
    parameters.connection_attempts = 1
    for key, value in params.items():
        setattr(parameters, key, value)
    return pika.BlockingConnection(parameters)


@contextlib.contextmanager
def pika_channel(url: str):
    """A pika connection and channel, closed afterwards whatever state they are in."""
    connection = connect(url)
    try:
        yield connection, connection.channel()
    finally:
        with contextlib.suppress(Exception):
            connection.close()


@contextlib.contextmanager
def own_exchange(channel, name: str, exchange_type: str, **kwargs):
    """An exchange for the length of a block, deleted afterwards (from a fresh channel, in
    case the block's channel was closed by an error)."""
    channel.exchange_declare(name, exchange_type, **kwargs)
    try:
        yield name
    finally:
        with contextlib.suppress(Exception):
            channel.connection.channel().exchange_delete(name)


def error(exc: BaseException) -> dict:
    """What a client sees of a broker-side close."""
    if isinstance(exc, pika.exceptions.ChannelClosedByBroker):
        return {"channel_closed": [exc.reply_code, exc.reply_text]}
    if isinstance(exc, pika.exceptions.ConnectionClosedByBroker):
        return {"connection_closed": [exc.reply_code, exc.reply_text]}
    return {"error": type(exc).__name__, "args": jsonable([str(a) for a in exc.args])}


def outcome(func: Callable, *args, **kwargs) -> Any:
    """``{"ok": result}``, or the broker's close as ``error`` shows it."""
    try:
        return {"ok": jsonable(func(*args, **kwargs))}
    except (pika.exceptions.AMQPError, OSError) as exc:
        return error(exc)


def delivery(method, properties, body) -> dict:
    """A delivered, got or returned message as a client sees it."""
    if method is None:
        return {"empty": True}
    seen = {k: v for k, v in jsonable(method).items() if k not in ("consumer_tag",)}
    seen["body"] = jsonable(body)
    props = jsonable(properties)
    if props:
        seen["properties"] = props
    return seen


def sync(channel) -> None:
    """A round trip on ``channel``: whatever the broker did before is done, and any error
    it raised for an earlier asynchronous method (publish, ack) surfaces now."""
    channel.exchange_declare("amq.direct", passive=True)


def get_all(channel, queue: str, no_ack: bool = True, limit: int = 100) -> list:
    """Every message basic.get finds in ``queue`` (acked, by default), as seen."""
    got = []
    for _ in range(limit):
        method, properties, body = channel.basic_get(queue, auto_ack=no_ack)
        if method is None:
            break
        got.append(delivery(method, properties, body))
    return got


def bodies(channel, queue: str) -> list:
    return [m["body"] for m in get_all(channel, queue)]


def publish_all(channel, exchange: str, routing_key: str, payloads, **kwargs) -> None:
    for payload in payloads:
        channel.basic_publish(exchange, routing_key, payload, **kwargs)


class Collector:
    """Deliveries of pika consumers, in arrival order."""

    def __init__(self, connection):
        self.connection = connection
        self.seen: list[dict] = []

    def callback(self, label: str = ""):
        def on_message(_channel, method, properties, body):
            seen = delivery(method, properties, body)
            if label:
                seen["consumer"] = label
            self.seen.append(seen)

        return on_message

    def wait(self, count: int, timeout: float = 30.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.seen) < count and time.monotonic() < deadline:
            self.connection.process_data_events(time_limit=0.05)
        return self.seen


def poll(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05) -> Any:
    """Call ``predicate`` until it returns something truthy or ``timeout`` passes; return
    the last value. For time-based behaviour (TTL, expiry): generous, never a speed test."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def ready_count(channel, queue: str, expected: int):
    """queue.declare-ok once it reports ``expected`` ready messages (or after a while).
    RabbitMQ answers a passive declare ahead of publishes still on their way to the
    queue, so a count right after publishing needs a little patience."""
    seen = []

    def reached():
        seen.append(channel.queue_declare(queue, passive=True))
        return seen[-1].method.message_count == expected

    poll(reached, timeout=5)
    return seen[-1]


# -- the raw client -----------------------------------------------------------------------


def describe(frame) -> Any:
    """A received frame (channel, value) as plain data; None (EOF) as ``"closed"``."""
    if frame is None:
        return "closed"
    channel, value = frame
    seen = jsonable(value)
    if isinstance(seen, dict):
        seen = {"ch": channel, **seen}
    return seen


class RawSession(RawClient):
    """The raw-socket client, handshaken and with channel 1 open, recording frames."""

    def __init__(self, url: str, channel: bool = True, **handshake):
        host, port = host_port(url)
        super().__init__(host, port)
        self.opened = self.handshake(**handshake)
        if channel:
            self.open_channel(1)

    def recv_frame(self):
        try:
            return super().recv_frame()
        except ConnectionResetError:
            return None

    def next_raw(self) -> tuple[int, int, bytes] | None:
        """The next frame undecoded: (type, channel, payload); None on EOF."""
        while len(self.buffer) < 7 or len(self.buffer) < 8 + int.from_bytes(self.buffer[3:7]):
            data = self.sock.recv(65536)
            if not data:
                return None
            self.buffer += data
        size = int.from_bytes(self.buffer[3:7])
        frame = (self.buffer[0], int.from_bytes(self.buffer[1:3]), self.buffer[7 : 7 + size])
        self.buffer = self.buffer[8 + size :]
        return frame

    def publish_split(self, channel: int, exchange: str, routing_key: str, body: bytes, size: int):
        """basic.publish with the body cut into frames of ``size`` octets."""
        self.send(channel, commands.Basic.Publish(exchange=exchange, routing_key=routing_key))
        self.send(channel, pamqp_header.ContentHeader(0, len(body), commands.Basic.Properties()))
        for start in range(0, len(body), size):
            self.send_frame(3, channel, body[start : start + size])

    def call(self, method, channel: int = 1) -> Any:
        """Send ``method``; return the next frame received."""
        self.send(channel, method)
        return self.next()

    def next(self) -> Any:
        try:
            return describe(self.recv_frame())
        except TimeoutError:
            return "timeout"

    def until(self, method_name: str, limit: int = 50) -> list:
        """Frames received up to and including the first ``method_name`` (or EOF)."""
        seen = []
        for _ in range(limit):
            frame = self.next()
            seen.append(frame)
            if not isinstance(frame, dict) or frame.get("method") == method_name:
                break
        return seen

    def barrier(self, channel: int = 1) -> list:
        """Everything received before the reply to a harmless synchronous method."""
        self.send(channel, commands.Exchange.Declare(exchange="amq.direct", passive=True))
        return self.until("Exchange.DeclareOk")[:-1]


@contextlib.contextmanager
def raw(url: str, **kwargs):
    session = RawSession(url, **kwargs)
    try:
        yield session
    finally:
        session.close()


def pika_scenario(*covers: str, expect: Any = None, name: str | None = None):
    """Register ``body(channel, prefix)``, run on a fresh pika channel, as a scenario
    observing its result or the error that ended it (see ``outcome``)."""

    def register(body):
        def run(url, prefix):
            with pika_channel(url) as (_connection, channel):
                return outcome(body, channel, prefix)

        scenario(*covers, expect=expect, name=name or body.__name__)(run)
        return body

    return register


def channel_closed(code: int, text: str) -> dict:
    return {"channel_closed": [code, text]}


def connection_closed(code: int, text: str) -> dict:
    return {"connection_closed": [code, text]}


def close_frame(code: int, text: str, class_id: int = 0, method_id: int = 0) -> dict:
    """A connection.close as the raw client describes it."""
    return {
        "method": "Connection.Close",
        "reply_code": code,
        "reply_text": text,
        "class_id": class_id,
        "method_id": method_id,
    }


def in_vhost(what: str, name: str) -> str:
    return f"{what} '{name}' in vhost '/'"
