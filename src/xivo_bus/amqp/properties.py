"""Content properties (the 14 basic properties), decoded only when the broker needs one.

The broker keeps the raw property bytes a publisher sent and forwards them untouched, so
every property and header table reaches consumers exactly as published.
"""

from __future__ import annotations

from pamqp import commands, header

from xivo_bus.amqp import errors


def decode(raw: bytes) -> commands.Basic.Properties:
    """Decode raw property flags and list into pamqp's ``Basic.Properties``."""
    properties = commands.Basic.Properties()
    try:
        offset, flags = header.ContentHeader._get_flags(raw)
        properties.unmarshal(flags, raw[offset:])
    except Exception as error:  # malformed property list
        raise errors.ConnectionError(
            errors.FRAME_ERROR, "cannot decode content header properties", 60, 40
        ) from error
    return properties


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
    if raw[1] & 1:  # continuation flag words (never used in 0-9-1): decode the slow way
        return decode(raw).delivery_mode
    try:
        if flags & (_CONTENT_TYPE_FLAG >> 8):
            offset += 1 + raw[offset]
        if flags & (_CONTENT_ENCODING_FLAG >> 8):
            offset += 1 + raw[offset]
        if flags & (_HEADERS_FLAG >> 8):
            offset += 4 + int.from_bytes(raw[offset : offset + 4], "big")
        return raw[offset]
    except IndexError:
        raise errors.ConnectionError(
            errors.FRAME_ERROR, "cannot decode content header properties", 60, 40
        ) from None


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
    if flags & 1:
        raw = encode(decode(raw))  # continuation flag words: normalised by pamqp
        flags = int.from_bytes(raw[:2], "big")
    fields = {}
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
        fields[flag] = raw[offset : offset + size]
        offset += size
    return fields


def raw_headers(raw: bytes) -> bytes:
    """The headers table's encoded fields (without its length), b"" when there is none."""
    return _fields(raw).get(_HEADERS_FLAG, b"\0\0\0\0")[4:]


def replace(raw: bytes, headers: bytes | None = None, expiration: bool = True) -> bytes:
    """The raw properties with the headers table replaced by ``headers`` (encoded, with
    its length) and, with ``expiration=False``, without the expiration property; every
    other property keeps its bytes."""
    fields = _fields(raw)
    if headers is not None:
        fields[_HEADERS_FLAG] = headers
    if not expiration:
        fields.pop(_EXPIRATION_FLAG, None)
    flags = 0
    out = []
    for flag, _kind in _LAYOUT:
        if flag in fields:
            flags |= flag
            out.append(fields[flag])
    return flags.to_bytes(2, "big") + b"".join(out)
