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


def has_user_id(raw: bytes) -> bool:
    """Whether the user_id property is set, without decoding anything."""
    return len(raw) >= 2 and bool(raw[1] & _USER_ID_FLAG)
