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
