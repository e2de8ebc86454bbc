"""AMQP 0-9-1 framing, sans-I/O.

``FrameReader`` is fed bytes and hands back typed events (protocol header, method,
assembled content, heartbeat); it raises ``errors.ConnectionError`` for anything that
breaks the framing rules, with RabbitMQ's reply code and text. The ``*_frame`` functions
turn methods and content back into bytes. No sockets, no asyncio, no broker state.

Methods are pamqp's classes; their arguments are read here as RabbitMQ reads them
(``decode_method``: every field whole, nothing left over, field tables by
``xivo_bus.amqp.fields``) and written by pamqp's encoders. The hot ``basic.publish``,
``basic.deliver`` and ``basic.ack`` have hand-written codecs, tested byte for byte
against pamqp. A content header's property list is checked when it comes in
(``properties.well_formed``): what RabbitMQ could not read is a framing error.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from pamqp import base, commands, encode

from xivo_bus.amqp import errors, fields
from xivo_bus.amqp import properties as content_properties

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"

FRAME_METHOD = 1
FRAME_HEADER = 2
FRAME_BODY = 3
FRAME_HEARTBEAT = 8
FRAME_END = 0xCE
FRAME_END_BYTE = b"\xce"
FRAME_HEADER_SIZE = 7
# Frame header plus frame-end octet: what a frame costs on top of its payload.
FRAME_OVERHEAD = FRAME_HEADER_SIZE + 1
# Before connection.tune-ok the peer may not send frames larger than this.
FRAME_MIN_SIZE = 4096

BASIC_CLASS = 60
BASIC_PUBLISH = (60 << 16) | 40
BASIC_DELIVER = (60 << 16) | 60
BASIC_ACK = (60 << 16) | 80

_frame_header = struct.Struct(">BHI")
_method_id = struct.Struct(">HH")
_method_index = struct.Struct(">I")
_content_header = struct.Struct(">HHQ")
_ack = struct.Struct(">QB")
_deliver_tail = struct.Struct(">QB")
# The method's frame end, the content header frame's header and its fixed fields.
_end_then_content_header = struct.Struct(">BBHIHHQ")
# The content header's frame end and the body frame's header.
_end_then_body_header = struct.Struct(">BBHI")

HEARTBEAT_FRAME = _frame_header.pack(FRAME_HEARTBEAT, 0, 0) + FRAME_END_BYTE


@dataclass(slots=True)
class ProtocolHeader:
    """The 8 octets a client sends first; ``valid`` is False for anything but AMQP 0-9-1."""

    raw: bytes
    valid: bool


@dataclass(slots=True)
class MethodFrame:
    channel: int
    method: base.Frame
    payload: bytes = b""  # the method's octets as received (for error texts)


@dataclass(slots=True)
class ContentFrame:
    """A content-bearing method (basic.publish) with its assembled header and body.

    ``properties`` is the raw property flags and property list exactly as the client sent
    them, so they can be forwarded without re-encoding (see ``xivo_bus.amqp.properties``).
    ``method`` may be shared between identical publishes: read it, never change it.
    """

    channel: int
    method: base.Frame
    properties: bytes
    body: bytes


@dataclass(slots=True)
class Heartbeat:
    channel: int


@dataclass(slots=True)
class OversizedContent:
    """A content header announcing a body larger than the reader's ``max_body_size``:
    the body is not kept (its frames are read and dropped), the content never completes."""

    channel: int
    method: base.Frame
    body_size: int


Event = ProtocolHeader | MethodFrame | ContentFrame | Heartbeat | OversizedContent


class _PartialContent:
    __slots__ = ("method", "body_size", "properties", "chunks", "received", "refused")

    def __init__(self, method: base.Frame):
        self.method = method
        self.body_size = -1  # -1 until the content header arrives
        self.properties = b""
        self.chunks: list[bytes] = []
        self.received = 0
        self.refused = False  # too large: its body frames are counted, not kept


class ClosedReader:
    """What reads a client after a framing error: nothing (what it sends is dropped),
    until its socket is closed."""

    receiving_content = False
    frame_max = FRAME_MIN_SIZE
    max_body_size = 0

    def feed(self, data: bytes) -> None:
        pass

    def next_event(self) -> None:
        return None


def method_ids(method: base.Frame) -> tuple[int, int]:
    """The (class_id, method_id) of a pamqp method."""
    return method.index >> 16, method.index & 0xFFFF


COMPACT_AFTER = 1 << 20  # bytes read from the buffer before they are dropped from it


class FrameReader:
    """Turns the bytes a client sends into events.

    Call ``feed(data)`` then ``next_event()`` until it returns None. After a
    ``ConnectionError`` the reader must not be used again.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._offset = 0
        self.frame_max = FRAME_MIN_SIZE
        self._header_seen = False
        self._partial: dict[int, _PartialContent] = {}
        # a body announced larger than this is refused at its content header (0: any)
        self.max_body_size = 0

    @property
    def receiving_content(self) -> bool:
        """Some channel is in the middle of a content (a publish not yet complete)."""
        return bool(self._partial)

    def feed(self, data: bytes) -> None:
        offset = self._offset
        if offset:
            if offset == len(self._buffer):
                self._buffer.clear()
                self._offset = 0
            elif offset >= COMPACT_AFTER:
                # A client that keeps streaming (large bodies) rarely leaves the buffer
                # exactly consumed: drop what was read, or the buffer only grows.
                del self._buffer[:offset]
                self._offset = 0
        self._buffer += data

    def next_event(self) -> Event | None:
        buffer = self._buffer
        offset = self._offset
        if not self._header_seen:
            if len(buffer) - offset < 8:
                # A wrong header is rejected as soon as it cannot become the right one.
                if bytes(buffer[offset:]) == PROTOCOL_HEADER[: len(buffer) - offset]:
                    return None
            raw = bytes(buffer[offset : offset + 8])
            self._offset = offset + 8
            self._header_seen = True
            return ProtocolHeader(raw, raw == PROTOCOL_HEADER)
        while True:
            available = len(buffer) - offset
            if available < FRAME_HEADER_SIZE:
                return None
            frame_type, channel, size = _frame_header.unpack_from(buffer, offset)
            # RabbitMQ refuses a payload over frame_max (not frame_max - 8), and says so
            # naming the limit without the frame overhead.
            if size > self.frame_max:
                raise errors.ConnectionError(
                    errors.FRAME_ERROR,
                    f"type {frame_type}, all octets = <<>>: "
                    f"{{frame_too_large,{size},{self.frame_max - FRAME_OVERHEAD}}}",
                )
            end = offset + FRAME_HEADER_SIZE + size
            if available < FRAME_OVERHEAD + size:
                return None
            if buffer[end] != FRAME_END:
                raise _bad_frame_end(
                    frame_type, buffer[offset + FRAME_HEADER_SIZE : end], buffer[end]
                )
            if (
                frame_type == FRAME_METHOD
                and channel
                and size >= 4
                and _method_index.unpack_from(buffer, offset + FRAME_HEADER_SIZE)[0]
                == BASIC_PUBLISH
                and channel not in self._partial
            ):
                whole = self._whole_publish(buffer, offset + FRAME_HEADER_SIZE, end, channel)
                if whole is not None:
                    return whole
            payload = bytes(buffer[offset + FRAME_HEADER_SIZE : end])
            offset = self._offset = end + 1
            event = self._frame(frame_type, channel, payload)
            if event is not None:
                return event

    def _whole_publish(
        self, buffer: bytearray, start: int, end: int, channel: int
    ) -> ContentFrame | None:
        """The fast path for the common case: a basic.publish whose content header and
        single body frame are already in the buffer, all well-formed. Anything else
        (content split over reads or frames, interleaved frames, any error) returns None
        and goes the frame-by-frame way, which gives the same events and errors."""
        header_at = end + 1
        header_end = self._complete_frame(buffer, header_at, FRAME_HEADER, channel)
        if header_end is None or header_end - header_at < FRAME_HEADER_SIZE + 14:
            return None
        class_id, weight, body_size = _content_header.unpack_from(
            buffer, header_at + FRAME_HEADER_SIZE
        )
        if class_id != BASIC_CLASS or weight != 0:
            return None
        if self.max_body_size and body_size > self.max_body_size:
            return None  # refused the frame-by-frame way
        next_offset = header_end + 1
        body = b""
        if body_size:
            body_at = next_offset
            body_end = self._complete_frame(buffer, body_at, FRAME_BODY, channel)
            if body_end is None or body_end - body_at - FRAME_HEADER_SIZE != body_size:
                return None
            body = bytes(buffer[body_at + FRAME_HEADER_SIZE : body_end])
            next_offset = body_end + 1
        properties = bytes(buffer[header_at + FRAME_HEADER_SIZE + 12 : header_end])
        if not content_properties.well_formed(properties):
            return None  # refused the frame-by-frame way
        method = _cached_publish(bytes(buffer[start:end]))
        self._offset = next_offset
        return ContentFrame(channel, method, properties, body)

    def _complete_frame(
        self, buffer: bytearray, at: int, frame_type: int, channel: int
    ) -> int | None:
        """Where the frame-end octet is, if a whole well-formed frame of this type and
        channel starts at ``at``; None otherwise."""
        if len(buffer) - at < FRAME_OVERHEAD:
            return None
        found_type, found_channel, size = _frame_header.unpack_from(buffer, at)
        end = at + FRAME_HEADER_SIZE + size
        if (
            found_type != frame_type
            or found_channel != channel
            or size > self.frame_max
            or end >= len(buffer)
            or buffer[end] != FRAME_END
        ):
            return None
        return end

    def _frame(self, frame_type: int, channel: int, payload: bytes) -> Event | None:
        if channel == 0 and frame_type in (FRAME_HEADER, FRAME_BODY):
            raise _unexpected_frame(frame_type, payload)
        partial = self._partial.get(channel)
        if frame_type == FRAME_METHOD:
            if partial is not None and partial.refused:
                del self._partial[channel]  # the client gave up the refused content
                partial = None
            if partial is not None:
                raise _unexpected(partial)
            method = decode_method(payload)
            if method.index == BASIC_PUBLISH:
                self._partial[channel] = _PartialContent(method)
                return None
            return MethodFrame(channel, method, payload)
        if frame_type == FRAME_HEADER:
            if partial is None:
                raise errors.ConnectionError(
                    errors.UNEXPECTED_FRAME,
                    "expected method frame, got non method frame instead",
                )
            if partial.body_size != -1:
                raise _unexpected(partial)
            if len(payload) < 14:
                raise errors.ConnectionError(
                    errors.FRAME_ERROR, f"cannot decode {erlang_binary(payload)}", 60, 40
                )
            class_id, weight, body_size = _content_header.unpack_from(payload)
            if class_id != BASIC_CLASS:
                raise errors.ConnectionError(
                    errors.UNEXPECTED_FRAME,
                    f"expected content header for class 60, got one for class {class_id} instead",
                    60,
                    40,
                )
            if weight != 0:
                raise _unexpected(partial)
            partial.body_size = body_size
            partial.properties = payload[12:]
            if self.max_body_size and body_size > self.max_body_size:
                partial.refused = True
                return OversizedContent(channel, partial.method, body_size)
            content_properties.check(partial.properties)
            if body_size == 0:
                del self._partial[channel]
                return ContentFrame(channel, partial.method, partial.properties, b"")
            return None
        if frame_type == FRAME_BODY:
            if partial is None:
                raise errors.ConnectionError(
                    errors.UNEXPECTED_FRAME,
                    "expected method frame, got non method frame instead",
                )
            if partial.body_size == -1:
                raise _unexpected(partial)
            partial.received += len(payload)
            if partial.refused:
                if partial.received >= partial.body_size:
                    del self._partial[channel]
                return None
            if partial.received > partial.body_size:
                # Past the announced size (RabbitMQ lets it be): the content stays open and
                # whatever comes next on the channel is unexpected; nothing more is kept.
                partial.chunks.clear()
                return None
            partial.chunks.append(payload)
            if partial.received != partial.body_size:
                return None  # short: more to come
            del self._partial[channel]
            chunks = partial.chunks
            body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            return ContentFrame(channel, partial.method, partial.properties, body)
        if frame_type == FRAME_HEARTBEAT and not payload:
            if channel != 0:
                raise _unexpected_frame(frame_type, payload)
            return Heartbeat(channel)
        raise errors.ConnectionError(
            errors.FRAME_ERROR,
            f"type {frame_type}, all octets = {erlang_binary(payload)}: unknown_frame",
        )


def _unexpected(partial: _PartialContent) -> errors.ConnectionError:
    expected = "content header for class 60" if partial.body_size == -1 else "content body"
    what = "content header" if partial.body_size == -1 else "content body"
    return errors.ConnectionError(
        errors.UNEXPECTED_FRAME,
        f"expected {expected}, got non {what} frame instead",
        60,
        40,
    )


def _bad_frame_end(frame_type: int, payload: bytes | bytearray, marker: int):
    if len(payload) > 16:
        prefix = f"type {frame_type}, first 16 octets = {erlang_binary(payload[:16])}: "
    else:
        prefix = f"type {frame_type}, all octets = {erlang_binary(payload)}: "
    term = f"{{invalid_frame_end_marker,{marker}}}"
    if len(prefix) + len(term) > 80:
        # Erlang's pretty printer breaks the term past column 80.
        term = "{invalid_frame_end_marker,\n" + " " * (len(prefix) + 1) + f"{marker}}}"
    return errors.ConnectionError(errors.FRAME_ERROR, prefix + term)


def _unexpected_frame(frame_type: int, payload: bytes) -> errors.ConnectionError:
    return errors.ConnectionError(
        errors.UNEXPECTED_FRAME, f"type {frame_type}, all octets = {erlang_binary(payload)}"
    )


def erlang_binary(data: bytes | bytearray) -> str:
    """Octets written as RabbitMQ (Erlang) prints them in error texts: ``<<0,50>>``, or
    ``<<"abc">>`` when all are printable."""
    data = bytes(data)
    if data and all(32 <= b < 127 for b in data):
        text = data.decode("ascii").replace("\\", "\\\\").replace('"', '\\"')
        return f'<<"{text}">>'
    return "<<" + ",".join(str(b) for b in data) + ">>"


def decode_method(payload: bytes) -> base.Frame:
    """Decode a method frame's payload, raising ``errors.ConnectionError`` when it cannot."""
    if len(payload) < 4:
        raise errors.ConnectionError(
            errors.FRAME_ERROR, f"type 1, all octets = {erlang_binary(payload)}: unknown_frame"
        )
    index = _method_index.unpack_from(payload)[0]
    if index == BASIC_PUBLISH:
        return decode_publish(payload)
    if index == BASIC_ACK:
        return decode_ack(payload)
    cls = commands.INDEX_MAPPING.get(index)
    if cls is None:
        class_id, method_id = _method_id.unpack_from(payload)
        raise errors.ConnectionError(
            errors.NOT_IMPLEMENTED,
            f"unknown method (class {class_id}, method {method_id})",
            class_id,
            method_id,
        )
    method = cls.__new__(cls)  # no pamqp validation: every field is set below
    try:
        malformed_utf8 = _unmarshal(method, _fields_of(cls), payload)
    except (IndexError, ValueError, struct.error) as error:
        raise _cannot_decode(payload) from error
    if malformed_utf8:
        raise _malformed_utf8()
    return method


_SCHEMAS: dict[type, tuple[tuple[str, str], ...]] = {}
_short = struct.Struct(">H")
_long = struct.Struct(">I")
_longlong = struct.Struct(">Q")


def _fields_of(cls: type[base.Frame]) -> tuple[tuple[str, str], ...]:
    schema = _SCHEMAS.get(cls)
    if schema is None:
        schema = _SCHEMAS[cls] = tuple((name, cls.amqp_type(name)) for name in cls.__slots__)
    return schema


def _unmarshal(method: base.Frame, schema: tuple[tuple[str, str], ...], payload: bytes) -> bool:
    """Set each field of ``method`` from the arguments in ``payload`` (after its index),
    read as RabbitMQ reads them: every field whole, nothing left over (``ValueError``,
    ``IndexError`` or ``struct.error`` otherwise); integers unsigned; a long string
    that is not UTF-8 as bytes; tables as ``fields.decode_table`` reads them. Returns
    whether a short string was not UTF-8 (refused once the whole method has been read)."""
    offset = 4
    end = len(payload)
    bits = bit = 0
    malformed_utf8 = False
    for name, kind in schema:
        if kind == "bit":
            if bit == 0 or bit == 8:
                bits = payload[offset]
                offset += 1
                bit = 0
            value: object = bool(bits >> bit & 1)
            bit += 1
        else:
            bit = 0
            if kind == "shortstr":
                stop = offset + 1 + payload[offset]
                raw = payload[offset + 1 : stop]
                try:
                    value = raw.decode("utf-8")
                except UnicodeDecodeError:
                    value = raw.decode("utf-8", "replace")
                    malformed_utf8 = True
            elif kind == "longstr":
                stop = offset + 4 + _long.unpack_from(payload, offset)[0]
                raw = payload[offset + 4 : stop]
                try:
                    value = raw.decode("utf-8")
                except UnicodeDecodeError:
                    value = raw
            elif kind == "table":
                stop = offset + 4 + _long.unpack_from(payload, offset)[0]
                if stop > end:
                    raise ValueError(f"{name} runs past the frame")
                value = fields.decode_table(payload, offset + 4, stop)
            elif kind == "octet":
                stop = offset + 1
                value = payload[offset]
            elif kind == "short":
                stop = offset + 2
                value = _short.unpack_from(payload, offset)[0]
            elif kind == "long":
                stop = offset + 4
                value = _long.unpack_from(payload, offset)[0]
            else:  # longlong (timestamps never come in a method)
                stop = offset + 8
                value = _longlong.unpack_from(payload, offset)[0]
            if stop > end:
                raise ValueError(f"{name} runs past the frame")
            offset = stop
        setattr(method, name, value)
    if offset != end:
        raise ValueError("octets left over")
    return malformed_utf8


def _malformed_utf8() -> errors.ConnectionError:
    return errors.ConnectionError(errors.FRAME_ERROR, "Malformed UTF-8 in shortstr")


def _cannot_decode(payload: bytes) -> errors.ConnectionError:
    class_id, method_id = _method_id.unpack_from(payload)
    return errors.ConnectionError(
        errors.FRAME_ERROR, f"cannot decode {erlang_binary(payload[4:])}", class_id, method_id
    )


def _short_str(payload: bytes, offset: int) -> tuple[str, int]:
    length = payload[offset]
    end = offset + 1 + length
    if end > len(payload):
        raise IndexError("short string runs past the frame")
    return payload[offset + 1 : end].decode("utf-8"), end


def decode_publish(payload: bytes) -> commands.Basic.Publish:
    """Hand-written decoder for the hottest client method."""
    try:
        exchange, offset = _short_str(payload, 6)  # after class, method, ticket
        routing_key, offset = _short_str(payload, offset)
        bits = payload[offset]
    except UnicodeDecodeError as error:
        raise _malformed_utf8() from error
    except IndexError as error:
        raise _cannot_decode(payload) from error
    method = commands.Basic.Publish.__new__(commands.Basic.Publish)
    method.ticket = 0
    method.exchange = exchange
    method.routing_key = routing_key
    method.mandatory = bool(bits & 1)
    method.immediate = bool(bits & 2)
    return method


# Publishers repeat the same exchange and routing key: decode each distinct basic.publish
# once. The decoded methods are shared, read-only.
_PUBLISH_CACHE_SIZE = 1024
_publish_cache: dict[bytes, commands.Basic.Publish] = {}


def _cached_publish(payload: bytes) -> commands.Basic.Publish:
    method = _publish_cache.get(payload)
    if method is None:
        method = decode_publish(payload)
        if len(_publish_cache) >= _PUBLISH_CACHE_SIZE:
            _publish_cache.clear()
        _publish_cache[payload] = method
    return method


def decode_ack(payload: bytes) -> commands.Basic.Ack:
    if len(payload) < 13:
        raise _cannot_decode(payload)
    delivery_tag, bits = _ack.unpack_from(payload, 4)
    method = commands.Basic.Ack.__new__(commands.Basic.Ack)
    method.delivery_tag = delivery_tag
    method.multiple = bool(bits & 1)
    return method


def _frame(frame_type: int, channel: int, payload: bytes) -> bytes:
    return _frame_header.pack(frame_type, channel, len(payload)) + payload + FRAME_END_BYTE


def method_frame(channel: int, method: base.Frame) -> bytes:
    """Encode one method as a frame."""
    return _frame(FRAME_METHOD, channel, encode_method(method))


def build(cls: type[base.Frame], **fields) -> base.Frame:
    """A method object with these fields, skipping pamqp's client-side validation (which
    refuses names RabbitMQ accepts, such as exchange names with spaces or accents)."""
    method = cls.__new__(cls)
    for name in cls.__slots__:
        setattr(method, name, fields.pop(name, None))
    if fields:
        raise TypeError(f"{cls.name} has no field {', '.join(fields)}")
    return method


def content_frames(
    channel: int, method_payload: bytes, properties: bytes, body: bytes, frame_max: int
) -> list[bytes]:
    """A content-bearing method, its content header and body frames split by frame_max.

    ``method_payload`` is the encoded method (index and arguments); ``properties`` the raw
    property flags and list as received.
    """
    size = len(body)
    chunk = frame_max - FRAME_OVERHEAD
    if 0 < size <= chunk:
        # The common case in one piece: fewer objects to build and hand to the transport.
        return [
            b"".join(
                (
                    _frame_header.pack(FRAME_METHOD, channel, len(method_payload)),
                    method_payload,
                    _end_then_content_header.pack(
                        FRAME_END, FRAME_HEADER, channel, 12 + len(properties), BASIC_CLASS, 0, size
                    ),
                    properties,
                    _end_then_body_header.pack(FRAME_END, FRAME_BODY, channel, size),
                    body,
                    FRAME_END_BYTE,
                )
            )
        ]
    out = [
        _frame_header.pack(FRAME_METHOD, channel, len(method_payload)),
        method_payload,
        FRAME_END_BYTE,
        _frame_header.pack(FRAME_HEADER, channel, 12 + len(properties)),
        _content_header.pack(BASIC_CLASS, 0, size),
        properties,
        FRAME_END_BYTE,
    ]
    if size <= chunk:
        return out
    view = memoryview(body)
    for start in range(0, size, chunk):
        piece = view[start : start + chunk]
        out += (_frame_header.pack(FRAME_BODY, channel, len(piece)), piece, FRAME_END_BYTE)
    return out


def short_str(value: str) -> bytes:
    """Encode an AMQP short string (length octet + UTF-8)."""
    raw = value.encode("utf-8")
    return bytes((len(raw),)) + raw


def deliver_payload(
    consumer_tag: bytes, delivery_tag: int, redelivered: bool, exchange: bytes, routing_key: bytes
) -> bytes:
    """Encoded basic.deliver arguments; the short strings come pre-encoded (length + bytes)."""
    return b"".join(
        (
            b"\x00\x3c\x00\x3c",
            consumer_tag,
            _deliver_tail.pack(delivery_tag, redelivered),
            exchange,
            routing_key,
        )
    )


def encode_method(method: base.Frame) -> bytes:
    """Encoded method index and arguments (pamqp's encoding, without its validation)."""
    out = [_method_index.pack(method.index)]
    bits = offset = 0
    in_bits = False
    for name in method.__slots__:
        data_type = method.amqp_type(name)
        value = getattr(method, name, None)
        if data_type == "bit":
            if not in_bits:
                bits = offset = 0
                in_bits = True
            bits |= bool(value) << offset
            offset += 1
            if offset == 8:
                out.append(bytes((bits,)))
                in_bits = False
            continue
        if in_bits:
            out.append(bytes((bits,)))
            in_bits = False
        if value is None:
            value = _EMPTY[data_type]
        out.append(encode.by_type(value, data_type))
    if in_bits:
        out.append(bytes((bits,)))
    return b"".join(out)


_EMPTY = {
    "shortstr": "",
    "longstr": "",
    "octet": 0,
    "short": 0,
    "long": 0,
    "longlong": 0,
    "table": {},
    "timestamp": 0,
}
