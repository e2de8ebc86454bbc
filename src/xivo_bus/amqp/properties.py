"""Content properties (the 14 basic properties), decoded only when the broker needs one.

The broker keeps the raw property bytes a publisher sent and forwards them untouched, so
every property and header table reaches consumers exactly as published. They are checked
once, when published (``check``): a property list RabbitMQ could not read never gets in.

As in RabbitMQ, the two lowest flag bits (the continuation flag, never used by AMQP
0-9-1, and a reserved bit) are ignored, and property strings need not be UTF-8.
"""

from __future__ import annotations

import struct

from pamqp import commands, header

from xivo_bus.amqp import errors, fields


def well_formed(raw: bytes) -> bool:
    """Whether a property list is exactly the properties its flags announce,
    well-formed down to the last header: what RabbitMQ can read."""
    if raw in _checked:
        return True
    if not _well_formed(raw):
        return False
    if len(_checked) >= _CHECKED_SIZE:
        _checked.clear()
    _checked[raw] = None
    return True


def check(raw: bytes) -> None:
    """Refuse (501, as a framing error) a property list that is not ``well_formed``."""
    if not well_formed(raw):
        raise cannot_decode()


# Publishers repeat the same properties: each distinct list is checked once.
_CHECKED_SIZE = 1024
_checked: dict[bytes, None] = {b"\0\0": None}


def cannot_decode() -> errors.ConnectionError:
    return errors.ConnectionError(
        errors.FRAME_ERROR, "cannot decode content header properties", 60, 40
    )


def _well_formed(raw: bytes) -> bool:
    size = len(raw)
    if size < 2:
        return False
    offset = 2
    flags = (raw[0] << 8) | (raw[1] & 0xFC)  # the two lowest bits are ignored
    kinds = _PRESENT.get(flags) or _present(flags)
    for kind in kinds:
        if offset >= size:
            return False
        if kind == "s":
            offset += 1 + raw[offset]
        elif kind == "t":
            start = offset + 4
            offset = start + _long.unpack_from(raw, offset)[0] if start <= size else size + 1
            if offset > size or not fields.table_ok(raw, start, offset):
                return False
        else:
            offset += kind
    return offset == size


_PRESENT: dict[int, tuple] = {}  # at most 2**14 flag words


def _present(flags: int) -> tuple:
    """The kinds (see ``_LAYOUT``) of the properties ``flags`` announce, in order."""
    kinds = _PRESENT.get(flags)
    if kinds is None:
        kinds = _PRESENT[flags] = tuple(kind for flag, kind in _LAYOUT if flags & flag)
    return kinds


def decode(raw: bytes) -> commands.Basic.Properties:
    """Decode raw property flags and list into pamqp's ``Basic.Properties``. What pamqp
    cannot read but RabbitMQ accepts (strings that are not UTF-8, timestamps past the
    year 9999) is read leniently: such strings with replacement characters, such
    timestamps as integers."""
    properties = commands.Basic.Properties()
    if len(raw) >= 2 and not raw[1] & 1:
        try:
            offset, flags = header.ContentHeader._get_flags(raw)
            properties.unmarshal(flags, raw[offset:])
            return properties
        except Exception:  # noqa: S110 - read again below, as RabbitMQ reads it
            pass
    return _decode_leniently(raw)


def _decode_leniently(raw: bytes) -> commands.Basic.Properties:
    if not _well_formed(raw):
        raise cannot_decode()
    properties = commands.Basic.Properties()
    flags = (raw[0] << 8) | raw[1]
    offset = 2
    for (flag, kind), name in zip(_LAYOUT, NAMES, strict=True):
        if not flags & flag:
            continue
        if kind == "s":
            end = offset + 1 + raw[offset]
            value = raw[offset + 1 : end].decode("utf-8", "replace")
        elif kind == "t":
            end = offset + 4 + _long.unpack_from(raw, offset)[0]
            value = fields.decode_table(raw, offset + 4, end)
        elif kind == 1:
            end = offset + 1
            value = raw[offset]
        else:
            end = offset + 8
            value = fields.timestamp(_longlong.unpack_from(raw, offset)[0])
        setattr(properties, name, value)
        offset = end
    return properties


_long = struct.Struct(">I")
_longlong = struct.Struct(">Q")
# pamqp's attribute name of each property, in the order of the flags
NAMES = (
    "content_type",
    "content_encoding",
    "headers",
    "delivery_mode",
    "priority",
    "correlation_id",
    "reply_to",
    "expiration",
    "message_id",
    "timestamp",
    "message_type",
    "user_id",
    "app_id",
    "cluster_id",
)


def encode(properties: commands.Basic.Properties) -> bytes:
    """Encode properties to raw flags and list, as carried in a content header."""
    return properties.marshal()


_USER_ID_FLAG = 0x0010
_CONTENT_TYPE_FLAG = 0x8000
_CONTENT_ENCODING_FLAG = 0x4000
_HEADERS_FLAG = 0x2000
_DELIVERY_MODE_FLAG = 0x1000


def has_headers(raw: bytes) -> bool:
    return len(raw) >= 2 and bool(raw[0] & (_HEADERS_FLAG >> 8))


def delivery_mode(raw: bytes) -> int | None:
    """The delivery_mode property (2 = persistent) read straight from the raw bytes:
    it comes after content_type, content_encoding and headers, which are skipped."""
    if len(raw) < 2 or not raw[0] & (_DELIVERY_MODE_FLAG >> 8):
        return None
    flags = raw[0]
    offset = 2
    try:
        if flags & (_CONTENT_TYPE_FLAG >> 8):
            offset += 1 + raw[offset]
        if flags & (_CONTENT_ENCODING_FLAG >> 8):
            offset += 1 + raw[offset]
        if flags & (_HEADERS_FLAG >> 8):
            offset += 4 + int.from_bytes(raw[offset : offset + 4], "big")
        return raw[offset]
    except IndexError:
        raise cannot_decode() from None


def has_user_id(raw: bytes) -> bool:
    """Whether the user_id property is set, without decoding anything."""
    return len(raw) >= 2 and bool(raw[1] & _USER_ID_FLAG)


_EXPIRATION_FLAG = 0x0100
# The 14 properties in wire order: (flag, kind); kind is 1 (octet), 8 (long long),
# "s" (short string) or "t" (field table).
_LAYOUT = (
    (0x8000, "s"),
    (0x4000, "s"),
    (_HEADERS_FLAG, "t"),
    (_DELIVERY_MODE_FLAG, 1),
    (0x0800, 1),
    (0x0400, "s"),
    (0x0200, "s"),
    (_EXPIRATION_FLAG, "s"),
    (0x0080, "s"),
    (0x0040, 8),
    (0x0020, "s"),
    (_USER_ID_FLAG, "s"),
    (0x0008, "s"),
    (0x0004, "s"),
)


def has_expiration(raw: bytes) -> bool:
    """Whether the expiration property is set, without decoding anything."""
    return len(raw) >= 2 and bool(raw[0] & (_EXPIRATION_FLAG >> 8))


def _fields(raw: bytes) -> dict[int, bytes]:
    """Each property present, by flag, as its encoded bytes."""
    flags = int.from_bytes(raw[:2], "big")
    found = {}
    offset = 2
    for flag, kind in _LAYOUT:
        if not flags & flag:
            continue
        if kind == "s":
            size = 1 + raw[offset]
        elif kind == "t":
            size = 4 + int.from_bytes(raw[offset : offset + 4], "big")
        else:
            size = kind
        found[flag] = raw[offset : offset + size]
        offset += size
    return found


def raw_headers(raw: bytes) -> bytes:
    """The headers table's encoded fields (without its length), b"" when there is none."""
    return _fields(raw).get(_HEADERS_FLAG, b"\0\0\0\0")[4:]


def replace(raw: bytes, headers: bytes | None = None, expiration: bool = True) -> bytes:
    """The raw properties with the headers table replaced by ``headers`` (encoded, with
    its length) and, with ``expiration=False``, without the expiration property; every
    other property keeps its bytes."""
    found = _fields(raw)
    if headers is not None:
        found[_HEADERS_FLAG] = headers
    if not expiration:
        found.pop(_EXPIRATION_FLAG, None)
    flags = 0
    out = []
    for flag, _kind in _LAYOUT:
        if flag in found:
            flags |= flag
            out.append(found[flag])
    return flags.to_bytes(2, "big") + b"".join(out)
