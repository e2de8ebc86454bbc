"""The hand-written fast paths of ``xivo_bus.amqp.frames`` against the general codec.

``FrameReader`` takes a whole basic.publish (method, content header, body) in one step when
all of it is in the buffer; fed one byte at a time it never can, and goes frame by frame.
Both ways must give the same events and the same errors, and agree with pamqp.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from pamqp import commands, frame, header

from xivo_bus.amqp import errors, frames
from xivo_bus.bench import wire

names = st.text(max_size=40)
bodies = st.binary(max_size=300)
frame_maxes = st.sampled_from([frames.FRAME_MIN_SIZE, 131072, 4096 + 37])


def _publish(channel: int, exchange: str, routing_key: str, body: bytes, props, mandatory=False):
    """A publish as the general encoder writes it (pamqp's validation of names skipped)."""
    method = frames.build(
        commands.Basic.Publish,
        ticket=0,
        exchange=exchange,
        routing_key=routing_key,
        mandatory=mandatory,
        immediate=False,
    )
    out = frames.method_frame(channel, method)
    out += frame.marshal(header.ContentHeader(0, len(body), props), channel)
    if body:
        out += bytes((3,)) + channel.to_bytes(2, "big") + len(body).to_bytes(4, "big")
        out += body + b"\xce"
    return out


def _pamqp_publish(payload: bytes) -> dict:
    method = commands.Basic.Publish.__new__(commands.Basic.Publish)
    method.unmarshal(payload[4:])
    return dict(method)


def _events(data: bytes, frame_max: int, step: int | None):
    """Events (as comparable tuples) and the error, feeding ``data`` whole or in steps."""
    reader = frames.FrameReader()
    reader.frame_max = frame_max
    reader.feed(frames.PROTOCOL_HEADER)
    reader.next_event()
    out = []
    chunks = [data] if step is None else [data[i : i + step] for i in range(0, len(data), step)]
    try:
        for chunk in chunks:
            reader.feed(chunk)
            while (event := reader.next_event()) is not None:
                out.append(_comparable(event))
    except errors.ConnectionError as error:
        return out, (error.reply_code, error.reply_text, error.class_id, error.method_id)
    return out, None


def _comparable(event):
    if isinstance(event, frames.ContentFrame):
        return ("content", event.channel, dict(event.method), event.properties, event.body)
    if isinstance(event, frames.MethodFrame):
        return ("method", event.channel, type(event.method).__name__, dict(event.method))
    return (type(event).__name__, getattr(event, "channel", None))


properties = st.builds(
    commands.Basic.Properties,
    content_type=st.none() | st.sampled_from(["application/json", "text/plain"]),
    delivery_mode=st.none() | st.sampled_from([1, 2]),
    headers=st.none() | st.dictionaries(st.text(max_size=8), st.integers(0, 1000), max_size=3),
    correlation_id=st.none() | st.text(max_size=20),
)
publishes = st.lists(
    st.tuples(st.integers(1, 3), names, names, bodies, properties, st.booleans()),
    min_size=1,
    max_size=6,
)


@settings(max_examples=150, deadline=None)
@given(publishes, frame_maxes)
def test_whole_publishes_read_as_frame_by_frame(messages, frame_max):
    data = b"".join(_publish(*m) for m in messages)
    fast = _events(data, frame_max, None)
    slow = _events(data, frame_max, 1)
    assert fast == slow


@settings(max_examples=150, deadline=None)
@given(publishes)
def test_fast_path_agrees_with_pamqp(messages):
    data = b"".join(_publish(*m) for m in messages)
    events, error = _events(data, 131072, None)
    assert error is None
    assert len(events) == len(messages)
    for event, (channel, exchange, routing_key, body, props, mandatory) in zip(
        events, messages, strict=True
    ):
        kind, got_channel, method, raw_properties, got_body = event
        assert (kind, got_channel, got_body) == ("content", channel, body)
        method_frame = _publish(channel, exchange, routing_key, b"", props, mandatory)
        size = int.from_bytes(method_frame[3:7], "big")
        assert method == _pamqp_publish(method_frame[7 : 7 + size])
        assert raw_properties == props.marshal()


@settings(max_examples=300, deadline=None)
@given(
    publishes,
    st.data(),
    st.sampled_from([None, 1, 7, 64]),
)
def test_damaged_stream_gives_same_events_and_error(messages, data, step):
    """Any byte changed, cut or inserted: the fast path and the frame-by-frame path see
    the same events and raise the same error (code, text, class, method)."""
    stream = bytearray(b"".join(_publish(*m) for m in messages))
    where = data.draw(st.integers(0, len(stream) - 1))
    how = data.draw(st.sampled_from(["change", "cut", "insert"]))
    octet = data.draw(st.integers(0, 255))
    if how == "change":
        stream[where] = octet
    elif how == "cut":
        del stream[where]
    else:
        stream.insert(where, octet)
    damaged = bytes(stream)
    assert _events(damaged, 131072, step) == _events(damaged, 131072, 1)


def test_publish_split_over_reads_is_assembled():
    data = _publish(1, "ex", "key", b"hello", commands.Basic.Properties())
    for cut in range(1, len(data)):
        assert _events(data[:cut] + data[cut:], 4096, None) == _events(data, 4096, cut)


def test_repeated_publishes_share_one_decoded_method_and_the_cache_stays_bounded():
    payload = frames.encode_method(commands.Basic.Publish(exchange="x", routing_key="k"))
    assert frames._cached_publish(payload) is frames._cached_publish(payload)
    for n in range(frames._PUBLISH_CACHE_SIZE + 10):
        frames._cached_publish(
            frames.encode_method(commands.Basic.Publish(exchange="x", routing_key=str(n)))
        )
    assert len(frames._publish_cache) <= frames._PUBLISH_CACHE_SIZE


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 65535), bodies, st.sampled_from([4096, 131072]), names, names)
def test_content_frames_one_piece_equals_pamqp(channel, body, frame_max, exchange, key):
    method = frames.build(
        commands.Basic.Deliver,
        consumer_tag="ctag",
        delivery_tag=7,
        redelivered=False,
        exchange=exchange,
        routing_key=key,
    )
    props = commands.Basic.Properties(content_type="text/plain")
    got = b"".join(
        frames.content_frames(
            channel, frames.encode_method(method), props.marshal(), body, frame_max
        )
    )
    expected = frames.method_frame(channel, method)
    expected += frame.marshal(header.ContentHeader(0, len(body), props), channel)
    chunk = frame_max - frames.FRAME_OVERHEAD
    for start in range(0, len(body), chunk):
        piece = body[start : start + chunk]
        expected += bytes((3,)) + channel.to_bytes(2, "big") + len(piece).to_bytes(4, "big")
        expected += piece + b"\xce"
    assert got == expected


# -- the load generator's own encoders -------------------------------------------------


@given(st.integers(1, 2**63 - 1), st.booleans())
def test_bench_ack_frame_equals_pamqp(tag, multiple):
    expected = frame.marshal(commands.Basic.Ack(delivery_tag=tag, multiple=multiple), 1)
    assert wire.ack_frame(1, tag, multiple) == expected


@settings(max_examples=100, deadline=None)
@given(names, names, st.binary(min_size=1, max_size=500))
def test_bench_publish_prefix_and_frames_equal_pamqp(exchange, key, body):
    props = commands.Basic.Properties(delivery_mode=2).marshal()
    whole = wire.publish_frames(1, exchange, key, props, body)
    assert whole == _publish(1, exchange, key, body, commands.Basic.Properties(delivery_mode=2))
    assert wire.publish_prefix(1, exchange, key, props, len(body)) + body + b"\xce" == whole
