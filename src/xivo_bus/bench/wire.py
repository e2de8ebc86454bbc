"""A small, fast AMQP 0-9-1 client for load generation.

Stock clients spend far more CPU per message than a broker does, so the load generator
talks AMQP itself: publishes are pre-encoded once and written in batches, deliveries and
confirms are picked out of the byte stream with ``struct`` without building method
objects. Setup (handshake, declarations) goes through pamqp and our codec, where speed
does not matter.
"""

from __future__ import annotations

import asyncio
import struct
import time
from urllib.parse import unquote, urlparse

from pamqp import commands

from xivo_bus.amqp import frames

FRAME_MAX = 131072

_frame_header = struct.Struct(">BHI")
_index = struct.Struct(">I")
_ack_args = struct.Struct(">QB")
_u64 = struct.Struct(">Q")
_ack_frame_head = struct.Struct(">BHII")  # type, channel, size, method index

ACK_FRAME_SIZE = 4 + 9  # method index + delivery tag + bits
BASIC_NACK = (60 << 16) | 120


class AMQPError(Exception):
    """The broker closed the channel or connection, or answered unexpectedly."""


def parse_url(url: str) -> dict:
    """host, port, user, password and vhost of an ``amqp://`` URL."""
    parts = urlparse(url)
    if parts.scheme != "amqp":
        raise ValueError(f"not an amqp:// URL: {url}")
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    return {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 5672,
        "user": unquote(parts.username or "guest"),
        "password": unquote(parts.password or "guest"),
        "vhost": unquote(path) if path else "/",
    }


def ack_frame(channel: int, delivery_tag: int, multiple: bool) -> bytes:
    """A basic.ack frame, packed directly."""
    return (
        _ack_frame_head.pack(frames.FRAME_METHOD, channel, ACK_FRAME_SIZE, frames.BASIC_ACK)
        + _ack_args.pack(delivery_tag, multiple)
        + frames.FRAME_END_BYTE
    )


def _publish_method(exchange: str, routing_key: str) -> bytes:
    return frames.encode_method(
        frames.build(
            commands.Basic.Publish,
            ticket=0,
            exchange=exchange,
            routing_key=routing_key,
            mandatory=False,
            immediate=False,
        )
    )


def publish_frames(
    channel: int,
    exchange: str,
    routing_key: str,
    properties: bytes,
    body: bytes,
    frame_max: int = FRAME_MAX,
) -> bytes:
    """One complete publish (method, content header and body frames) as bytes, the body
    split into frames of at most ``frame_max`` bytes (what the broker tuned)."""
    method = _publish_method(exchange, routing_key)
    return b"".join(frames.content_frames(channel, method, properties, body, frame_max))


def publish_prefix(
    channel: int,
    exchange: str,
    routing_key: str,
    properties: bytes,
    size: int,
    frame_max: int = FRAME_MAX,
):
    """One publish of a ``size``-byte body up to the body itself: the method frame, the
    content header and the body frame's header. The body and a frame-end octet follow."""
    if not 0 < size <= frame_max - frames.FRAME_OVERHEAD:
        raise ValueError(f"message size {size} does not fit one body frame")
    whole = publish_frames(channel, exchange, routing_key, properties, bytes(size), frame_max)
    return whole[: -(size + 1)]  # all but the body and its frame end


class Client(asyncio.Protocol):
    """One AMQP connection with channel 1 open.

    The hot part is ``data_received``: it walks the frames, counts deliveries (and acks
    them when asked), counts publisher confirms and hands other methods to ``call``.
    Subclasses or owners set the ``on_*`` hooks.
    """

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._skip = 0  # bytes still to come of a body frame nobody reads
        self._replies: asyncio.Queue = asyncio.Queue()
        self._drained: asyncio.Future | None = None
        self._paused = False
        self.closed: asyncio.Future = self.loop.create_future()
        self.failure: AMQPError | None = None  # the broker closed the channel or connection
        self.frame_max = FRAME_MAX
        # Deliveries
        self.delivered = 0
        self.manual_ack = False
        self.ack_every = 1  # ack every delivery; N > 1 acks with multiple=True every N
        self._unacked_tag = 0  # the highest delivery tag seen
        self._tags: list[int] = []  # delivery tags of this read, in the order they came
        self._since_ack = 0
        self.want_bodies = False
        self.on_body = None  # called with the first 8 body bytes, when want_bodies
        self._await_body = False
        self.on_delivered = None  # called with the count of deliveries in one read
        # Publisher confirms
        self.confirmed = 0
        self.nacked = 0
        self._confirm_tag = 0  # every publish up to this tag is confirmed
        self._confirmed_above: set[int] = set()  # and these, one by one, above it
        self.on_confirm = None
        # connection.blocked from the broker (resource alarms): how often, how long
        self.blocked = 0
        self.blocked_s = 0.0
        self._blocked_since: float | None = None

    # -- connecting ---------------------------------------------------------------------

    @classmethod
    async def connect(cls, url: str, timeout: float = 30.0, **kwargs) -> Client:
        """Open a connection (PLAIN login, no heartbeats) and channel 1."""
        target = parse_url(url)
        loop = asyncio.get_running_loop()
        _, client = await asyncio.wait_for(
            loop.create_connection(lambda: cls(**kwargs), target["host"], target["port"]),
            timeout,
        )
        await asyncio.wait_for(client._handshake(target), timeout)
        return client

    async def _handshake(self, target: dict) -> None:
        self.transport.write(frames.PROTOCOL_HEADER)
        await self._expect(0, commands.Connection.Start)
        response = f"\0{target['user']}\0{target['password']}"
        self.send(
            0,
            commands.Connection.StartOk(
                client_properties={
                    "product": "xivo-bus bench",
                    "capabilities": {"connection.blocked": True},
                },
                mechanism="PLAIN",
                response=response,
                locale="en_US",
            ),
        )
        tune = await self._expect(0, commands.Connection.Tune)
        self.frame_max = min(tune.frame_max or FRAME_MAX, FRAME_MAX)
        self.send(
            0,
            commands.Connection.TuneOk(
                channel_max=tune.channel_max, frame_max=self.frame_max, heartbeat=0
            ),
        )
        self.send(0, commands.Connection.Open(virtual_host=target["vhost"]))
        await self._expect(0, commands.Connection.OpenOk)
        await self.call(commands.Channel.Open(), commands.Channel.OpenOk)

    async def close(self) -> None:
        """connection.close and wait for close-ok (or the socket closing)."""
        if self.transport is None or self.transport.is_closing():
            return
        self.send(0, commands.Connection.Close(reply_code=200, reply_text="bench done"))
        try:
            await asyncio.wait_for(asyncio.shield(self.closed), 5)
        except TimeoutError:
            pass
        self.transport.close()

    # -- requests -----------------------------------------------------------------------

    def send(self, channel: int, method) -> None:
        self.transport.write(frames.method_frame(channel, method))

    async def call(self, method, reply: type, channel: int = 1):
        """Send a synchronous method and wait for its reply."""
        self.send(channel, method)
        return await self._expect(channel, reply)

    async def _expect(self, channel: int, reply: type):
        got_channel, method = await self._replies.get()
        if isinstance(method, Exception):
            raise method
        if got_channel != channel or not isinstance(method, reply):
            raise AMQPError(f"expected {reply.name} on channel {channel}, got {method!r}")
        return method

    async def drain(self) -> None:
        """Wait while the socket's write buffer is over its high-water mark."""
        if self._paused:
            self._drained = self.loop.create_future()
            await self._drained

    # -- transport events ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        self._replies.put_nowait((-1, AMQPError(f"connection lost: {exc or 'closed'}")))
        self._wake()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake()

    def _wake(self) -> None:
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self._skip:
            # The rest of a large body frame: counted, never copied into the buffer.
            if len(data) <= self._skip:
                self._skip -= len(data)
                return
            data = data[self._skip :]
            self._skip = 0
        buffer = self._buffer
        if buffer:
            buffer += data
            data = buffer
        end_of_data = len(data)
        offset = 0
        delivered = 0
        tags = self._tags
        unpack_header = _frame_header.unpack_from
        while end_of_data - offset >= 7:
            frame_type, channel, size = unpack_header(data, offset)
            end = offset + 7 + size
            if end >= end_of_data:
                if frame_type == 3 and not self._await_body:
                    self._skip = end + 1 - end_of_data
                    offset = end_of_data
                break
            if frame_type == 1:
                index = _index.unpack_from(data, offset + 7)[0]
                if index == frames.BASIC_DELIVER:
                    delivered += 1
                    if self.manual_ack:
                        # The tags as they come: a broker with several consumers on one
                        # channel (GarageMQ) may send them out of order.
                        tags.append(_u64.unpack_from(data, offset + 12 + data[offset + 11])[0])
                    self._await_body = self.want_bodies
                elif index == frames.BASIC_ACK or index == BASIC_NACK:
                    self._on_confirm(index, *_ack_args.unpack_from(data, offset + 11))
                else:
                    self._method(channel, bytes(data[offset + 7 : end]))
            elif frame_type == 3 and self._await_body:
                self._await_body = False
                self.on_body(bytes(data[offset + 7 : offset + 15]))
            offset = end + 1
        if offset:
            rest = data[offset:]
            buffer.clear()
            buffer += rest
        elif data is not buffer:
            buffer += data
        if delivered:
            self.delivered += delivered
            if self.manual_ack:
                self._ack(delivered)
            if self.on_delivered is not None:
                self.on_delivered(delivered)

    def _ack(self, count: int) -> None:
        tags = self._tags
        if self.ack_every > 1:
            self._unacked_tag = max(self._unacked_tag, max(tags))
            tags.clear()
            self._since_ack += count
            if self._since_ack >= self.ack_every:
                self._since_ack = 0
                self.transport.write(ack_frame(1, self._unacked_tag, True))
            return
        # One ack per delivery, as most applications do; written with one call.
        self.transport.write(b"".join([ack_frame(1, tag, False) for tag in tags]))
        tags.clear()

    def flush_acks(self) -> None:
        """Ack whatever a multiple-ack consumer still holds."""
        if self.manual_ack and self.ack_every > 1 and self._since_ack:
            self._since_ack = 0
            self.transport.write(ack_frame(1, self._unacked_tag, True))

    def _on_confirm(self, index: int, tag: int, bits: int) -> None:
        """Count what a basic.ack or basic.nack newly settles. Brokers may confirm out of
        order (RabbitMQ confirms a persistent message a consumer has already acked before
        earlier ones are written): a single ack above the floor is remembered, a multiple
        one settles everything up to its tag not settled yet."""
        floor, above = self._confirm_tag, self._confirmed_above
        if tag <= floor:
            count = 0
        elif bits & 1:
            settled = [t for t in above if t <= tag] if above else ()
            above.difference_update(settled)
            count = tag - floor - len(settled)
            floor = tag
        elif tag in above:
            count = 0
        else:
            above.add(tag)
            count = 1
        while floor + 1 in above:
            floor += 1
            above.discard(floor)
        self._confirm_tag = floor
        if index == BASIC_NACK:
            self.nacked += count
        self.confirmed += count
        if self.on_confirm is not None:
            self.on_confirm()

    def _method(self, channel: int, payload: bytes) -> None:
        method = frames.decode_method(payload)
        if isinstance(method, commands.Connection.Blocked):
            self.blocked += 1
            self._blocked_since = time.monotonic()
            return
        if isinstance(method, commands.Connection.Unblocked):
            if self._blocked_since is not None:
                self.blocked_s += time.monotonic() - self._blocked_since
                self._blocked_since = None
            return
        if isinstance(method, commands.Connection.CloseOk):
            self.transport.close()
            return
        if isinstance(method, (commands.Connection.Close, commands.Channel.Close)):
            error = AMQPError(f"{method.reply_code} {method.reply_text}")
            self.failure = self.failure or error
            if isinstance(method, commands.Connection.Close):
                self.send(0, commands.Connection.CloseOk())
                self.transport.close()
            self._replies.put_nowait((channel, error))
            return
        self._replies.put_nowait((channel, method))
