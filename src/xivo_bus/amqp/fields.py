"""Field tables and arrays read as RabbitMQ reads them, sans-I/O.

``table_ok`` checks an encoded table without building anything (cheap enough for every
publish that carries headers); ``decode_table`` decodes one leniently: where pamqp's
decoder gives up on what RabbitMQ accepts (a key that is not UTF-8, a timestamp past
the year 9999) the value is kept as it came (the key's text with replacement
characters, the timestamp as an integer). Both refuse, as RabbitMQ does, a value of an
unknown type and anything that runs past its table or array, or stops short of it.

Value types are those of pamqp (and RabbitMQ's errata): t b B s u I i l L f d D S x A T
F V. Decoded values have pamqp's Python types: bool, int, float, Decimal, str (bytes
for a long string that is not UTF-8), bytearray, list, datetime, dict, None.
"""

from __future__ import annotations

import datetime
import decimal
import struct
from typing import Any

_LONG = struct.Struct(">I")

# Fixed-size value types: the size of the value after its type octet.
FIXED_SIZES = {
    ord("t"): 1,
    ord("b"): 1,
    ord("B"): 1,
    ord("s"): 2,
    ord("u"): 2,
    ord("I"): 4,
    ord("i"): 4,
    ord("l"): 8,
    ord("L"): 8,
    ord("f"): 4,
    ord("d"): 8,
    ord("D"): 5,
    ord("T"): 8,
    ord("V"): 0,
}
_TABLE, _ARRAY, _LONGSTR = ord("F"), ord("A"), ord("S")
# Tables and arrays nested deeper than this are refused (RabbitMQ takes any depth): so
# that reading, comparing and writing them never exhausts Python's stack.
MAX_DEPTH = 64
# A length (4 octets) then that many octets.
SIZED = frozenset((ord("S"), ord("x"), _TABLE, _ARRAY))


def value_end(raw: bytes, at: int, end: int, depth: int = 0) -> int:
    """Where the value whose type octet is at ``at`` ends, checked all through (nested
    tables and arrays too); -1 when it is malformed, runs past ``end``, or nests tables
    and arrays deeper than ``MAX_DEPTH``."""
    if at >= end:
        return -1
    kind = raw[at]
    at += 1
    size = FIXED_SIZES.get(kind)
    if size is not None:
        at += size
        return at if at <= end else -1
    if kind not in SIZED or at + 4 > end:
        return -1
    start = at + 4
    stop = start + _LONG.unpack_from(raw, at)[0]
    if stop > end:
        return -1
    if kind == _TABLE:
        return stop if depth < MAX_DEPTH and table_ok(raw, start, stop, depth + 1) else -1
    if kind == _ARRAY:
        return stop if depth < MAX_DEPTH and array_ok(raw, start, stop, depth + 1) else -1
    return stop


def table_ok(raw: bytes, start: int, end: int, depth: int = 0) -> bool:
    """Whether ``raw[start:end]`` is exactly the fields of a well-formed table."""
    offset = start
    while offset < end:
        at = offset + 1 + raw[offset]  # the value's type octet, after the key
        if at >= end:
            return False
        kind = raw[at]
        size = FIXED_SIZES.get(kind)
        if size is not None:  # the usual values, checked here: this runs per publish
            offset = at + 1 + size
        elif kind == _LONGSTR and at + 5 <= end:
            offset = at + 5 + _LONG.unpack_from(raw, at + 1)[0]
        else:
            offset = value_end(raw, at, end, depth)
            if offset < 0:
                return False
        if offset > end:
            return False
    return True


def array_ok(raw: bytes, start: int, end: int, depth: int = 0) -> bool:
    """Whether ``raw[start:end]`` is exactly the values of a well-formed array."""
    offset = start
    while offset < end:
        offset = value_end(raw, offset, end, depth)
        if offset < 0:
            return False
    return True


def table_items(raw: bytes) -> list[tuple[bytes, bytes]]:
    """(encoded key, type octet and value) of each field of a table's contents, as they
    are on the wire; ``ValueError`` when it is malformed."""
    items = []
    offset = 0
    end = len(raw)
    while offset < end:
        key_end = offset + 1 + raw[offset]
        stop = value_end(raw, key_end, end)
        if stop < 0:
            raise ValueError(f"malformed field table at {offset}")
        items.append((raw[offset + 1 : key_end], raw[key_end:stop]))
        offset = stop
    return items


def encode_table(items) -> bytes:
    """A table (with its length) of (encoded key, encoded value) pairs."""
    body = b"".join(bytes((len(key),)) + key + value for key, value in items)
    return _LONG.pack(len(body)) + body


# -- encoding decoded values ------------------------------------------------------------------


def encode_value(value: Any) -> bytes:
    """A decoded field value written back so that ``decode_value`` gives it again
    (whatever ``decode_table`` gave; what pamqp's encoder may refuse): integers as long
    (``l``) or, past a long, as the timestamp they were read from; floats as doubles;
    decimals as decimals when they fit (else as their text); a long string that is not
    UTF-8 with its bytes."""
    if isinstance(value, bool):
        return b"t" + bytes((value,))
    if isinstance(value, int):
        if -(2**63) <= value < 2**63:
            return b"l" + _FIXED_FORMATS[ord("l")].pack(value)
        return b"T" + _TIMESTAMP.pack(value & 0xFFFF_FFFF_FFFF_FFFF)
    if isinstance(value, str):
        value = value.encode("utf-8", "surrogateescape")
    if isinstance(value, bytes):
        return b"S" + _LONG.pack(len(value)) + value
    if isinstance(value, bytearray):
        return b"x" + _LONG.pack(len(value)) + value
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.UTC)
        return b"T" + _TIMESTAMP.pack(max(0, int(value.timestamp())))
    if isinstance(value, list):
        items = b"".join(encode_value(item) for item in value)
        return b"A" + _LONG.pack(len(items)) + items
    if isinstance(value, dict):
        return b"F" + encode_field_table(value)
    if isinstance(value, float):
        return b"d" + _FIXED_FORMATS[ord("d")].pack(value)
    if isinstance(value, decimal.Decimal):
        return _encode_decimal(value) or encode_value(str(value))
    return b"V"


def encode_field_table(table: dict) -> bytes:
    """A table (with its length) of decoded values, as ``encode_value`` writes them."""
    return encode_table(
        (str(key).encode("utf-8", "surrogateescape")[:255], encode_value(value))
        for key, value in table.items()
    )


def _encode_decimal(value: decimal.Decimal) -> bytes | None:
    """A decimal as RabbitMQ reads one (scale, unsigned 32-bit digits), if it fits."""
    sign, _digits, exponent = value.as_tuple()
    if not isinstance(exponent, int) or sign:
        return None
    scale = max(0, -exponent)
    digits = int(value.scaleb(scale))
    if scale > 255 or not 0 <= digits < 2**32:
        return None
    return b"D" + _DECIMAL.pack(scale, digits)


# -- decoding ---------------------------------------------------------------------------------

_FIXED_FORMATS = {
    ord("b"): struct.Struct(">b"),
    ord("B"): struct.Struct(">B"),
    ord("s"): struct.Struct(">h"),
    ord("u"): struct.Struct(">H"),
    ord("I"): struct.Struct(">i"),
    ord("i"): struct.Struct(">I"),
    ord("l"): struct.Struct(">q"),
    ord("L"): struct.Struct(">q"),  # as pamqp reads it
    ord("f"): struct.Struct(">f"),
    ord("d"): struct.Struct(">d"),
}
_DECIMAL = struct.Struct(">BI")
_TIMESTAMP = struct.Struct(">Q")


def timestamp(seconds: int) -> datetime.datetime | int:
    """A timestamp as pamqp reads it (past 2106 it takes milliseconds), or the integer
    itself when no ``datetime`` can hold it."""
    value: float = seconds / 1000.0 if seconds > 0xFFFFFFFF else seconds
    try:
        return datetime.datetime.fromtimestamp(value, tz=datetime.UTC)
    except (OverflowError, ValueError, OSError):
        return seconds


def decode_value(raw: bytes, at: int, end: int, depth: int = 0) -> tuple[Any, int]:
    """The value whose type octet is at ``at``, and where it ends; ``ValueError`` when
    it is malformed."""
    stop = value_end(raw, at, end, depth)
    if stop < 0:
        raise ValueError(f"malformed field value at {at}")
    kind = raw[at]
    at += 1
    fixed = _FIXED_FORMATS.get(kind)
    if fixed is not None:
        return fixed.unpack_from(raw, at)[0], stop
    if kind == ord("t"):
        return raw[at] != 0, stop
    if kind == ord("V"):
        return None, stop
    if kind == ord("T"):
        return timestamp(_TIMESTAMP.unpack_from(raw, at)[0]), stop
    if kind == ord("D"):
        places, digits = _DECIMAL.unpack_from(raw, at)
        return decimal.Decimal(digits) * (decimal.Decimal(10) ** -places), stop
    body = raw[at + 4 : stop]
    if kind == ord("S"):
        try:
            return body.decode("utf-8"), stop
        except UnicodeDecodeError:
            return bytes(body), stop
    if kind == ord("x"):
        return bytearray(body), stop
    if kind == _TABLE:
        return decode_table(raw, at + 4, stop, depth + 1), stop
    items = []
    offset = at + 4
    while offset < stop:
        item, offset = decode_value(raw, offset, stop, depth + 1)
        items.append(item)
    return items, stop


def decode_table(raw: bytes, start: int, end: int, depth: int = 0) -> dict[str, Any]:
    """The fields of the table ``raw[start:end]``; ``ValueError`` when it is malformed."""
    table = {}
    offset = start
    while offset < end:
        key_end = offset + 1 + raw[offset]
        if key_end > end:
            raise ValueError(f"malformed field table key at {offset}")
        key = bytes(raw[offset + 1 : key_end]).decode("utf-8", "replace")
        table[key], offset = decode_value(raw, key_end, end, depth)
    return table
