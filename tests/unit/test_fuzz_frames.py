"""Fuzzing the frame layer (``xivo_bus.amqp``): whatever bytes come in, the reader and
the decoders raise nothing but ``errors.ConnectionError`` (never an AttributeError,
TypeError, struct.error, UnicodeDecodeError, IndexError...), and what they hand back has
the types its AMQP types promise, so that the broker may use each field as such.

Property lists: what ``properties.well_formed`` accepts (what RabbitMQ can read) always
decodes; whatever a client library encodes is accepted; the lenient decoder agrees with
pamqp wherever pamqp can read.
"""

from __future__ import annotations

import datetime
import decimal
import struct

from hypothesis import given
from hypothesis import strategies as st
from pamqp import commands, header
from pamqp import decode as pamqp_decode
from pamqp import encode as pamqp_encode

from xivo_bus.amqp import errors, fields, frames, properties
from xivo_bus.broker import auth, store

from . import fuzz_strategies as fuzz

FUZZ = fuzz.fuzz_settings(200)

# The Python types a decoded field of each AMQP type may have.
FIELD_TYPES = {
    "shortstr": str,
    "longstr": (str, bytes),
    "bit": bool,
    "octet": int,
    "short": int,
    "long": int,
    "longlong": int,
    "timestamp": (datetime.datetime, int),
    "table": dict,
}
RANGES = {"octet": 8, "short": 16, "long": 32, "longlong": 64}
FIELD_VALUE_TYPES = (
    bool,
    int,
    float,
    decimal.Decimal,
    str,
    bytes,
    bytearray,
    list,
    dict,
    datetime.datetime,
    type(None),
)


def check_table(table: dict) -> None:
    for key, value in table.items():
        assert isinstance(key, str)
        check_value(value)


def check_value(value) -> None:
    assert isinstance(value, FIELD_VALUE_TYPES), type(value)
    if isinstance(value, dict):
        check_table(value)
    elif isinstance(value, list):
        for item in value:
            check_value(item)


def check_method(method) -> None:
    """Each field of a decoded method has the Python type of its AMQP type."""
    for name in method.__slots__:
        kind = method.amqp_type(name)
        value = getattr(method, name)
        assert isinstance(value, FIELD_TYPES[kind]), (method.name, name, value)
        if kind in RANGES:
            assert 0 <= value < 2 ** RANGES[kind], (method.name, name, value)
        if kind == "table":
            check_table(value)


def check_event(event) -> None:
    if isinstance(event, (frames.MethodFrame, frames.ContentFrame, frames.OversizedContent)):
        check_method(event.method)
    if isinstance(event, frames.ContentFrame):
        assert isinstance(event.properties, bytes) and isinstance(event.body, bytes)
        assert properties.well_formed(event.properties)
        check_properties(properties.decode(event.properties))


def check_properties(props: commands.Basic.Properties) -> None:
    for name in props.__slots__:
        value = getattr(props, name)
        if value is None:
            continue
        if name == "headers":
            assert isinstance(value, dict)
            check_table(value)
        elif name in ("delivery_mode", "priority"):
            assert isinstance(value, int)
        elif name == "timestamp":
            assert isinstance(value, (datetime.datetime, int))
        else:
            assert isinstance(value, str)


def feed(data: bytes, step: int, opened: bool = True) -> list:
    """Feed ``data`` ``step`` bytes at a time; the events, or stop at the first
    ``ConnectionError`` (anything else fails the test)."""
    reader = frames.FrameReader()
    reader.max_body_size = 64
    if opened:
        reader.feed(frames.PROTOCOL_HEADER)
        reader.next_event()
        reader.frame_max = 131072
    events = []
    try:
        for start in range(0, len(data), step):
            reader.feed(data[start : start + step])
            while (event := reader.next_event()) is not None:
                check_event(event)
                events.append(event)
    except errors.ConnectionError as error:
        assert error.reply_code in errors.REPLY_NAMES
        assert isinstance(error.reply_text, str) and len(error.reply_text.encode()) <= 255
    return events


# -- a valid session, mutated ----------------------------------------------------------------


def _method(channel: int, method) -> bytes:
    return frames.method_frame(channel, method)


SESSION = b"".join(
    (
        _method(
            0,
            frames.build(
                commands.Connection.StartOk,
                client_properties={"capabilities": {"publisher_confirms": True}},
                mechanism="PLAIN",
                response="\0guest\0guest",
                locale="en_US",
            ),
        ),
        _method(0, commands.Connection.TuneOk(channel_max=2047, frame_max=131072, heartbeat=60)),
        _method(0, commands.Connection.Open(virtual_host="/")),
        _method(1, commands.Channel.Open()),
        _method(
            1,
            frames.build(
                commands.Queue.Declare,
                ticket=0,
                queue="q",
                passive=False,
                durable=True,
                exclusive=False,
                auto_delete=False,
                nowait=False,
                arguments={"x-message-ttl": 1000, "x-dead-letter-exchange": "dlx"},
            ),
        ),
        fuzz.publish_frames(
            1,
            b"",
            b"q",
            properties.encode(
                commands.Basic.Properties(
                    content_type="text/plain",
                    headers={"CC": ["a", "b"], "n": 1, "t": {"x": [1.5, None]}},
                    delivery_mode=2,
                    timestamp=datetime.datetime(2024, 1, 2, tzinfo=datetime.UTC),
                )
            ),
            b"hello",
        ),
        fuzz.publish_frames(1, b"amq.direct", b"k", b"\x00\x00", b""),
        frames.HEARTBEAT_FRAME,
        _method(1, commands.Basic.Ack(delivery_tag=1, multiple=False)),
        _method(1, commands.Basic.Nack(delivery_tag=2, multiple=True, requeue=False)),
        _method(0, commands.Connection.Close(reply_code=200, reply_text="bye")),
    )
)


@st.composite
def mutated_sessions(draw) -> bytes:
    """The valid session with a few octets flipped, inserted, removed or repeated."""
    data = bytearray(SESSION)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        how = draw(st.sampled_from(["flip", "set", "insert", "delete", "repeat", "cut"]))
        if how == "flip" and at < len(data):
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif how == "set" and at < len(data):
            data[at] = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xCE, 0xFF]))
        elif how == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif how == "delete":
            del data[at : at + draw(st.integers(1, 8))]
        elif how == "repeat":
            size = draw(st.integers(1, 32))
            data[at:at] = data[at : at + size]
        elif how == "cut":
            del data[at:]
    return bytes(data)


def test_the_unmutated_session_reads_back():
    events = feed(SESSION, len(SESSION))
    assert len(events) == 11
    assert sum(isinstance(event, frames.ContentFrame) for event in events) == 2


@FUZZ
@given(mutated_sessions(), st.integers(1, 300))
def test_a_mutated_session_raises_nothing_but_connection_errors(data, step):
    feed(data, step)


@FUZZ
@given(st.binary(max_size=200), st.integers(1, 64), st.booleans())
def test_arbitrary_bytes_raise_nothing_but_connection_errors(data, step, opened):
    feed(data, step, opened)


# -- methods ---------------------------------------------------------------------------------


@FUZZ
@given(
    st.one_of(
        st.sampled_from(sorted(commands.INDEX_MAPPING.values(), key=lambda c: c.index)).flatmap(
            fuzz.method_payloads
        ),
        st.binary(max_size=40),
    )
)
def test_decoded_methods_have_the_types_of_their_fields(payload):
    try:
        method = frames.decode_method(payload)
    except errors.ConnectionError as error:
        assert error.reply_code in (errors.FRAME_ERROR, errors.NOT_IMPLEMENTED)
        return
    check_method(method)


# -- content properties ----------------------------------------------------------------------


@FUZZ
@given(fuzz.properties())
def test_properties_decode_when_well_formed(raw):
    if properties.well_formed(raw):
        check_properties(properties.decode(raw))
    else:
        try:
            properties.decode(raw)
        except errors.ConnectionError as error:
            assert (error.reply_code, error.class_id, error.method_id) == (501, 60, 40)


@FUZZ
@given(st.binary(max_size=60))
def test_any_property_bytes_decode_or_refuse_cleanly(raw):
    try:
        check_properties(properties.decode(raw))
    except errors.ConnectionError as error:
        assert error.reply_code == errors.FRAME_ERROR


text = st.text(max_size=20)
header_values = st.recursive(
    st.one_of(
        st.booleans(),
        st.integers(-(2**63), 2**63 - 1),
        st.floats(width=32, allow_nan=False, allow_infinity=False),
        text,
        st.none(),
        st.datetimes(
            min_value=datetime.datetime(1970, 1, 2), max_value=datetime.datetime(2100, 1, 1)
        ).map(lambda moment: moment.replace(microsecond=0, tzinfo=datetime.UTC)),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(text, children, max_size=3)
    ),
    max_leaves=6,
)


@FUZZ
@given(
    st.builds(
        commands.Basic.Properties,
        content_type=st.none() | text,
        headers=st.none() | st.dictionaries(text, header_values, max_size=4),
        delivery_mode=st.none() | st.sampled_from([1, 2]),
        priority=st.none() | st.integers(0, 255),
        message_id=st.none() | text,
        timestamp=st.none()
        | st.datetimes(
            min_value=datetime.datetime(1970, 1, 2), max_value=datetime.datetime(2100, 1, 1)
        ).map(lambda moment: moment.replace(microsecond=0, tzinfo=datetime.UTC)),
        user_id=st.none() | text,
        expiration=st.none() | st.integers(0, 10**6).map(str),
    )
)
def test_what_a_client_library_encodes_is_accepted(props):
    raw = properties.encode(props)
    assert properties.well_formed(raw)
    assert properties.encode(properties.decode(raw)) == raw


@FUZZ
@given(fuzz.well_formed_properties())
def test_the_lenient_decoder_agrees_with_pamqp(raw):
    assert properties.well_formed(raw)
    lenient = properties._decode_leniently(raw)
    check_properties(lenient)
    strict = commands.Basic.Properties()
    try:
        offset, flags = header.ContentHeader._get_flags(raw)
        strict.unmarshal(flags, raw[offset:])
    except (ValueError, UnicodeDecodeError):
        return  # pamqp cannot read it (not UTF-8, a far timestamp); RabbitMQ can
    assert lenient == strict


# -- field tables ----------------------------------------------------------------------------


@FUZZ
@given(fuzz.field_tables, st.binary(max_size=3))
def test_tables_are_checked_split_and_joined_back(table, junk):
    body = table[4:]
    assert fields.table_ok(body, 0, len(body))
    items = fields.table_items(body)
    assert fields.encode_table(items) == table
    check_table(fields.decode_table(body, 0, len(body)))
    cut = body + junk
    if not fields.table_ok(cut, 0, len(cut)):
        try:
            fields.decode_table(cut, 0, len(cut))
        except ValueError:
            return
        raise AssertionError("a malformed table decoded")


def test_rabbitmq_reads_what_pamqp_does_not():
    """A key that is not UTF-8, a timestamp past the year 9999: RabbitMQ accepts both."""
    raw = struct.pack(">I", 13) + b"\x01\xffT" + struct.pack(">Q", 2**64 - 1) + b"\x00V"
    raw = b"\x20\x00" + raw
    assert properties.well_formed(raw)
    assert properties.decode(raw).headers == {"\ufffd": 2**64 - 1, "": None}


@FUZZ
@given(fuzz.field_tables)
def test_decoded_tables_are_written_back_as_they_were_read(table):
    decoded = fields.decode_table(table, 4, len(table))
    again = fields.encode_field_table(decoded)
    assert fields.table_ok(again, 4, len(again))
    # decoding what was written gives what was read (compared written: NaN != NaN)
    assert fields.encode_field_table(fields.decode_table(again, 4, len(again))) == again
    stored = store.encode_table(decoded)
    assert store.encode_table(store.decode_table(stored)) == stored


@FUZZ
@given(st.dictionaries(text, header_values, max_size=4))
def test_tables_pamqp_writes_read_as_pamqp_reads_them(table):
    raw = pamqp_encode.field_table(table)
    assert fields.decode_table(raw, 4, len(raw)) == pamqp_decode.field_table(raw)[1]
    assert store.decode_table(store.encode_table(table)) == pamqp_decode.field_table(raw)[1]


def _nested(depth: int) -> bytes:
    """A field value of tables and arrays nested ``depth`` deep."""
    value = b"V"
    for level in range(depth):
        if level % 2:
            value = b"A" + struct.pack(">I", len(value)) + value
        else:
            body = b"\x01k" + value
            value = b"F" + struct.pack(">I", len(body)) + body
    return value


def test_tables_nested_past_the_limit_are_refused_not_a_stack_overflow():
    for depth, accepted in (
        (fields.MAX_DEPTH, True),
        (fields.MAX_DEPTH + 1, False),
        (20000, False),
    ):
        table = b"\x01a" + _nested(depth)
        raw = b"\x20\x00" + struct.pack(">I", len(table)) + table
        assert properties.well_formed(raw) is accepted
        if accepted:
            check_properties(properties.decode(raw))
        declare = struct.pack(">IH", commands.Queue.Declare.index, 0) + b"\x01q\x00"
        payload = declare + struct.pack(">I", len(table)) + table
        events = feed(
            frames.method_frame(1, commands.Channel.Open())
            + struct.pack(">BHI", 1, 1, len(payload))
            + payload
            + b"\xce",
            1 << 20,
        )
        assert len(events) == (2 if accepted else 1)


@FUZZ
@given(
    st.one_of(
        fuzz.field_tables.map(lambda table: table[4:]),
        st.just(b"\x05LOGIN" + _nested(20000)),
        st.binary(max_size=30),
    )
)
def test_an_amqplain_response_is_a_login_or_a_refusal(response):
    try:
        auth.parse_response("AMQPLAIN", response)
    except auth.AuthenticationFailed as failure:
        assert not failure.refused  # malformed: the socket is closed, nothing told
