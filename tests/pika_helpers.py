"""What the behaviour tests share: pika connections to the test broker, small publish/
consume/drain helpers, and the capture of channel and connection closes with their
reply codes, texts, class and method ids."""

from __future__ import annotations

import time
from contextlib import contextmanager

import pika
import pytest
from pika import spec
from pika.exceptions import (
    ChannelClosedByBroker,
    ConnectionClosedByBroker,
)

CAPABILITIES = {
    "publisher_confirms": True,
    "exchange_exchange_bindings": True,
    "basic.nack": True,
    "consumer_cancel_notify": True,
    "connection.blocked": True,
    "consumer_priorities": True,
    "authentication_failure_close": True,
    "per_consumer_qos": True,
    "direct_reply_to": True,
}


GENERATED = r"[A-Za-z0-9_-]{22}"  # 16 random bytes, url-safe base64 without padding


def parameters(broker, user: str = "guest", password: str = "guest", **kwargs):
    return pika.ConnectionParameters(
        host=broker.host,
        port=broker.port,
        credentials=pika.PlainCredentials(user, password),
        **kwargs,
    )


@contextmanager
def connection(broker, **kwargs):
    conn = pika.BlockingConnection(parameters(broker, **kwargs))
    try:
        yield conn
    finally:
        if conn.is_open:
            conn.close()


def pump(conn, done, timeout: float = 10.0) -> None:
    """Process I/O until ``done()``; the timeout only guards against a hang."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "gave up waiting"
        conn.process_data_events(time_limit=0.02)


def settle(conn) -> None:
    """Give the broker a moment to send anything more it (wrongly) would."""
    conn.process_data_events(time_limit=0.3)


def new_queue(ch, name: str = "", **kwargs) -> str:
    """Declare an exclusive queue (server-named by default); return its name."""
    kwargs.setdefault("exclusive", True)
    return ch.queue_declare(name, **kwargs).method.queue


def publish(ch, routing_key: str, body: bytes = b"m", exchange: str = "", **kwargs) -> None:
    ch.basic_publish(exchange, routing_key, body, **kwargs)


def counts(ch, queue: str) -> tuple[int, int]:
    """(message_count, consumer_count) from a passive declare."""
    ok = ch.queue_declare(queue, passive=True).method
    return ok.message_count, ok.consumer_count


def drain(ch, queue: str) -> list[tuple[bytes, bool]]:
    """Every ready message of ``queue`` as (body, redelivered), by basic.get (auto-ack)."""
    got = []
    while True:
        method, _props, body = ch.basic_get(queue, auto_ack=True)
        if method is None:
            return got
        got.append((body, method.redelivered))


def exists(conn, kind: str, name: str) -> bool:
    """Whether an exchange or queue exists, by a passive declare on a channel of its own."""
    probe = conn.channel()
    try:
        if kind == "queue":
            probe.queue_declare(name, passive=True)
        else:
            probe.exchange_declare(name, passive=True)
    except ChannelClosedByBroker as error:
        assert error.reply_code == 404
        return False
    probe.close()
    return True


def consume(ch, queue: str, **kwargs) -> list:
    """Start a consumer; returns the list its deliveries (method, properties, body) go to."""
    got: list = []
    ch.basic_consume(queue, lambda _ch, m, p, b: got.append((m, p, b)), **kwargs)
    return got


def rpc(conn, ch, method, *replies):
    """Send a synchronous method through pika's channel internals (for what
    BlockingChannel does not offer) and return the reply method."""
    answer: list = []
    ch._impl._rpc(method, lambda frame: answer.append(frame.method), list(replies))
    pump(conn, lambda: answer)
    return answer[0]


def acked(frames) -> set[int]:
    """The publish sequence numbers a list of Basic.Ack frames confirms (RabbitMQ may
    confirm out of order: a multiple ack covers every earlier number)."""
    tags: set[int] = set()
    for frame in frames:
        ack = frame.method
        assert isinstance(ack, spec.Basic.Ack)
        if ack.multiple:
            tags |= set(range(1, ack.delivery_tag + 1))
        else:
            assert ack.delivery_tag not in tags
            tags.add(ack.delivery_tag)
    return tags


def select_confirms(conn, ch, on_confirm) -> None:
    """confirm.select through pika's internals, so that each basic.ack/nack frame the
    broker sends is passed to ``on_confirm`` as it comes."""
    selected: list = []
    ch._impl.confirm_delivery(ack_nack_callback=on_confirm, callback=selected.append)
    pump(conn, lambda: selected)


def fill(ch, count: int) -> str:
    """A new queue holding messages b"0" .. b"<count-1>"."""
    queue = new_queue(ch)
    for i in range(count):
        publish(ch, queue, b"%d" % i)
    return queue


def get_n(ch, queue: str, count: int) -> list[int]:
    """basic.get ``count`` messages without acking them; return their delivery tags."""
    return [ch.basic_get(queue)[0].delivery_tag for _ in range(count)]


LOCKED = (
    "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '{}' in vhost '/'. It "
    "could be originally declared on another connection or the exclusive property value does "
    "not match that of the original declaration."
)


IN_EXCLUSIVE_USE = "ACCESS_REFUSED - queue '{}' in vhost '/' in exclusive use"


DEFAULT_EXCHANGE = "ACCESS_REFUSED - operation not permitted on the default exchange"


NO_PREVIOUS_QUEUE = "NOT_FOUND - no previously declared queue"


def cut(text: str) -> str:
    """A reply text as RabbitMQ sends it: cut to 252 bytes and '...' when over 255."""
    raw = text.encode()
    return text if len(raw) <= 255 else (raw[:252] + b"...").decode()


def capture(callbacks, prefix: int, method_class) -> list:
    """Collect the methods of one kind pika receives (to see class_id and method_id)."""
    seen: list = []
    callbacks.add(prefix, method_class, lambda frame: seen.append(frame.method), one_shot=False)
    return seen


def channel_error(conn, action) -> tuple[int, str, int, int]:
    """Run ``action(channel)`` on a new channel of ``conn``; the broker must close that
    channel, and only it. Returns the channel.close's code, text, class and method ids."""
    bystander = conn.channel()
    channel = conn.channel()
    closes = capture(channel._impl.callbacks, channel.channel_number, spec.Channel.Close)
    with pytest.raises(ChannelClosedByBroker) as info:
        action(channel)
        channel.basic_qos()  # a round trip, for actions the broker does not answer
    assert channel.is_closed and conn.is_open
    new_queue(bystander)  # the other channels of the connection go on
    bystander.close()
    (close,) = closes
    assert (info.value.reply_code, info.value.reply_text) == (close.reply_code, close.reply_text)
    return close.reply_code, close.reply_text, close.class_id, close.method_id


def connection_error(conn, action) -> tuple[int, str, int, int]:
    """Run ``action(channel)`` on a new channel; the broker must close the connection.
    Returns the connection.close's code, text, class and method ids."""
    closes = capture(conn._impl.callbacks, 0, spec.Connection.Close)
    bystander = conn.channel()
    with pytest.raises(ConnectionClosedByBroker) as info:
        action(conn.channel())
        pump(conn, lambda: False)  # until the close arrives
    assert conn.is_closed and bystander.is_closed
    (close,) = closes
    assert (info.value.reply_code, info.value.reply_text) == (close.reply_code, close.reply_text)
    return close.reply_code, close.reply_text, close.class_id, close.method_id


def send(channel, method, content=None) -> None:
    """Send a method pika's API cannot express, through its channel internals."""
    channel._impl._send_method(method, content)


def inequivalent(kind: str, name: str, arg: str, received: str, current: str) -> str:
    return (
        f"PRECONDITION_FAILED - inequivalent arg '{arg}' for {kind} '{name}' in vhost '/': "
        f"received {received} but current is {current}"
    )


def unknown_tag(tag: int, method_id: int) -> tuple[int, str, int, int]:
    return 406, f"PRECONDITION_FAILED - unknown delivery tag {tag}", 60, method_id
