"""Byte-level tests of the sans-I/O codec (``xivo_bus.amqp``): no sockets, no broker.

The reader is driven with exact bytes; the hand-written hot codecs are compared byte for
byte with pamqp, the reference encoder; framing errors must carry RabbitMQ's reply codes.
"""

from __future__ import annotations

import datetime
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pamqp import body as pamqp_body
from pamqp import commands, frame, header

from xivo_bus.amqp import errors, frames, properties

HEADER = frames.PROTOCOL_HEADER


# -- helpers --------------------------------------------------------------------------


def raw_frame(frame_type: int, channel: int, payload: bytes, end: int = frames.FRAME_END) -> bytes:
    return struct.pack(">BHI", frame_type, channel, len(payload)) + payload + bytes([end])


def method_payload(class_id: int, method_id: int, args: bytes = b"") -> bytes:
    return struct.pack(">HH", class_id, method_id) + args


def content_header(body_size: int, props: commands.Basic.Properties | None = None) -> bytes:
    return header.ContentHeader(0, body_size, props or commands.Basic.Properties()).marshal()


def publish_frames(
    channel: int,
    body: bytes,
    chunk: int | None = None,
    props: commands.Basic.Properties | None = None,
    routing_key: str = "rk",
) -> bytes:
    """basic.publish + content header + body frames of ``chunk`` bytes (one if None)."""
    data = frame.marshal(commands.Basic.Publish(exchange="", routing_key=routing_key), channel)
    data += frame.marshal(header.ContentHeader(0, len(body), props), channel)
    chunk = chunk or max(len(body), 1)
    for start in range(0, len(body), chunk):
        data += frame.marshal(pamqp_body.ContentBody(body[start : start + chunk]), channel)
    return data


def describe(event: frames.Event) -> tuple:
    """A comparable, hashable-free summary of an event."""
    if isinstance(event, frames.ProtocolHeader):
        return ("header", event.raw, event.valid)
    if isinstance(event, frames.Heartbeat):
        return ("heartbeat", event.channel)
    fields = (event.channel, event.method.index, dict(event.method))
    if isinstance(event, frames.ContentFrame):
        return ("content", *fields, bytes(event.properties), bytes(event.body))
    return ("method", *fields)


def drain(reader: frames.FrameReader) -> list[tuple]:
    out = []
    while (event := reader.next_event()) is not None:
        out.append(describe(event))
    return out


def parse(data: bytes, step: int | None = None, frame_max: int | None = None) -> list[tuple]:
    """Feed ``data`` (``step`` bytes at a time) and return every event, header included;
    ``frame_max`` is the negotiated maximum, as tune-ok would set it."""
    reader = frames.FrameReader()
    if frame_max is not None:
        reader.frame_max = frame_max
    step = step or len(data) or 1
    out: list[tuple] = []
    for start in range(0, len(data), step):
        reader.feed(data[start : start + step])
        out += drain(reader)
    return out


def opened_reader(frame_max: int | None = None) -> frames.FrameReader:
    """A reader that has already accepted a valid protocol header."""
    reader = frames.FrameReader()
    reader.feed(HEADER)
    assert describe(reader.next_event()) == ("header", HEADER, True)
    if frame_max is not None:
        reader.frame_max = frame_max
    return reader


def framing_error(data: bytes, frame_max: int | None = None) -> errors.ConnectionError:
    """The ConnectionError raised by a reader fed a valid header then ``data``."""
    reader = opened_reader(frame_max)
    reader.feed(data)
    with pytest.raises(errors.ConnectionError) as caught:
        drain(reader)
    return caught.value


def as_signed64(value: int) -> int:
    """pamqp packs AMQP long-long integers signed ('>q') where AMQP's are unsigned; this
    is the signed integer with the same 8 octets, so pamqp can encode tags up to 2**64-1."""
    return value - 2**64 if value >= 2**63 else value


def as_unsigned64(value: int) -> int:
    return value + 2**64 if value < 0 else value


def ack_payload(delivery_tag: int, multiple: bool) -> bytes:
    """basic.ack arguments as pamqp encodes them."""
    return frames.encode_method(
        commands.Basic.Ack(delivery_tag=as_signed64(delivery_tag), multiple=multiple)
    )


class _Unchecked:
    """Mixin dropping pamqp's argument validation (exchange-name regex, 127-char limit),
    so pamqp can encode any short string the wire allows."""

    def validate(self) -> None:
        pass


class UncheckedPublish(_Unchecked, commands.Basic.Publish):
    pass


class UncheckedDeliver(_Unchecked, commands.Basic.Deliver):
    pass


# -- strategies -----------------------------------------------------------------------

short_strings = st.text(max_size=255).map(
    lambda s: s.encode("utf-8")[:255].decode("utf-8", "ignore")
)
delivery_tags = st.integers(min_value=0, max_value=2**64 - 1)
channels = st.integers(min_value=1, max_value=65535)
frame_maxes = st.one_of(
    st.sampled_from([4096, 4097, 8192, 65536, 131072]), st.integers(4096, 131072)
)


@st.composite
def bodies(draw, max_size: int = 300_000) -> bytes:
    """Bodies of 0..300000 bytes, cheap to draw: a short pattern repeated."""
    pattern = draw(st.binary(min_size=1, max_size=32))
    size = draw(
        st.one_of(
            st.integers(0, 16),
            st.integers(0, max_size),
            st.sampled_from([4087, 4088, 4089, 8176, 131063, 131064, 131065, max_size]),
        )
    )
    return (pattern * (size // len(pattern) + 1))[:size]


# -- protocol header ------------------------------------------------------------------


def test_good_protocol_header():
    assert parse(HEADER) == [("header", HEADER, True)]


@pytest.mark.parametrize(
    "raw",
    [
        b"AMQP\x00\x00\x08\x00",
        b"AMQP\x00\x00\x09\x00",
        b"AMQP\x01\x01\x00\x0a",
        b"AMQP\x03\x01\x00\x00",
        b"AMQP\x00\x01\x00\x00",
    ],
)
def test_wrong_amqp_protocol_header(raw):
    assert parse(raw) == [("header", raw, False)]


def test_non_amqp_header_rejected_without_waiting_for_eight_bytes():
    """``HTTP`` can never become ``AMQP``: no need to wait for more octets."""
    assert parse(b"HTTP") == [("header", b"HTTP", False)]
    assert parse(b"G") == [("header", b"G", False)]


def test_partial_protocol_header_waits():
    reader = frames.FrameReader()
    for octet in range(len(HEADER) - 1):
        reader.feed(HEADER[octet : octet + 1])
        assert reader.next_event() is None
    reader.feed(HEADER[-1:])
    assert drain(reader) == [("header", HEADER, True)]


def test_header_followed_by_frames_in_same_chunk():
    data = HEADER + frames.HEARTBEAT_FRAME
    assert parse(data) == [("header", HEADER, True), ("heartbeat", 0)]


# -- splitting at every byte boundary -------------------------------------------------


def _mixed_stream() -> bytes:
    props = commands.Basic.Properties(content_type="text/plain", headers={"k": "v", "n": 7})
    return b"".join(
        [
            HEADER,
            frame.marshal(commands.Channel.Open(), 1),
            frame.marshal(
                commands.Queue.Declare(queue="q-1", durable=True, arguments={"x-max-length": 3}),
                1,
            ),
            frames.HEARTBEAT_FRAME,
            publish_frames(1, b"hello world", chunk=4, props=props),
            publish_frames(2, b""),
            raw_frame(frames.FRAME_METHOD, 1, ack_payload(2**64 - 1, True)),
            frame.marshal(commands.Basic.Qos(prefetch_count=10), 3),
        ]
    )


def test_stream_events():
    events = parse(_mixed_stream())
    assert [event[0] for event in events] == [
        "header",
        "method",
        "method",
        "heartbeat",
        "content",
        "content",
        "method",
        "method",
    ]
    content = events[4]
    assert content[1:3] == (1, frames.BASIC_PUBLISH)
    assert content[3]["routing_key"] == "rk"
    assert content[5] == b"hello world"
    assert properties.decode(content[4]).headers == {"k": "v", "n": 7}
    assert events[5][1] == 2 and events[5][5] == b""
    assert events[6][3] == {"delivery_tag": 2**64 - 1, "multiple": True}


def test_one_byte_at_a_time_gives_same_events():
    data = _mixed_stream()
    assert parse(data, step=1) == parse(data)


def test_split_at_every_byte_boundary_gives_same_events():
    data = _mixed_stream()
    expected = parse(data)
    for cut in range(1, len(data)):
        reader = frames.FrameReader()
        reader.feed(data[:cut])
        got = drain(reader)
        reader.feed(data[cut:])
        got += drain(reader)
        assert got == expected, f"split at {cut}"


# -- content assembly -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "chunk"),
    [(b"", None), (b"x", None), (b"0123456789", None), (b"0123456789", 1), (b"0123456789", 3)],
    ids=["empty", "one-byte", "one-frame", "ten-frames", "uneven-frames"],
)
def test_content_assembly(body, chunk):
    props = commands.Basic.Properties(delivery_mode=2, message_id="m1")
    events = parse(HEADER + publish_frames(5, body, chunk=chunk, props=props))
    assert len(events) == 2
    kind, channel, index, method, raw_props, got = events[1]
    assert (kind, channel, index, got) == ("content", 5, frames.BASIC_PUBLISH, body)
    assert raw_props == props.marshal()
    assert method["exchange"] == "" and method["routing_key"] == "rk"


def test_interleaved_content_of_two_channels():
    """Frames of different channels may interleave; each channel assembles its own."""
    one = [
        frame.marshal(commands.Basic.Publish(routing_key="one"), 1),
        frame.marshal(header.ContentHeader(0, 6), 1),
        frame.marshal(pamqp_body.ContentBody(b"abc"), 1),
        frame.marshal(pamqp_body.ContentBody(b"def"), 1),
    ]
    two = [
        frame.marshal(commands.Basic.Publish(routing_key="two"), 2),
        frame.marshal(header.ContentHeader(0, 4), 2),
        frame.marshal(pamqp_body.ContentBody(b"12"), 2),
        frame.marshal(pamqp_body.ContentBody(b"34"), 2),
    ]
    data = HEADER + b"".join(a + b for a, b in zip(one, two, strict=True))
    data += frame.marshal(commands.Basic.Ack(delivery_tag=1), 3)
    events = parse(data)[1:]
    assert [(e[0], e[1], e[-1] if e[0] == "content" else None) for e in events] == [
        ("content", 1, b"abcdef"),
        ("content", 2, b"1234"),
        ("method", 3, None),
    ]
    assert events[0][3]["routing_key"] == "one" and events[1][3]["routing_key"] == "two"


def test_heartbeat_between_content_frames_is_allowed():
    data = (
        frame.marshal(commands.Basic.Publish(routing_key="k"), 1)
        + frame.marshal(header.ContentHeader(0, 2), 1)
        + frames.HEARTBEAT_FRAME
        + frame.marshal(pamqp_body.ContentBody(b"ok"), 1)
    )
    assert [e[0] for e in parse(HEADER + data)] == ["header", "heartbeat", "content"]


def test_body_over_the_limit_is_refused_at_its_header_and_not_kept():
    reader = opened_reader()
    reader.max_body_size = 100
    reader.feed(frame.marshal(commands.Basic.Publish(routing_key="k"), 1))
    reader.feed(frame.marshal(header.ContentHeader(0, 2**40), 1))
    [event] = [reader.next_event()]
    assert isinstance(event, frames.OversizedContent)
    assert (event.channel, event.body_size) == (1, 2**40)
    assert reader.receiving_content
    for _ in range(50):  # the body is read and dropped, as long as it comes
        reader.feed(raw_frame(frames.FRAME_BODY, 1, b"z" * 1000))
        assert reader.next_event() is None
    # a method on the channel (its close-ok) ends the refused content
    reader.feed(frame.marshal(commands.Channel.CloseOk(), 1))
    assert drain(reader)[0][:3] == ("method", 1, commands.Channel.CloseOk.index)
    assert not reader.receiving_content


def test_body_at_the_limit_passes_and_fast_path_defers_to_the_check():
    reader = opened_reader()
    reader.max_body_size = 100
    reader.feed(publish_frames(1, b"a" * 100) + publish_frames(1, b"b" * 101))
    events = []
    while (event := reader.next_event()) is not None:
        events.append(event)
    assert isinstance(events[0], frames.ContentFrame) and events[0].body == b"a" * 100
    assert isinstance(events[1], frames.OversizedContent) and events[1].body_size == 101
    assert not reader.receiving_content  # its one body frame was dropped: content over


def test_body_past_its_announced_size_is_not_kept():
    reader = opened_reader()
    reader.feed(frame.marshal(commands.Basic.Publish(routing_key="k"), 1))
    reader.feed(frame.marshal(header.ContentHeader(0, 10), 1))
    reader.feed(raw_frame(frames.FRAME_BODY, 1, b"x" * 8))
    for _ in range(20):
        reader.feed(raw_frame(frames.FRAME_BODY, 1, b"y" * 1000))
    assert drain(reader) == []
    assert reader._partial[1].chunks == []  # memory of an endless body: none


def test_frame_of_exactly_frame_max_is_accepted():
    payload = b"y" * (4096 - frames.FRAME_OVERHEAD)
    data = (
        frame.marshal(commands.Basic.Publish(routing_key="k"), 1)
        + frame.marshal(header.ContentHeader(0, len(payload)), 1)
        + raw_frame(frames.FRAME_BODY, 1, payload)
    )
    assert parse(HEADER + data, frame_max=4096)[-1][-1] == payload


# -- framing errors -------------------------------------------------------------------
# Expected codes, texts and ids are RabbitMQ 3.10's, observed on the wire (texts are Erlang
# terms printed with ~p, including its line wrapping).

PUBLISH_1 = frame.marshal(commands.Basic.Publish(routing_key="k"), 1)
HEADER_5_ON_1 = frame.marshal(header.ContentHeader(0, 5), 1)
QOS_1 = frame.marshal(commands.Basic.Qos(prefetch_count=1), 1)
NON_METHOD = "UNEXPECTED_FRAME - expected method frame, got non method frame instead"

FRAMING_ERRORS = {
    # The frame header alone is enough: RabbitMQ allows 8 octets of slack over frame_max.
    "frame-too-large": (
        struct.pack(">BHI", frames.FRAME_BODY, 1, 4097),
        (501, "FRAME_ERROR - type 3, all octets = <<>>: {frame_too_large,4097,4088}", 0, 0),
    ),
    "frame-too-large-huge-size": (
        struct.pack(">BHI", 1, 1, 0x7FFFFFFF),
        (501, "FRAME_ERROR - type 1, all octets = <<>>: {frame_too_large,2147483647,4088}", 0, 0),
    ),
    "bad-frame-end": (
        raw_frame(1, 1, method_payload(20, 10, b"\x00"), end=0),
        (
            501,
            "FRAME_ERROR - type 1, all octets = <<0,20,0,10,0>>: {invalid_frame_end_marker,0}",
            0,
            0,
        ),
    ),
    "bad-frame-end-long-payload": (
        raw_frame(1, 1, method_payload(50, 10, b"\x00" * 30), end=0x41),
        (
            501,
            "FRAME_ERROR - type 1, first 16 octets = <<0,50,0,10,0,0,0,0,0,0,0,0,0,0,0,0>>: "
            "{invalid_frame_end_marker,\n" + " " * 66 + "65}",
            0,
            0,
        ),
    ),
    "unknown-frame-type-9": (
        raw_frame(9, 1, b"abc"),
        (501, 'FRAME_ERROR - type 9, all octets = <<"abc">>: unknown_frame', 0, 0),
    ),
    "unknown-frame-type-0": (
        raw_frame(0, 0, b""),
        (501, "FRAME_ERROR - type 0, all octets = <<>>: unknown_frame", 0, 0),
    ),
    "method-payload-under-4-bytes": (
        raw_frame(1, 1, b"\x00\x32"),
        (501, "FRAME_ERROR - type 1, all octets = <<0,50>>: unknown_frame", 0, 0),
    ),
    "header-without-method": (HEADER_5_ON_1, (505, NON_METHOD, 0, 0)),
    "body-without-header": (raw_frame(3, 1, b"hello"), (505, NON_METHOD, 0, 0)),
    "body-after-method-no-header": (
        PUBLISH_1 + raw_frame(3, 1, b"hi"),
        (
            505,
            "UNEXPECTED_FRAME - expected content header for class 60, "
            "got non content header frame instead",
            60,
            40,
        ),
    ),
    "body-after-empty-content": (
        PUBLISH_1 + frame.marshal(header.ContentHeader(0, 0), 1) + raw_frame(3, 1, b"x"),
        (505, NON_METHOD, 0, 0),
    ),
    "header-on-channel-0": (
        frame.marshal(header.ContentHeader(0, 5), 0),
        (505, "UNEXPECTED_FRAME - type 2, all octets = <<0,60,0,0,0,0,0,0,0,0,0,5,0,0>>", 0, 0),
    ),
    "heartbeat-on-channel-1": (
        raw_frame(frames.FRAME_HEARTBEAT, 1, b""),
        (505, "UNEXPECTED_FRAME - type 8, all octets = <<>>", 0, 0),
    ),
    "method-while-header-expected": (
        PUBLISH_1 + QOS_1,
        (
            505,
            "UNEXPECTED_FRAME - expected content header for class 60, "
            "got non content header frame instead",
            60,
            40,
        ),
    ),
    "method-while-body-expected": (
        PUBLISH_1 + HEADER_5_ON_1 + QOS_1,
        (
            505,
            "UNEXPECTED_FRAME - expected content body, got non content body frame instead",
            60,
            40,
        ),
    ),
    "second-header": (
        PUBLISH_1 + HEADER_5_ON_1 + HEADER_5_ON_1,
        (
            505,
            "UNEXPECTED_FRAME - expected content body, got non content body frame instead",
            60,
            40,
        ),
    ),
    "content-header-wrong-class": (
        PUBLISH_1 + raw_frame(2, 1, struct.pack(">HHQH", 50, 0, 5, 0)),
        (
            505,
            "UNEXPECTED_FRAME - expected content header for class 60, got one for class 50 instead",
            60,
            40,
        ),
    ),
    "body-larger-than-declared-then-method": (
        # RabbitMQ does not check the overshoot; the content stays incomplete.
        PUBLISH_1
        + frame.marshal(header.ContentHeader(0, 3), 1)
        + raw_frame(3, 1, b"hello")
        + QOS_1,
        (
            505,
            "UNEXPECTED_FRAME - expected content body, got non content body frame instead",
            60,
            40,
        ),
    ),
    "truncated-method-arguments": (
        raw_frame(1, 1, method_payload(50, 10, b"\x00\x00\x09abc")),
        (501, "FRAME_ERROR - cannot decode <<0,0,9,97,98,99>>", 50, 10),
    ),
    "truncated-publish-short-string": (
        raw_frame(1, 1, method_payload(60, 40, b"\x00\x00\x09amq")),
        (501, "FRAME_ERROR - cannot decode <<0,0,9,97,109,113>>", 60, 40),
    ),
    "truncated-ack": (
        raw_frame(1, 1, method_payload(60, 80, b"\x00" * 8)),
        (501, "FRAME_ERROR - cannot decode <<0,0,0,0,0,0,0,0>>", 60, 80),
    ),
}


@pytest.mark.parametrize(
    ("data", "expected"), list(FRAMING_ERRORS.values()), ids=list(FRAMING_ERRORS)
)
def test_framing_error(data, expected):
    error = framing_error(data, frame_max=4096)
    assert (error.reply_code, error.reply_text, error.class_id, error.method_id) == expected


def test_frame_within_rabbitmq_slack_is_accepted():
    """RabbitMQ rejects a frame only when its payload exceeds frame_max, i.e. it accepts
    frames up to frame_max + 8 octets in total."""
    payload = b"z" * 4096
    data = (
        PUBLISH_1
        + frame.marshal(header.ContentHeader(0, len(payload)), 1)
        + raw_frame(frames.FRAME_BODY, 1, payload)
    )
    assert parse(HEADER + data, frame_max=4096)[-1][-1] == payload


def test_frame_too_large_is_relative_to_negotiated_frame_max():
    body = raw_frame(frames.FRAME_BODY, 1, b"x" * 5000)
    setup = PUBLISH_1 + frame.marshal(header.ContentHeader(0, 5000), 1)
    assert framing_error(setup + body, frame_max=4096).reply_code == errors.FRAME_ERROR
    assert parse(HEADER + setup + body, frame_max=8192)[-1][-1] == b"x" * 5000


@pytest.mark.parametrize(("class_id", "method_id"), [(99, 10), (50, 99), (10, 99)])
def test_unknown_method_is_a_connection_error(class_id, method_id):
    """RabbitMQ's reader crashes on these (the socket just drops); the codec's part is to
    refuse them as a connection error."""
    framing_error(raw_frame(1, 1, method_payload(class_id, method_id)))


def test_error_is_raised_after_earlier_valid_events():
    reader = opened_reader()
    reader.feed(frames.HEARTBEAT_FRAME + raw_frame(9, 0, b""))
    assert describe(reader.next_event()) == ("heartbeat", 0)
    with pytest.raises(errors.ConnectionError):
        reader.next_event()


# -- hand-written codecs against pamqp ------------------------------------------------


@given(
    exchange=short_strings,
    routing_key=short_strings,
    mandatory=st.booleans(),
    immediate=st.booleans(),
)
def test_decode_publish_matches_pamqp(exchange, routing_key, mandatory, immediate):
    sent = UncheckedPublish(
        exchange=exchange, routing_key=routing_key, mandatory=mandatory, immediate=immediate
    )
    payload = frames.encode_method(sent)
    reference = commands.Basic.Publish()
    reference.unmarshal(payload[4:])
    decoded = frames.decode_publish(payload)
    assert (
        dict(decoded)
        == dict(reference)
        == {
            "ticket": 0,
            "exchange": exchange,
            "routing_key": routing_key,
            "mandatory": mandatory,
            "immediate": immediate,
        }
    )
    assert decoded.index == frames.BASIC_PUBLISH
    assert dict(frames.decode_method(payload)) == dict(reference)


@given(delivery_tag=delivery_tags, multiple=st.booleans())
def test_decode_ack_matches_pamqp(delivery_tag, multiple):
    payload = ack_payload(delivery_tag, multiple)
    expected = {"delivery_tag": delivery_tag, "multiple": multiple}
    assert dict(frames.decode_ack(payload)) == expected
    assert dict(frames.decode_method(payload)) == expected
    reference = commands.Basic.Ack()
    reference.unmarshal(payload[4:])
    assert (as_unsigned64(reference.delivery_tag), reference.multiple) == (delivery_tag, multiple)


@given(
    consumer_tag=short_strings,
    delivery_tag=delivery_tags,
    redelivered=st.booleans(),
    exchange=short_strings,
    routing_key=short_strings,
)
def test_deliver_payload_matches_pamqp(
    consumer_tag, delivery_tag, redelivered, exchange, routing_key
):
    expected = frames.encode_method(
        UncheckedDeliver(
            consumer_tag=consumer_tag,
            delivery_tag=as_signed64(delivery_tag),
            redelivered=redelivered,
            exchange=exchange,
            routing_key=routing_key,
        )
    )
    got = frames.deliver_payload(
        frames.short_str(consumer_tag),
        delivery_tag,
        redelivered,
        frames.short_str(exchange),
        frames.short_str(routing_key),
    )
    assert got == expected


def _pamqp_content(channel, method, props, body, frame_max) -> bytes:
    data = frame.marshal(method, channel)
    data += frame.marshal(header.ContentHeader(0, len(body), props), channel)
    chunk = frame_max - frames.FRAME_OVERHEAD
    for start in range(0, len(body), chunk):
        data += frame.marshal(pamqp_body.ContentBody(body[start : start + chunk]), channel)
    return data


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    channel=channels,
    delivery_tag=delivery_tags,
    redelivered=st.booleans(),
    routing_key=short_strings,
    body=bodies(),
    frame_max=frame_maxes,
    message_id=st.none() | short_strings,
)
def test_content_frames_match_pamqp(
    channel, delivery_tag, redelivered, routing_key, body, frame_max, message_id
):
    deliver = UncheckedDeliver(
        consumer_tag="ctag",
        delivery_tag=as_signed64(delivery_tag),
        redelivered=redelivered,
        exchange="ex",
        routing_key=routing_key,
    )
    props = commands.Basic.Properties(message_id=message_id or None, delivery_mode=2)
    pieces = frames.content_frames(
        channel, frames.encode_method(deliver), props.marshal(), body, frame_max
    )
    assert b"".join(pieces) == _pamqp_content(channel, deliver, props, body, frame_max)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(channel=channels, body=bodies(), frame_max=frame_maxes, routing_key=short_strings)
def test_content_frames_read_back(channel, body, frame_max, routing_key):
    """What content_frames writes, FrameReader (with the same frame_max) reads back."""
    publish = UncheckedPublish(exchange="", routing_key=routing_key)
    props = commands.Basic.Properties(content_type="application/octet-stream")
    data = b"".join(
        frames.content_frames(
            channel, frames.encode_method(publish), props.marshal(), body, frame_max
        )
    )
    events = parse(HEADER + data, frame_max=frame_max)
    assert len(events) == 2
    assert events[1][1] == channel and events[1][3]["routing_key"] == routing_key
    assert events[1][4] == props.marshal() and events[1][5] == body


def test_method_frame_matches_pamqp():
    method = commands.Queue.Bind(queue="q", exchange="x", routing_key="k", arguments={"a": 1})
    assert frames.method_frame(7, method) == frame.marshal(method, 7)
    assert frames.HEARTBEAT_FRAME == raw_frame(frames.FRAME_HEARTBEAT, 0, b"")


# -- fuzzing --------------------------------------------------------------------------

KNOWN_INDEXES = sorted(commands.INDEX_MAPPING)


@st.composite
def plausible_frames(draw) -> bytes:
    """Well-framed frames of any type with random payloads, so the fuzzer gets past the
    frame header into method, header and body decoding."""
    frame_type = draw(st.sampled_from([1, 1, 1, 2, 3, 8, 0, 4, 9, 255]))
    channel = draw(st.sampled_from([0, 1, 2, 65535]))
    payload = draw(st.binary(max_size=64))
    if frame_type == 1 and draw(st.booleans()):
        payload = struct.pack(">I", draw(st.sampled_from(KNOWN_INDEXES))) + payload
    elif frame_type == 2 and draw(st.booleans()):
        payload = struct.pack(">HHQ", 60, 0, draw(st.integers(0, 70))) + payload
    end = draw(st.sampled_from([frames.FRAME_END] * 9 + [0]))
    return raw_frame(frame_type, channel, payload, end)


def _fuzz_reader(data: bytes, step: int) -> None:
    reader = opened_reader()
    try:
        for start in range(0, len(data), step):
            reader.feed(data[start : start + step])
            drain(reader)
    except errors.ConnectionError as error:
        assert error.reply_code in errors.REPLY_NAMES
        assert isinstance(error.reply_text, str)


@settings(max_examples=400, deadline=None)
@given(data=st.binary(max_size=400), step=st.integers(1, 64))
def test_fuzz_reader_arbitrary_bytes(data, step):
    _fuzz_reader(data, step)


@settings(max_examples=400, deadline=None)
@given(
    prefix=st.lists(plausible_frames(), max_size=8),
    publish=st.booleans(),
    step=st.integers(1, 200),
)
def test_fuzz_reader_plausible_frames(prefix, publish, step):
    start = PUBLISH_1 if publish else b""
    _fuzz_reader(start + b"".join(prefix), step)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_properties_decode(raw):
    try:
        properties.decode(raw)
    except errors.ConnectionError as error:
        assert error.reply_code == errors.FRAME_ERROR


@settings(max_examples=300, deadline=None)
@given(flags=st.integers(0, 0xFFFF), rest=st.binary(max_size=200))
def test_fuzz_properties_decode_with_flags(flags, rest):
    """Arbitrary flag words make the decoder walk every property type."""
    try:
        properties.decode(struct.pack(">H", flags & 0xFFFE) + rest)
    except errors.ConnectionError as error:
        assert error.reply_code == errors.FRAME_ERROR


# -- properties round trip ------------------------------------------------------------


def _all_properties(**overrides) -> commands.Basic.Properties:
    values = {
        "content_type": "application/json",
        "content_encoding": "utf-8",
        "headers": {"s": "str", "i": -5, "big": 2**40, "b": True, "t": {"nested": [1, "two"]}},
        "delivery_mode": 2,
        "priority": 9,
        "correlation_id": "corr-é",
        "reply_to": "amq.rabbitmq.reply-to",
        "expiration": "60000",
        "message_id": "id-1",
        "timestamp": datetime.datetime(2024, 5, 17, 12, 30, 45, tzinfo=datetime.UTC),
        "message_type": "event",
        "user_id": "guest",
        "app_id": "xivo",
    }
    values.update(overrides)
    props = commands.Basic.Properties(**values)
    # pamqp refuses a non-empty cluster_id in the constructor; the wire allows it.
    props.cluster_id = overrides.get("cluster_id", "cluster")
    return props


def _assert_round_trip(props: commands.Basic.Properties) -> None:
    raw = properties.encode(props)
    decoded = properties.decode(raw)
    for name in commands.Basic.Properties.__slots__:
        assert getattr(decoded, name) == getattr(props, name), name
    assert properties.encode(decoded) == raw


def test_properties_round_trip_all_fourteen():
    props = _all_properties()
    raw = properties.encode(props)
    assert struct.unpack(">H", raw[:2])[0] == 0xFFFC  # all 14 flag bits
    _assert_round_trip(props)


def test_properties_empty():
    decoded = properties.decode(b"\x00\x00")
    assert all(getattr(decoded, name) in (None, "") for name in decoded.__slots__)


header_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(min_size=1, max_size=20), inner, max_size=4)
    ),
    max_leaves=10,
)


@settings(max_examples=150, deadline=None)
@given(
    text=short_strings,
    headers=st.dictionaries(st.text(min_size=1, max_size=30), header_values, max_size=6),
    delivery_mode=st.sampled_from([1, 2]),
    priority=st.integers(0, 255),
    timestamp=st.integers(0, 0xFFFFFFFF).map(  # pamqp reads larger values as ms
        lambda s: datetime.datetime.fromtimestamp(s, datetime.UTC)
    ),
)
def test_properties_round_trip_hypothesis(text, headers, delivery_mode, priority, timestamp):
    _assert_round_trip(
        _all_properties(
            content_type=text or "x",
            correlation_id=text or "y",
            headers=headers,
            delivery_mode=delivery_mode,
            priority=priority,
            timestamp=timestamp,
        )
    )


def test_the_buffer_of_a_client_that_keeps_streaming_stays_small():
    """Large bodies arriving in reads that never end on a frame boundary: what was read is
    dropped from the buffer, which would otherwise grow with everything ever received."""
    reader = opened_reader(frame_max=131072)
    stream = publish_frames(1, b"b" * 1_000_000, chunk=131064) * 40  # 40 MB
    step = 65_537  # never a frame boundary for long
    largest = 0
    for start in range(0, len(stream), step):
        reader.feed(stream[start : start + step])
        while reader.next_event() is not None:
            pass
        largest = max(largest, len(reader._buffer))
    assert largest < 2 * frames.COMPACT_AFTER + step
