"""Fuzzing the method layer: a real ``Connection`` (and its channels, queues, exchanges)
in-process is sent sequences of methods whose every field is drawn from what the wire
can carry (field tables of any value type and depth, strings that are not UTF-8, integers
at their limits) and publishes with well- and ill-formed properties, while a well-behaved
client shares the broker with it. Whatever the fuzzed client sends:

- it gets a proper close (channel.close or connection.close) with one of the reply codes
  RabbitMQ uses for client errors, never 541 INTERNAL_ERROR (the broker's own bug);
- nothing escapes into the event loop (a timer's or ``call_soon``'s callback);
- the queues' timers (TTL, expiry) fire without error;
- the other client is never closed, and still declares, publishes and gets.
"""

from __future__ import annotations

import struct
import tempfile
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from pamqp import commands

from xivo_bus.amqp import errors, frames
from xivo_bus.broker import store
from xivo_bus.broker.store import Store

from . import fuzz_strategies as fuzz
from .session_for_tests import Broker, Client, Loop

# Reply codes a client's mistakes may earn (541 is the broker's own failure).
CLIENT_ERRORS = {
    errors.REPLY_SUCCESS,  # the client's own connection.close echoed? never sent by us
    errors.CONTENT_TOO_LARGE,
    errors.ACCESS_REFUSED,
    errors.NOT_FOUND,
    errors.RESOURCE_LOCKED,
    errors.PRECONDITION_FAILED,
    errors.FRAME_ERROR,
    errors.SYNTAX_ERROR,
    errors.COMMAND_INVALID,
    errors.CHANNEL_ERROR,
    errors.UNEXPECTED_FRAME,
    errors.RESOURCE_ERROR,
    errors.NOT_ALLOWED,
    errors.NOT_IMPLEMENTED,
}

FUZZ = fuzz.fuzz_settings(80)

_channels = st.sampled_from([1] * 8 + [2] * 3 + [3])


def _method(classes):
    return st.tuples(
        st.just("method"), _channels, st.sampled_from(classes).flatmap(fuzz.method_payloads)
    )


steps = st.one_of(
    _method(fuzz.COMMON_CLASSES),
    _method(fuzz.COMMON_CLASSES),
    _method(fuzz.COMMON_CLASSES),
    st.tuples(
        st.just("publish"),
        _channels,
        st.sampled_from(["", "amq.direct", "amq.headers", "amq.fanout", "x", "amq.topic"]),
        st.sampled_from(["q", "q2", "", "a.b", "dl"]),
        fuzz.properties(),
        st.binary(max_size=8),
        st.sampled_from([0, 0, 0, 1, 2, 3]),
    ),
    st.tuples(st.just("advance"), st.sampled_from([0.001, 0.01, 1.0, 100.0])),
)
# rarely: any method (most close the connection), a channel-0 method
steps = st.one_of(
    *[steps] * 12,
    _method(fuzz.CHANNEL_CLASSES),
    st.tuples(
        st.just("connection"),
        st.sampled_from(fuzz.CONNECTION_CLASSES).flatmap(fuzz.method_payloads),
    ),
)


class Bystander:
    """The well-behaved client: it owns queues the fuzzed one can reach (with TTLs, a
    dead-letter exchange, priorities), consumes from one, and must never be closed."""

    def __init__(self, broker: Broker):
        self.client = client = broker.connect()
        client.open()

        def declare(name: str, **arguments):
            client.method(
                1,
                frames.build(
                    commands.Queue.Declare,
                    ticket=0,
                    queue=name,
                    passive=False,
                    durable=False,
                    exclusive=False,
                    auto_delete=False,
                    nowait=False,
                    arguments=arguments,
                ),
            )

        declare("dl")
        client.method(1, commands.Queue.Bind(queue="dl", exchange="amq.headers", routing_key=""))
        declare("q", **{"x-dead-letter-exchange": "amq.headers", "x-max-priority": 5})
        declare("q2", **{"x-message-ttl": 5, "x-dead-letter-exchange": "amq.headers"})
        client.method(1, commands.Basic.Consume(queue="q", consumer_tag="b"))
        client.received()

    def check(self) -> None:
        """Reject (to the dead-letter exchange) whatever it was given, then declare,
        publish and get a message of its own: all without being closed."""
        client = self.client
        client.method(1, commands.Basic.Nack(delivery_tag=0, multiple=True, requeue=False))
        client.method(
            1, commands.Queue.Declare(queue="bystander-check", auto_delete=False, durable=False)
        )
        client.publish(1, "", "bystander-check", b"ok", b"\x10\x00\x02")  # delivery_mode 2
        client.method(1, commands.Basic.Get(queue="bystander-check", no_ack=True))
        frames_in = client.received()
        closes = [
            value
            for _, value in frames_in
            if isinstance(value, (commands.Channel.Close, commands.Connection.Close))
        ]
        assert not closes, closes
        assert any(isinstance(value, commands.Basic.GetOk) for _, value in frames_in)


def _follow(client: Client, closes: list) -> bool:
    """Check the closes a step earned; answer them as a client does (close-ok, and a
    new channel). False once the connection is closed."""
    for channel, close in client.closes():
        closes.append((channel, close.reply_code, close.reply_text))
        assert close.reply_code in CLIENT_ERRORS, (channel, close.reply_code, close.reply_text)
        if isinstance(close, commands.Connection.Close):
            client.method(0, commands.Connection.CloseOk())
            return False
        client.method(channel, commands.Channel.CloseOk())
        client.method(channel, commands.Channel.Open())
    return not client.connection.state.ending


def run(steps_to_run, opened: bool = True) -> list:
    """Play the steps as a client (opened, with channels 1 and 2; else from the protocol
    header on) beside a bystander; returns the closes the client earned."""
    loop = Loop()
    try:
        broker = Broker(loop, max_message_size=64, auth_failure_delay=0.0)
        bystander = Bystander(broker)
        client = broker.connect()
        if opened:
            client.open(channels=(1, 2))
        else:
            client.send(frames.PROTOCOL_HEADER)
        closes: list = []
        for step in steps_to_run:
            kind = step[0]
            if kind == "method":
                client.send(fuzz.method_frame(step[1], step[2]))
            elif kind == "connection":
                client.send(fuzz.method_frame(0, step[1]))
            elif kind == "publish":
                _, channel, exchange, key, props, body, bits = step
                client.send(
                    fuzz.publish_frames(channel, exchange.encode(), key.encode(), props, body, bits)
                )
            else:
                broker.advance(step[1])
            if not _follow(client, closes):
                break
        broker.advance(1000.0)
        bystander.check()
        client.lost()
        broker.advance(1000.0)
        bystander.check()
        assert not loop.escaped, loop.escaped
        return closes
    finally:
        loop.close()


@fuzz.fuzz_settings(150)
@given(st.lists(steps, max_size=12))
def test_fuzzed_methods_get_a_proper_close_and_harm_no_one(steps_to_run):
    run(steps_to_run)


# A publisher whose messages carry headers the broker reads (CC, BCC, x-death), into the
# other client's queues: routed, expired and rejected to a dead-letter exchange.
publishes = st.tuples(
    st.just("publish"),
    st.just(1),
    st.sampled_from(["", "amq.headers", "amq.fanout", "amq.direct"]),
    st.sampled_from(["q", "q2", "dl"]),
    fuzz.routing_properties(),
    st.binary(max_size=8),
    st.just(0),
)


@FUZZ
@given(
    st.lists(
        st.one_of(
            publishes,
            publishes,
            publishes,
            st.tuples(st.just("advance"), st.sampled_from([0.001, 1.0])),
        ),
        max_size=8,
    )
)
def test_fuzzed_headers_are_routed_and_dead_lettered_without_harm(steps_to_run):
    run(steps_to_run)


def _payload(method) -> bytes:
    return frames.encode_method(method)


# The handshake, fuzzed: the right methods now and then (so that it gets further), any
# connection method with any fields, channel methods too early.
handshake_steps = st.one_of(
    st.just(
        _payload(
            frames.build(
                commands.Connection.StartOk,
                client_properties={"capabilities": {"authentication_failure_close": True}},
                mechanism="PLAIN",
                response="\0guest\0guest",
                locale="en_US",
            )
        )
    ),
    st.just(_payload(commands.Connection.TuneOk(channel_max=0, frame_max=131072, heartbeat=0))),
    st.just(_payload(commands.Connection.Open(virtual_host="/"))),
    st.sampled_from(fuzz.CONNECTION_CLASSES).flatmap(fuzz.method_payloads),
    st.sampled_from(fuzz.CONNECTION_CLASSES).flatmap(fuzz.method_payloads),
).map(lambda payload: ("connection", payload))


@FUZZ
@given(st.lists(st.one_of(handshake_steps, handshake_steps, steps), max_size=8))
def test_fuzzed_handshakes_get_a_proper_close_and_harm_no_one(steps_to_run):
    run(steps_to_run, opened=False)


def _declare_exchange(name: bytes, kind: bytes, arguments: bytes) -> bytes:
    # ticket, exchange, type, bits (durable), arguments
    args = b"\0\0" + fuzz.short(name) + fuzz.short(kind) + b"\x02" + arguments
    return fuzz.method_frame(1, struct.pack(">I", commands.Exchange.Declare.index) + args)


def _declare_queue(name: bytes, arguments: bytes) -> bytes:
    args = b"\0\0" + fuzz.short(name) + b"\x02" + arguments  # durable
    return fuzz.method_frame(1, struct.pack(">I", commands.Queue.Declare.index) + args)


def _bind_queue(queue: bytes, exchange: bytes, arguments: bytes) -> bytes:
    args = b"\0\0" + fuzz.short(queue) + fuzz.short(exchange) + fuzz.short(b"k") + b"\0"
    return fuzz.method_frame(1, struct.pack(">I", commands.Queue.Bind.index) + args + arguments)


@fuzz.fuzz_settings(12)
@given(
    fuzz.argument_tables(("alternate-exchange",)),
    fuzz.argument_tables(fuzz.QUEUE_KEYS),
    fuzz.argument_tables(("x-match", "a", "x-a")),
)
def test_durable_declarations_with_odd_arguments_are_stored_and_read_back(
    exchange_arguments, queue_arguments, binding_arguments
):
    with tempfile.TemporaryDirectory() as directory:
        loop = Loop()
        broker = Broker(loop, store=Store(Path(directory)))
        try:
            client = broker.connect()
            client.open()
            closes: list = []
            for frame in (
                _declare_exchange(b"dx", b"headers", exchange_arguments),
                _declare_queue(b"dq", queue_arguments),
                _bind_queue(b"dq", b"dx", binding_arguments),
            ):
                client.send(frame)
                loop.sleep(0.01)  # the store commits
                if not _follow(client, closes):
                    break
            assert not loop.escaped, loop.escaped
        finally:
            broker.close()
            loop.close()
        recovered = Store(Path(directory)).open()
        vhost = broker.vhost
        stored = {(queue.name, store.encode_table(queue.arguments)) for queue in recovered.queues}
        assert stored == {
            (name, store.encode_table(queue.arguments))
            for name, queue in vhost.queues.items()
            if queue.durable
        }
        for _vhost, name, _kind, _auto, _internal, arguments in recovered.exchanges:
            assert store.encode_table(arguments) == store.encode_table(
                vhost.exchanges[name].arguments
            )
        assert len(recovered.bindings) == sum(
            len(exchange.bindings) for name, exchange in vhost.exchanges.items() if name == "dx"
        )
