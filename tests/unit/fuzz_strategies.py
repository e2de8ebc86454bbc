"""Hypothesis strategies for what a client can put on the wire: field values of every
AMQP type (field tables of any depth and any value type, strings that are not UTF-8,
integers at their limits), every method with such fields, content properties well- and
ill-formed. Everything is drawn as bytes, encoded here, so that nothing a real client
could send is out of reach (pamqp's encoder would refuse much of it)."""

from __future__ import annotations

import os
import struct

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from pamqp import commands

from xivo_bus.amqp import frames


def fuzz_settings(examples: int) -> settings:
    """Few examples, always the same ones (derandomized, no database): fast and steady
    in CI. ``XIVO_BUS_FUZZ_EXAMPLES=5000`` fuzzes for real: that many random examples."""
    deep = int(os.environ.get("XIVO_BUS_FUZZ_EXAMPLES", "0"))
    return settings(
        max_examples=deep or examples,
        derandomize=not deep,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def short(raw: bytes) -> bytes:
    return bytes((len(raw),)) + raw


def long(raw: bytes) -> bytes:
    return struct.pack(">I", len(raw)) + raw


# Names the broker gives a meaning to, mixed with anything: so that generated methods
# meet each other (declare, then bind, consume, delete the same names).
NAMES = (
    "",
    "q",
    "q2",
    "x",
    "x2",
    "amq.direct",
    "amq.topic",
    "amq.fanout",
    "amq.headers",
    "amq.rabbitmq.reply-to",
    "amq.gen-x",
    "xivo-cti",
    "#",
    "a.*",
)
EXCHANGE_TYPES = ("direct", "fanout", "topic", "headers", "x-unknown", "")
ARGUMENT_KEYS = (
    "x-expires",
    "x-message-ttl",
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-dead-letter-strategy",
    "x-max-length",
    "x-max-length-bytes",
    "x-max-in-memory-length",
    "x-max-in-memory-bytes",
    "x-max-priority",
    "x-overflow",
    "x-queue-mode",
    "x-queue-version",
    "x-single-active-consumer",
    "x-queue-type",
    "x-quorum-initial-group-size",
    "x-max-age",
    "x-stream-max-segment-size-bytes",
    "x-initial-cluster-size",
    "x-queue-leader-locator",
    "x-delivery-limit",
    "x-queue-master-locator",
    "alternate-exchange",
    "x-match",
    "x-priority",
    "x-cancel-on-ha-failover",
    "capabilities",
    "publisher_confirms",
    "consumer_cancel_notify",
    "connection.blocked",
    "authentication_failure_close",
    "CC",
    "BCC",
    "x-death",
    "count",
    "queue",
    "reason",
    "LOGIN",
    "PASSWORD",
)
CAPABILITIES = (
    "publisher_confirms",
    "consumer_cancel_notify",
    "connection.blocked",
    "authentication_failure_close",
)
QUEUE_KEYS = tuple(
    key
    for key in ARGUMENT_KEYS
    if key.startswith("x-")
    and key not in ("x-match", "x-priority", "x-cancel-on-ha-failover", "x-death")
)
WORDS = (
    "classic",
    "quorum",
    "stream",
    "all",
    "any",
    "all-with-x",
    "drop-head",
    "reject-publish",
    "reject-publish-dlx",
    "lazy",
    "default",
    "at-most-once",
    "1D",
    "guest",
    "expired",
    "rejected",
    *NAMES,
)

texts = st.one_of(st.sampled_from(WORDS), st.text(max_size=12))
utf8 = texts.map(lambda text: text.encode()[:255])
not_utf8 = st.binary(min_size=1, max_size=6).map(lambda raw: b"\xff" + raw)
table_keys = st.one_of(st.sampled_from(ARGUMENT_KEYS), st.text(max_size=8)).map(
    lambda key: key.encode()[:255]
)


def _int(tag: bytes, fmt: str, low: int, high: int):
    edges = st.sampled_from(sorted({low, high, 0, 1, -1 if low < 0 else 2, 100}))
    return st.one_of(edges, st.integers(low, high)).map(lambda v: tag + struct.pack(fmt, v))


_scalar_values = st.one_of(
    st.booleans().map(lambda b: b"t" + bytes((b,))),
    st.integers(0, 255).map(lambda b: b"t" + bytes((b,))),  # a boolean octet not 0/1
    _int(b"b", ">b", -128, 127),
    _int(b"B", ">B", 0, 255),
    _int(b"s", ">h", -(2**15), 2**15 - 1),
    _int(b"u", ">H", 0, 2**16 - 1),
    _int(b"I", ">i", -(2**31), 2**31 - 1),
    _int(b"i", ">I", 0, 2**32 - 1),
    _int(b"l", ">q", -(2**63), 2**63 - 1),
    _int(b"L", ">Q", 0, 2**64 - 1),
    st.floats(width=32).map(lambda v: b"f" + struct.pack(">f", v)),
    st.floats().map(lambda v: b"d" + struct.pack(">d", v)),
    st.tuples(st.integers(0, 255), st.integers(0, 2**32 - 1)).map(
        lambda d: b"D" + struct.pack(">BI", *d)
    ),
    st.one_of(utf8, not_utf8).map(lambda raw: b"S" + long(raw)),
    st.one_of(st.integers(0, 2**33), st.sampled_from([2**63 - 1, 2**64 - 1, 253402300800])).map(
        lambda v: b"T" + struct.pack(">Q", v)
    ),
    st.just(b"V"),
    st.binary(max_size=6).map(lambda raw: b"x" + long(raw)),
)


def _containers(children):
    return st.one_of(
        st.lists(children, max_size=4).map(lambda items: b"A" + long(b"".join(items))),
        st.lists(st.tuples(table_keys, children), max_size=4).map(
            lambda pairs: b"F" + long(b"".join(short(k) + v for k, v in pairs))
        ),
    )


field_values = st.recursive(_scalar_values, _containers, max_leaves=8)


# Values a client would plausibly mean (so that declarations often succeed and go on),
# and the odd ones: strings that are not UTF-8, byte arrays, voids, tables, arrays.
plausible_values = st.one_of(
    st.sampled_from([0, 1, 5, 10, 100, 1000, 60000]).map(lambda v: b"I" + struct.pack(">i", v)),
    st.sampled_from([0, 1, 5, 100, 2**40]).map(lambda v: b"l" + struct.pack(">q", v)),
    st.sampled_from(WORDS).map(lambda w: b"S" + long(w.encode())),
    st.booleans().map(lambda b: b"t" + bytes((b,))),
)
odd_values = st.one_of(
    not_utf8.map(lambda raw: b"S" + long(raw)),
    st.sampled_from(WORDS).map(lambda w: b"x" + long(w.encode())),
    st.just(b"V"),
    field_values,
)
argument_values = st.one_of(plausible_values, plausible_values, odd_values)

# The argument keys each method gives a meaning to.
_METHOD_KEYS = {
    commands.Exchange.Declare: ("alternate-exchange",),
    commands.Queue.Declare: QUEUE_KEYS,
    commands.Basic.Consume: ("x-priority", "x-cancel-on-ha-failover"),
    commands.Queue.Bind: ("x-match", "a", "x-a"),
    commands.Exchange.Bind: ("x-match", "a", "x-a"),
    commands.Connection.StartOk: ("capabilities", "product"),
}


def argument_tables(keys) -> st.SearchStrategy[bytes]:
    return st.lists(
        st.tuples(
            st.one_of(
                st.sampled_from(keys), st.sampled_from(keys), st.sampled_from(ARGUMENT_KEYS)
            ).map(str.encode),
            argument_values,
        ),
        max_size=3,
    ).map(lambda pairs: long(b"".join(short(k) + v for k, v in pairs)))


field_tables = st.one_of(
    st.just(long(b"")),
    argument_tables(ARGUMENT_KEYS),
    st.lists(st.tuples(table_keys, field_values), max_size=5).map(
        lambda pairs: long(b"".join(short(k) + v for k, v in pairs))
    ),
)
capabilities = st.dictionaries(
    st.sampled_from(["capabilities"]),
    st.one_of(
        st.lists(
            st.tuples(st.sampled_from(CAPABILITIES).map(str.encode), argument_values),
            max_size=4,
        ).map(lambda pairs: b"F" + long(b"".join(short(k) + v for k, v in pairs))),
        argument_values,
    ),
).map(lambda table: long(b"".join(short(k.encode()) + v for k, v in table.items())))

names = st.one_of(
    st.sampled_from(NAMES).map(str.encode),
    st.sampled_from(NAMES).map(str.encode),
    st.sampled_from(NAMES).map(str.encode),
    utf8,
    st.one_of(utf8, not_utf8),
).map(short)
shortstrs = st.one_of(names, st.sampled_from(EXCHANGE_TYPES).map(str.encode).map(short))
longstrs = st.one_of(utf8, not_utf8, st.just(b"\0guest\0guest")).map(long)
_BY_TYPE = {
    "shortstr": shortstrs,
    "longstr": longstrs,
    "octet": _int(b"", ">B", 0, 255),
    "short": _int(b"", ">H", 0, 2**16 - 1),
    "long": st.one_of(st.just(b"\0\0\0\0"), _int(b"", ">I", 0, 2**32 - 1)),
    "longlong": _int(b"", ">Q", 0, 2**64 - 1),
    "table": field_tables,
}
# Fields whose name says more than their type: drawn mostly from what they mean.
_BY_NAME = {
    "exchange_type": st.one_of(
        st.sampled_from(EXCHANGE_TYPES[:4]).map(str.encode).map(short), shortstrs
    ),
    "ticket": st.one_of(st.just(b"\0\0"), _BY_TYPE["short"]),
    "prefetch_size": st.one_of(st.just(b"\0\0\0\0"), _BY_TYPE["long"]),
    "prefetch_count": st.one_of(
        st.integers(0, 3).map(lambda v: struct.pack(">H", v)), _BY_TYPE["short"]
    ),
    # delivery tags: mostly small, so that they are the ones handed out
    "delivery_tag": st.one_of(
        st.integers(0, 6).map(lambda v: struct.pack(">Q", v)), _BY_TYPE["longlong"]
    ),
    "virtual_host": st.one_of(st.just(short(b"/")), names),
    "mechanism": st.one_of(st.sampled_from([b"PLAIN", b"AMQPLAIN"]).map(short), names),
    "response": st.one_of(
        st.just(long(b"\0guest\0guest")),
        st.lists(
            st.tuples(st.sampled_from([b"LOGIN", b"PASSWORD"]), argument_values), max_size=2
        ).map(lambda pairs: long(b"".join(short(k) + v for k, v in pairs))),
        longstrs,
    ),
    "client_properties": st.one_of(capabilities, field_tables),
    "frame_max": st.one_of(
        st.sampled_from([0, 4096, 131072]).map(lambda v: struct.pack(">I", v)), _BY_TYPE["long"]
    ),
    "channel_max": st.one_of(
        st.sampled_from([0, 2047]).map(lambda v: struct.pack(">H", v)), _BY_TYPE["short"]
    ),
}


@st.composite
def method_payloads(draw, cls) -> bytes:
    """A method frame's payload for ``cls``: its index and every field, each drawn
    from what its AMQP type can carry on the wire (biased towards what the field
    means); now and then cut short or followed by junk."""
    out = [struct.pack(">I", cls.index)]
    bits: list[bool] = []
    keys = _METHOD_KEYS.get(cls, ARGUMENT_KEYS)
    for name in cls.__slots__:
        kind = cls.amqp_type(name)
        if kind == "bit":
            bits.append(draw(st.booleans()))
            continue
        if bits:
            out.append(bytes((sum(bit << i for i, bit in enumerate(bits)),)))
            bits = []
        if kind == "table" and name != "client_properties":
            out.append(draw(st.one_of(argument_tables(keys), argument_tables(keys), field_tables)))
        else:
            out.append(draw(_BY_NAME.get(name, _BY_TYPE[kind])))
    if bits:
        out.append(bytes((sum(bit << i for i, bit in enumerate(bits)),)))
    payload = b"".join(out)
    how = draw(st.integers(0, 30))
    if how == 0:
        return payload[: draw(st.integers(4, len(payload)))]
    if how == 1:
        return payload + draw(st.binary(min_size=1, max_size=3))
    return payload


CHANNEL_CLASSES = tuple(
    cls
    for index, cls in sorted(commands.INDEX_MAPPING.items())
    if index >> 16 != 10 and cls is not commands.Basic.Publish
)
# What a client sends most: weighted so that sequences reach deep states.
COMMON_CLASSES = (
    commands.Exchange.Declare,
    commands.Exchange.Delete,
    commands.Exchange.Bind,
    commands.Exchange.Unbind,
    commands.Queue.Declare,
    commands.Queue.Bind,
    commands.Queue.Unbind,
    commands.Queue.Purge,
    commands.Queue.Delete,
    commands.Basic.Qos,
    commands.Basic.Consume,
    commands.Basic.Cancel,
    commands.Basic.Get,
    commands.Basic.Ack,
    commands.Basic.Nack,
    commands.Basic.Reject,
    commands.Basic.Recover,
    commands.Confirm.Select,
    commands.Tx.Select,
    commands.Tx.Commit,
)
CONNECTION_CLASSES = tuple(
    cls for index, cls in sorted(commands.INDEX_MAPPING.items()) if index >> 16 == 10
)


# -- content properties ---------------------------------------------------------------------

# An x-death history as a client might have rewritten it: entries for the queues of the
# test, with odd values among the expected ones.
_death_entries = st.lists(
    st.tuples(
        st.sampled_from([b"queue", b"reason", b"count", b"exchange", b"time", b"routing-keys"]),
        st.one_of(
            st.sampled_from(["q", "q2", "dl", "expired", "rejected", "maxlen"]).map(
                lambda w: b"S" + long(w.encode())
            ),
            field_values,
        ),
    ),
    max_size=5,
).map(lambda pairs: b"F" + long(b"".join(short(k) + v for k, v in pairs)))
routing_arrays = st.lists(
    st.one_of(
        st.sampled_from(["q", "q2", "dl", "a.b"]).map(lambda w: b"S" + long(w.encode())),
        not_utf8.map(lambda raw: b"S" + long(raw)),
        field_values,
    ),
    max_size=3,
).map(lambda items: b"A" + long(b"".join(items)))
x_deaths = st.one_of(
    st.lists(st.one_of(_death_entries, _death_entries, field_values), max_size=3).map(
        lambda items: b"A" + long(b"".join(items))
    ),
    field_values,
)

# (flag, AMQP type) of the 14 basic properties in wire order.
PROPERTY_LAYOUT = (
    (0x8000, "shortstr"),  # content_type
    (0x4000, "shortstr"),  # content_encoding
    (0x2000, "table"),  # headers
    (0x1000, "octet"),  # delivery_mode
    (0x0800, "octet"),  # priority
    (0x0400, "shortstr"),  # correlation_id
    (0x0200, "shortstr"),  # reply_to
    (0x0100, "shortstr"),  # expiration
    (0x0080, "shortstr"),  # message_id
    (0x0040, "longlong"),  # timestamp
    (0x0020, "shortstr"),  # type
    (0x0010, "shortstr"),  # user_id
    (0x0008, "shortstr"),  # app_id
    (0x0004, "shortstr"),  # cluster_id
)
_PROPERTY_VALUES = {
    "shortstr": st.one_of(
        st.sampled_from(["amq.rabbitmq.reply-to", "guest", "60000", "0", "-1", "1x", "q"]).map(
            str.encode
        ),
        utf8,
        not_utf8,
    ).map(short),
    "octet": st.one_of(st.sampled_from([0, 1, 2, 9, 255]), st.integers(0, 255)).map(
        lambda v: bytes((v,))
    ),
    "longlong": _int(b"", ">Q", 0, 2**64 - 1),
    # headers: CC and BCC routing arrays and x-death histories come up often
    "table": st.one_of(
        field_tables,
        *[
            st.lists(
                st.one_of(
                    st.tuples(st.sampled_from([b"CC", b"BCC"]), field_values),
                    st.tuples(st.sampled_from([b"CC", b"BCC"]), routing_arrays),
                    st.tuples(st.just(b"x-death"), x_deaths),
                ),
                min_size=1,
                max_size=3,
            ).map(lambda pairs: long(b"".join(short(k) + v for k, v in pairs)))
        ]
        * 2,
    ),
}


# Values that let a publish through more often than not (user_id, expiration, reply_to
# are checked when published).
_PLAUSIBLE_PROPERTIES = {
    0x0200: st.sampled_from([b"amq.rabbitmq.reply-to", b"q"]).map(short),
    0x0100: st.sampled_from([b"0", b"5", b"60000", b"1x", b""]).map(short),
    0x0010: st.sampled_from([b"guest", b"guest", b"other"]).map(short),
}


@st.composite
def well_formed_properties(draw) -> bytes:
    flags = 0
    values = []
    for flag, kind in PROPERTY_LAYOUT:
        if draw(st.integers(0, 3)) == 0 or (flag == 0x2000 and draw(st.booleans())):
            flags |= flag
            plausible = _PLAUSIBLE_PROPERTIES.get(flag)
            if plausible is not None and draw(st.integers(0, 3)):
                values.append(draw(plausible))
            else:
                values.append(draw(_PROPERTY_VALUES[kind]))
    return struct.pack(">H", flags) + b"".join(values)


@st.composite
def properties(draw) -> bytes:
    """Property flags and list: mostly well-formed, else cut short, padded or random."""
    raw = draw(well_formed_properties())
    how = draw(st.sampled_from(["as is"] * 8 + ["cut", "padded", "random"]))
    if how == "cut" and len(raw) > 2:
        return raw[: draw(st.integers(2, len(raw) - 1))]
    if how == "padded":
        return raw + draw(st.binary(min_size=1, max_size=4))
    if how == "random":
        return draw(st.binary(min_size=2, max_size=24))
    return raw


# -- whole frames ----------------------------------------------------------------------------


def method_frame(channel: int, payload: bytes) -> bytes:
    return struct.pack(">BHI", frames.FRAME_METHOD, channel, len(payload)) + payload + b"\xce"


def publish_frames(
    channel: int, exchange: bytes, routing_key: bytes, props: bytes, body: bytes, bits: int = 0
) -> bytes:
    method = struct.pack(">IH", frames.BASIC_PUBLISH, 0) + short(exchange) + short(routing_key)
    method += bytes((bits,))
    header = struct.pack(">HHQ", 60, 0, len(body)) + props
    out = method_frame(channel, method)
    out += struct.pack(">BHI", frames.FRAME_HEADER, channel, len(header)) + header + b"\xce"
    if body:
        out += struct.pack(">BHI", frames.FRAME_BODY, channel, len(body)) + body + b"\xce"
    return out


@st.composite
def routing_properties(draw) -> bytes:
    """Well-formed properties with headers the broker reads itself: CC and BCC routing
    keys, an x-death history, anything else; sometimes a priority and an expiration."""
    pairs = draw(
        st.lists(
            st.one_of(
                st.tuples(st.sampled_from([b"CC", b"BCC"]), routing_arrays),
                st.tuples(st.sampled_from([b"CC", b"BCC"]), field_values),
                st.tuples(st.just(b"x-death"), x_deaths),
                st.tuples(table_keys, field_values),
            ),
            max_size=4,
        )
    )
    flags = 0x2000
    values = [long(b"".join(short(k) + v for k, v in pairs))]
    if draw(st.booleans()):
        flags |= 0x0800
        values.append(bytes((draw(st.integers(0, 255)),)))
    if draw(st.booleans()):
        flags |= 0x0100
        values.append(short(draw(st.sampled_from([b"0", b"3", b"100000"]))))
    return struct.pack(">H", flags) + b"".join(values)
