"""Malformed and out-of-order input over real sockets, answered as RabbitMQ 3.10 answers.

Every expected reply code, text and class/method id below was observed on the wire
against RabbitMQ 3.10. While these tests run, a well-behaved pika connection keeps
publishing and consuming through a queue of its own (``steady_traffic``); at the end every
message it published must have arrived exactly once. After each test the broker must
still accept a new connection.
"""

from __future__ import annotations

import collections
import socket
import struct
import threading
import time

import pika
import pytest
from amqp_raw import PROTOCOL_HEADER, RawClient, plain_response
from pamqp import commands, encode, header

# RabbitMQ closes a failed handshake silently after a 3 s delay; allow for it.
CLOSE_TIMEOUT = 10.0
NON_METHOD = "UNEXPECTED_FRAME - expected method frame, got non method frame instead"
EXPECTED_BODY = "UNEXPECTED_FRAME - expected content body, got non content body frame instead"


# -- background traffic ---------------------------------------------------------------


class SteadyTraffic(threading.Thread):
    """A well-behaved pika client publishing (with confirms) to its own queue and
    consuming from it, until stopped."""

    def __init__(self, url: str):
        super().__init__(name="steady-traffic", daemon=True)
        self.url = url
        self.stopping = threading.Event()
        self.published = 0
        self.received: collections.Counter[int] = collections.Counter()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            connection = pika.BlockingConnection(pika.URLParameters(self.url))
            channel = connection.channel()
            channel.confirm_delivery()
            queue = channel.queue_declare("", exclusive=True).method.queue

            def on_message(ch, method, _properties, body):
                self.received[int(body)] += 1
                ch.basic_ack(method.delivery_tag)

            channel.basic_consume(queue, on_message)
            while not self.stopping.is_set():
                channel.basic_publish("", queue, str(self.published).encode(), mandatory=True)
                self.published += 1
                connection.process_data_events(time_limit=0.005)
            deadline = time.monotonic() + 20
            while sum(self.received.values()) < self.published and time.monotonic() < deadline:
                connection.process_data_events(time_limit=0.1)
            connection.close()
        except BaseException as error:  # reported by check()
            self.error = error

    def check(self) -> None:
        self.stopping.set()
        self.join(30)
        assert not self.is_alive(), "background traffic did not finish"
        assert self.error is None, f"background traffic failed: {self.error!r}"
        assert self.published > 0
        assert self.received == collections.Counter(range(self.published)), (
            f"published {self.published}, lost "
            f"{sorted(set(range(self.published)) - set(self.received))[:10]}, duplicated "
            f"{[n for n, count in self.received.items() if count > 1][:10]}"
        )


@pytest.fixture(scope="module", autouse=True)
def steady_traffic(broker):
    traffic = SteadyTraffic(broker.url)
    traffic.start()
    yield traffic
    traffic.check()


@pytest.fixture(autouse=True)
def broker_still_accepts_connections(broker):
    """After each test: a fresh client completes the handshake and opens a channel."""
    yield
    with RawClient(broker.host, broker.port) as client:
        _start, _tune, opened = client.handshake()
        assert isinstance(opened[1], commands.Connection.OpenOk)
        client.open_channel(1)


# -- helpers --------------------------------------------------------------------------


def frame_bytes(frame_type: int, channel: int, payload: bytes, end: int = 0xCE) -> bytes:
    return struct.pack(">BHI", frame_type, channel, len(payload)) + payload + bytes([end])


def method_payload(class_id: int, method_id: int, args: bytes = b"") -> bytes:
    return struct.pack(">HH", class_id, method_id) + args


def read_until_closed(client: RawClient, timeout: float = CLOSE_TIMEOUT) -> bytes:
    """Every byte the broker sends until it closes the socket; fails if it stays open."""
    client.sock.settimeout(timeout)
    data, client.buffer = client.buffer, b""
    try:
        while chunk := client.sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    except TimeoutError:
        pytest.fail(f"socket still open after {timeout}s (received {data[:64]!r})")
    return data


def assert_dropped(client: RawClient) -> None:
    """The broker closes the socket without sending a single frame."""
    assert read_until_closed(client) == b""


def assert_connection_closed(
    client: RawClient, reply_code: int, reply_text: str, class_id: int = 0, method_id: int = 0
) -> None:
    """The next frame is connection.close with these values; after close-ok the socket
    closes."""
    client.sock.settimeout(CLOSE_TIMEOUT)
    got = client.recv_frame()
    assert got is not None, "socket closed without connection.close"
    channel, method = got
    assert channel == 0 and isinstance(method, commands.Connection.Close), got
    assert (method.reply_code, method.reply_text, method.class_id, method.method_id) == (
        reply_code,
        reply_text,
        class_id,
        method_id,
    )
    try:
        client.send(0, commands.Connection.CloseOk())
    except OSError:
        pass  # the broker may already have closed after a framing error
    read_until_closed(client)


def expect_channel_close(
    client: RawClient, channel: int, reply_code: int, reply_text: str, class_id: int, method_id: int
) -> None:
    close = client.expect(commands.Channel.Close, channel)
    assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == (
        reply_code,
        reply_text,
        class_id,
        method_id,
    )


def assert_channel_works(client: RawClient, channel: int) -> None:
    client.send(channel, commands.Basic.Qos(prefetch_count=7))
    client.expect(commands.Basic.QosOk, channel)


def start_ok(
    mechanism: str = "PLAIN",
    response: str = plain_response(),
    authentication_failure_close: bool = True,
) -> commands.Connection.StartOk:
    capabilities = {"authentication_failure_close": True} if authentication_failure_close else {}
    return commands.Connection.StartOk(
        client_properties={"product": "malformed-test", "capabilities": capabilities},
        mechanism=mechanism,
        response=response,
    )


@pytest.fixture
def client(broker):
    """A raw client past the handshake, with channel 1 open."""
    with RawClient(broker.host, broker.port) as raw:
        _start, _tune, opened = raw.handshake()
        assert isinstance(opened[1], commands.Connection.OpenOk)
        raw.open_channel(1)
        yield raw


@pytest.fixture
def started(broker):
    """A raw client that sent the protocol header and received connection.start."""
    with RawClient(broker.host, broker.port) as raw:
        raw.send_raw(PROTOCOL_HEADER)
        raw.expect(commands.Connection.Start, 0)
        yield raw


def tuned(raw: RawClient, **tune_ok) -> None:
    """From ``started``: log in and send tune-ok (but not connection.open)."""
    raw.send(0, start_ok())
    tune = raw.expect(commands.Connection.Tune, 0)
    values = {"channel_max": tune.channel_max, "frame_max": tune.frame_max, "heartbeat": 0}
    raw.send(0, commands.Connection.TuneOk(**{**values, **tune_ok}))


# -- protocol header ------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [b"AMQP\x00\x00\x08\x00", b"AMQP\x00\x00\x09\x00", b"HTTP/1.1", b"AMQP\x03\x01\x00\x00"],
    ids=["amqp-0-8", "amqp-0-9-0", "http", "amqp-1.0-sasl"],
)
def test_wrong_protocol_header(broker, raw):
    with RawClient(broker.host, broker.port) as client:
        client.send_raw(raw)
        assert read_until_closed(client) == PROTOCOL_HEADER


def test_partial_protocol_header_then_close(broker):
    with RawClient(broker.host, broker.port) as client:
        client.send_raw(b"AMQ")
        client.sock.shutdown(socket.SHUT_WR)
        assert_dropped(client)


# -- framing errors -------------------------------------------------------------------


def test_garbage_after_handshake(client):
    client.send_raw(b"\x00garbage-bytes-here!!\r\n")
    assert_connection_closed(
        client, 501, "FRAME_ERROR - type 0, all octets = <<>>: {frame_too_large,1919050087,131064}"
    )


def test_truncated_frame_then_close(client):
    client.send_raw(frame_bytes(1, 1, method_payload(50, 10, b"\x00" * 30))[:15])
    client.sock.shutdown(socket.SHUT_WR)
    assert_dropped(client)


@pytest.mark.parametrize(
    ("frame_max", "payload_size"), [(131072, 131073), (4096, 4097), (4096, 0x7FFFFFFF)]
)
def test_frame_larger_than_frame_max(broker, frame_max, payload_size):
    """The frame header alone is refused; RabbitMQ counts 8 octets of slack."""
    with RawClient(broker.host, broker.port) as client:
        client.handshake(frame_max=frame_max)
        client.open_channel(1)
        client.send_raw(struct.pack(">BHI", 3, 1, payload_size))
        assert_connection_closed(
            client,
            501,
            f"FRAME_ERROR - type 3, all octets = <<>>: "
            f"{{frame_too_large,{payload_size},{frame_max - 8}}}",
        )


def test_frame_within_rabbitmq_slack_is_accepted(client):
    """A body frame whose payload is frame_max (total frame_max + 8) is accepted."""
    client.send(1, commands.Queue.Declare(queue="", exclusive=True))
    queue = client.expect(commands.Queue.DeclareOk, 1).queue
    body = b"s" * 131072
    client.send(1, commands.Basic.Publish(exchange="", routing_key=queue))
    client.send(1, header.ContentHeader(0, len(body), commands.Basic.Properties()))
    client.send_raw(frame_bytes(3, 1, body))
    client.send(1, commands.Queue.Declare(queue=queue, passive=True))
    assert client.expect(commands.Queue.DeclareOk, 1).message_count == 1


@pytest.mark.parametrize(
    ("payload", "end", "text"),
    [
        (
            method_payload(20, 10, b"\x00"),
            0,
            "FRAME_ERROR - type 1, all octets = <<0,20,0,10,0>>: {invalid_frame_end_marker,0}",
        ),
        (
            method_payload(50, 10, b"\x00" * 30),
            0x41,
            "FRAME_ERROR - type 1, first 16 octets = <<0,50,0,10,0,0,0,0,0,0,0,0,0,0,0,0>>: "
            "{invalid_frame_end_marker,\n" + " " * 66 + "65}",
        ),
    ],
    ids=["short", "long"],
)
def test_bad_frame_end(client, payload, end, text):
    client.send_raw(frame_bytes(1, 1, payload, end))
    assert_connection_closed(client, 501, text)


@pytest.mark.parametrize(
    ("frame_type", "payload", "text"),
    [
        (9, b"abc", 'FRAME_ERROR - type 9, all octets = <<"abc">>: unknown_frame'),
        (0, b"", "FRAME_ERROR - type 0, all octets = <<>>: unknown_frame"),
    ],
)
def test_unknown_frame_type(client, frame_type, payload, text):
    client.send_raw(frame_bytes(frame_type, 1, payload))
    assert_connection_closed(client, 501, text)


def test_content_header_without_method(client):
    client.send(1, header.ContentHeader(0, 5, commands.Basic.Properties()))
    assert_connection_closed(client, 505, NON_METHOD)


def test_content_body_without_header(client):
    client.send_raw(frame_bytes(3, 1, b"hello"))
    assert_connection_closed(client, 505, NON_METHOD)


def test_method_while_content_header_expected(client):
    client.send(1, commands.Basic.Publish(routing_key="x"))
    client.send(1, commands.Basic.Qos(prefetch_count=1))
    assert_connection_closed(
        client,
        505,
        "UNEXPECTED_FRAME - expected content header for class 60, "
        "got non content header frame instead",
        60,
        40,
    )


def test_method_while_content_body_expected(client):
    client.send(1, commands.Basic.Publish(routing_key="x"))
    client.send(1, header.ContentHeader(0, 5, commands.Basic.Properties()))
    client.send(1, commands.Basic.Qos(prefetch_count=1))
    assert_connection_closed(client, 505, EXPECTED_BODY, 60, 40)


def test_heartbeat_on_channel_1(client):
    client.send_raw(frame_bytes(8, 1, b""))
    assert_connection_closed(client, 505, "UNEXPECTED_FRAME - type 8, all octets = <<>>")


@pytest.mark.parametrize(
    ("channel", "class_id", "method_id"),
    [(1, 99, 10), (1, 50, 99), (0, 10, 99)],
    ids=["unknown-class", "unknown-method", "unknown-connection-method"],
)
def test_unknown_class_or_method_closes_connection(client, channel, class_id, method_id):
    """RabbitMQ's reader just drops the socket; we say why, with 540 (a deliberate,
    documented divergence: a client gets an explanation instead of a reset)."""
    client.send_raw(frame_bytes(1, channel, method_payload(class_id, method_id)))
    assert_connection_closed(
        client,
        540,
        f"NOT_IMPLEMENTED - unknown method (class {class_id}, method {method_id})",
        class_id,
        method_id,
    )


@pytest.mark.parametrize(
    ("payload", "text", "ids"),
    [
        (method_payload(50, 10, b"\x00\x00\x09abc"), "<<0,0,9,97,98,99>>", (50, 10)),
        (method_payload(60, 40, b"\x00\x00\x09amq"), "<<0,0,9,97,109,113>>", (60, 40)),
        (method_payload(60, 80, b"\x00" * 8), "<<0,0,0,0,0,0,0,0>>", (60, 80)),
    ],
    ids=["queue.declare", "basic.publish", "basic.ack"],
)
def test_malformed_method_arguments(client, payload, text, ids):
    client.send_raw(frame_bytes(1, 1, payload))
    assert_connection_closed(client, 501, f"FRAME_ERROR - cannot decode {text}", *ids)


# -- channels -------------------------------------------------------------------------


def test_channel_number_above_channel_max_opens(broker):
    """RabbitMQ 3.10 limits the number of open channels, not channel numbers."""
    with RawClient(broker.host, broker.port) as client:
        client.handshake(channel_max=2)
        client.open_channel(3)
        client.open_channel(2048)


def test_more_channels_than_channel_max(broker):
    with RawClient(broker.host, broker.port) as client:
        client.handshake(channel_max=2)
        client.open_channel(1)
        client.open_channel(5)
        client.send(7, commands.Channel.Open())
        assert_connection_closed(
            client,
            530,
            "NOT_ALLOWED - number of channels opened (2) has reached the negotiated "
            "channel_max (2)",
        )


def test_method_on_unopened_channel(client):
    client.send(5, commands.Queue.Declare(queue="x"))
    assert_connection_closed(client, 504, "CHANNEL_ERROR - expected 'channel.open'", 50, 10)


def test_channel_open_twice(client):
    client.send(1, commands.Channel.Open())
    assert_connection_closed(client, 504, "CHANNEL_ERROR - second 'channel.open' seen", 20, 10)


def test_channel_error_leaves_other_channels_working(client):
    """basic.ack of an unknown tag closes channel 1 only; frames sent on it before the
    client's close-ok are ignored; after close-ok its number can be reopened."""
    client.open_channel(2)
    client.send(1, commands.Basic.Ack(delivery_tag=42))
    expect_channel_close(client, 1, 406, "PRECONDITION_FAILED - unknown delivery tag 42", 60, 80)
    assert_channel_works(client, 2)

    # Ignored: nothing comes back for any of these, and the connection stays up.
    client.send(1, commands.Basic.Qos(prefetch_count=3))
    client.send(1, commands.Queue.Declare(queue="", exclusive=True))
    client.publish(1, "no-such-exchange", "k", b"lost")
    client.send(1, commands.Basic.Ack(delivery_tag=99))
    assert_channel_works(client, 2)  # the first reply is channel 2's, not channel 1's

    client.send(1, commands.Channel.CloseOk())
    client.open_channel(1)
    assert_channel_works(client, 1)
    assert_channel_works(client, 2)


# -- handshake ------------------------------------------------------------------------


def test_channel_frame_before_connection_open(started):
    tuned(started)
    started.send(1, commands.Channel.Open())
    assert_connection_closed(
        started, 505, "UNEXPECTED_FRAME - type 1, all octets = <<0,20,0,10,1,48>>"
    )


def test_tune_ok_frame_max_below_minimum(started):
    """RabbitMQ drops the socket after 3 s; we close with 530 and the reason (a deliberate,
    documented divergence)."""
    tuned(started, frame_max=4095)
    assert_connection_closed(started, 530, "NOT_ALLOWED - frame_max=4095 < 4096 min size", 10, 31)


@pytest.mark.parametrize("capability", [True, False], ids=["failure-close", "no-capability"])
def test_wrong_credentials(started, capability):
    started.send(
        0,
        start_ok(
            response=plain_response("guest", "wrong"), authentication_failure_close=capability
        ),
    )
    if capability:
        assert_connection_closed(
            started,
            403,
            "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. "
            "For details see the broker logfile.",
        )
    else:
        assert_dropped(started)


def test_unknown_user(started):
    started.send(0, start_ok(response=plain_response("nobody", "pw")))
    assert_connection_closed(
        started,
        403,
        "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. "
        "For details see the broker logfile.",
    )


def test_unknown_sasl_mechanism(started):
    """Even with authentication_failure_close, RabbitMQ just drops the connection."""
    started.send(0, start_ok(mechanism="FOO", response="x"))
    assert_dropped(started)


def test_amqplain_login(broker):
    table = encode.field_table({"LOGIN": "guest", "PASSWORD": "guest"})[4:]
    with RawClient(broker.host, broker.port) as client:
        _start, tune, opened = client.handshake(
            mechanism="AMQPLAIN", response=table.decode("latin-1")
        )
        assert isinstance(tune, commands.Connection.Tune)
        assert isinstance(opened[1], commands.Connection.OpenOk)
        client.open_channel(1)
        assert_channel_works(client, 1)
