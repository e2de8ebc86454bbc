"""One client connection: handshake, tune, heartbeats, channel multiplexing, write buffering.

This is the only place where an AMQP error becomes ``channel.close`` or
``connection.close``. Built on ``asyncio.Protocol``: ``data_received`` feeds the sans-I/O
frame reader, replies and deliveries are buffered and written once per loop iteration.
"""

from __future__ import annotations

import asyncio
import logging
import platform
from typing import TYPE_CHECKING

from pamqp import commands

from xivo_bus import __version__
from xivo_bus.amqp import errors, frames
from xivo_bus.broker.auth import MECHANISMS, AuthenticationFailed
from xivo_bus.broker.channel import Channel

if TYPE_CHECKING:
    from xivo_bus.broker.message import Message
    from xivo_bus.broker.server import Broker

log = logging.getLogger("xivo_bus.broker")

CHANNEL_MAX = 2047
FRAME_MAX = 131072
HEARTBEAT = 60
HANDSHAKE_TIMEOUT = 10.0
CLOSE_OK_TIMEOUT = 1.0
# A client stops being read while this many of its store writes wait for the disk.
MAX_UNCOMMITTED = 20_000
# Deliveries stop being handed to a connection whose unsent output exceeds this; they
# resume when the socket drains (RabbitMQ's credit flow plays the same part).
OUTPUT_LIMIT = 1 << 20

CAPABILITIES = {
    "publisher_confirms": True,
    "exchange_exchange_bindings": True,
    "basic.nack": True,
    "consumer_cancel_notify": True,
    "connection.blocked": True,
    "consumer_priorities": True,
    "authentication_failure_close": True,
    "per_consumer_qos": True,
    "direct_reply_to": True,
}


def server_properties() -> dict:
    return {
        "capabilities": CAPABILITIES,
        "cluster_name": f"xivo-bus@{platform.node()}",
        "copyright": "Copyright (c) the xivo-bus developers",
        "information": "Licensed under the GPL. See https://pypi.org/project/xivo-bus/",
        "platform": f"Python {platform.python_version()}",
        "product": "xivo-bus",
        "version": __version__,
    }


# RabbitMQ's names for the handshake states, used in its error texts.
_STATE_NAMES = {"start": "starting", "secure": "securing", "tune": "tuning", "open": "opening"}


class Connection(asyncio.Protocol):
    def __init__(self, broker: Broker):
        self.broker = broker
        self.loop = asyncio.get_running_loop()
        self.reader = frames.FrameReader()
        self.state = "header"  # header, start, secure, tune, open, running, closing, closed
        self.channels: dict[int, Channel] = {}
        self.exclusive_queues: list = []
        self.client_properties: dict = {}
        self.vhost = None
        self.user = None
        self.channel_max = CHANNEL_MAX
        self.frame_max = FRAME_MAX
        self.heartbeat = 0
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self._out: list[bytes] = []
        self._out_size = 0
        self._flush_handle: asyncio.Handle | None = None
        self._paused = False
        self._starved = False
        self._confirming: dict[Channel, None] = {}
        self._barrier = 0  # store write that must be on disk before more output
        self._delivery_barrier = 0  # the same, for delivery marks
        self._reading_paused = False
        self._blocked = False  # not read while a resource alarm is on
        self._timer: asyncio.TimerHandle | None = None
        self._last_recv = self._last_send = self.loop.time()

    # -- transport events -------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer_host = peer[0] if peer else None
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "unix"
        self.broker.connections.add(self)
        self._timer = self.loop.call_later(HANDSHAKE_TIMEOUT, self._handshake_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.state != "closed":
            log.info("connection %s lost%s", self.peer, f": {exc}" if exc else "")
        self._teardown()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._resume_deliveries()

    @property
    def writable(self) -> bool:
        if self._paused or self._out_size > OUTPUT_LIMIT:
            self._starved = True
            return False
        return True

    def data_received(self, data: bytes) -> None:
        self._last_recv = self.loop.time()
        if self.state == "closed":
            return
        reader = self.reader
        reader.feed(data)
        while self.state != "closed":
            try:
                event = reader.next_event()
            except errors.ConnectionError as error:
                self._fail(error, framing=True)
                break
            if event is None:
                break
            try:
                self._handle(event)
            except errors.ConnectionError as error:
                self._fail(error)
            except Exception:  # a bug of ours must not take the broker down
                log.exception("internal error on connection %s", self.peer)
                self._fail(errors.ConnectionError(errors.INTERNAL_ERROR, "internal error"))
        if self._confirming:
            for channel in self._confirming:
                channel.send_confirms()
            self._confirming.clear()
        store = self.broker.store
        if (
            store is not None
            and self._barrier - store.committed > MAX_UNCOMMITTED
            and self.state == "running"
        ):
            # The disk is behind: stop reading this client until it catches up.
            self._reading_paused = True
            self.transport.pause_reading()
            store.notify(self)

    # -- output -----------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        self._out.append(data)
        self._out_size += len(data)
        if self._flush_handle is None:
            self._flush_handle = self.loop.call_soon(self._flush)

    def send_method(self, channel: int, method) -> None:
        self.write(frames.method_frame(channel, method))

    def send_content(self, channel: int, method_payload: bytes, message: Message) -> None:
        out = frames.content_frames(
            channel, method_payload, message.raw_properties, message.body, self.frame_max
        )
        self._out += out
        self._out_size += len(message.body) + 64
        if self._flush_handle is None:
            self._flush_handle = self.loop.call_soon(self._flush)

    def hold_output_until(self, write: int) -> None:
        """Send nothing more until store write ``write`` (a message) is on disk: what
        follows includes its confirm. 0: no wait."""
        if write > self._barrier:
            self._barrier = write

    def hold_delivery_until(self, write: int) -> None:
        """Send nothing more until store write ``write`` (a delivery mark) is on disk,
        unless the store is failing: consumers then go on (as under RabbitMQ's disk
        alarm), at the risk of a crash re-delivering without the flag."""
        if write > self._delivery_barrier:
            self._delivery_barrier = write

    def store_committed(self) -> None:
        """The store committed writes: send what waited for them, read again."""
        if self._out and self._flush_handle is None:
            self._flush()
        if self._reading_paused and self.transport is not None:
            self._reading_paused = False
            if not self._blocked:
                self.transport.resume_reading()

    def _flush(self, force: bool = False) -> None:
        self._flush_handle = None
        store = self.broker.store
        if (
            not force
            and store is not None
            and (
                self._barrier > store.committed
                or (self._delivery_barrier > store.committed and store.failed is None)
            )
        ):
            store.notify(self)  # the output waits for the disk
            return
        if self._out and self.transport is not None and not self.transport.is_closing():
            self.transport.writelines(self._out)
            self._last_send = self.loop.time()
        self._out = []
        self._out_size = 0
        if self._starved and not self._paused:
            self._resume_deliveries()

    def _resume_deliveries(self) -> None:
        self._starved = False
        for channel in list(self.channels.values()):
            for consumer in list(channel.consumers.values()):
                consumer.queue.dispatch()

    def confirms_pending(self, channel: Channel) -> None:
        self._confirming[channel] = None

    def client_capability(self, name: str) -> bool:
        capabilities = self.client_properties.get("capabilities") or {}
        return bool(capabilities.get(name))

    # -- frames -----------------------------------------------------------------------

    def _handle(self, event: frames.Event) -> None:
        if isinstance(event, frames.ContentFrame):
            channel = self.channels.get(event.channel)
            if channel is None:
                raise errors.ConnectionError(
                    errors.CHANNEL_ERROR, "expected 'channel.open'", 60, 40
                )
            if channel.closing or self.state != "running":
                return
            try:
                channel.on_publish(event.method, event.properties, event.body)
                if self.broker.alarms.reason is not None and not self._blocked:
                    self._block(self.broker.alarms.reason)
            except errors.ChannelError as error:
                error.class_id, error.method_id = 60, 40
                self._close_channel(channel, error)
            except errors.ConnectionError as error:
                error.class_id, error.method_id = 60, 40
                self._fail(error)
        elif isinstance(event, frames.MethodFrame):
            if event.channel == 0:
                self._connection_method(event.method)
            elif self.state == "running":
                self._channel_method(event.channel, event.method)
            elif self.state != "closing":
                octets = frames.erlang_binary(frames.encode_method(event.method))
                raise errors.ConnectionError(
                    errors.UNEXPECTED_FRAME, f"type 1, all octets = {octets}"
                )
        elif isinstance(event, frames.ProtocolHeader):
            if not event.valid:
                self.write(frames.PROTOCOL_HEADER)
                self._flush(force=True)
                self._close_transport()
                return
            self.state = "start"
            self.send_method(
                0,
                commands.Connection.Start(
                    server_properties=server_properties(),
                    mechanisms=" ".join(MECHANISMS),
                    locales="en_US",
                ),
            )
        # heartbeats only refresh _last_recv

    def _connection_method(self, method) -> None:
        state = self.state
        if isinstance(method, commands.Connection.Close):
            self.send_method(0, commands.Connection.CloseOk())
            self._flush(force=True)
            self._teardown()
            self._close_transport()
            return
        if isinstance(method, commands.Connection.CloseOk):
            if state == "closing":
                self._teardown()
                self._close_transport()
            return
        if state == "closing":
            return
        if state == "start" and isinstance(method, commands.Connection.StartOk):
            self._start_ok(method)
        elif state == "tune" and isinstance(method, commands.Connection.TuneOk):
            self._tune_ok(method)
        elif state == "open" and isinstance(method, commands.Connection.Open):
            self._open(method)
        elif not isinstance(method, (commands.Connection.StartOk, commands.Connection.SecureOk)):
            raise errors.ConnectionError(
                errors.CHANNEL_ERROR,
                f"unexpected method in connection state {_STATE_NAMES.get(state, state)}",
                *frames.method_ids(method),
            )

    def _start_ok(self, method: commands.Connection.StartOk) -> None:
        self.client_properties = method.client_properties or {}
        response = method.response
        if isinstance(response, str):
            response = response.encode("utf-8")
        mechanism = method.mechanism
        try:
            self.user = self.broker.users.authenticate(mechanism, response, self.peer_host)
        except AuthenticationFailed as failure:
            log.warning("connection %s: login refused: %s", self.peer, failure.reason)
            # Like RabbitMQ: a refused login is explained to clients that asked for it;
            # an unknown mechanism or a malformed response only gets the socket closed.
            if not failure.refused or not self.client_capability("authentication_failure_close"):
                self.state = "closed"
                self._close_transport()
                return
            raise errors.ConnectionError(
                errors.ACCESS_REFUSED,
                f"Login was refused using authentication mechanism {mechanism}. "
                "For details see the broker logfile.",
            ) from None
        self.state = "tune"
        self.send_method(
            0,
            commands.Connection.Tune(
                channel_max=CHANNEL_MAX, frame_max=FRAME_MAX, heartbeat=HEARTBEAT
            ),
        )

    def _tune_ok(self, method: commands.Connection.TuneOk) -> None:
        frame_max = method.frame_max or FRAME_MAX
        if frame_max < frames.FRAME_MIN_SIZE:
            raise errors.ConnectionError(
                errors.NOT_ALLOWED,
                f"frame_max={frame_max} < {frames.FRAME_MIN_SIZE} min size",
                10,
                31,
            )
        if frame_max > FRAME_MAX:
            raise errors.ConnectionError(
                errors.NOT_ALLOWED, f"frame_max={frame_max} > {FRAME_MAX} max size", 10, 31
            )
        channel_max = method.channel_max or CHANNEL_MAX
        if channel_max > CHANNEL_MAX:
            raise errors.ConnectionError(
                errors.NOT_ALLOWED,
                f"negotiated channel_max = {channel_max} is higher than the maximum allowed "
                f"value ({CHANNEL_MAX})",
                10,
                31,
            )
        self.channel_max = channel_max
        self.frame_max = frame_max
        self.reader.frame_max = frame_max
        self.heartbeat = method.heartbeat
        self.state = "open"

    def _open(self, method: commands.Connection.Open) -> None:
        vhost = self.broker.vhosts.get(method.virtual_host)
        if vhost is None or method.virtual_host not in self.user.vhosts:
            raise errors.ConnectionError(
                errors.NOT_ALLOWED, f"vhost {method.virtual_host} not found", 10, 40
            )
        self.vhost = vhost
        self.state = "running"
        self._cancel_timer()
        if self.heartbeat:
            self._timer = self.loop.call_later(self.heartbeat / 2, self._heartbeat_tick)
        self.send_method(0, commands.Connection.OpenOk())
        log.debug("connection %s open on vhost %s", self.peer, vhost.name)

    def _channel_method(self, number: int, method) -> None:
        channel = self.channels.get(number)
        if channel is None:
            if isinstance(method, commands.Channel.Open):
                # RabbitMQ limits how many channels are open, not their numbers.
                if len(self.channels) >= self.channel_max:
                    raise errors.ConnectionError(
                        errors.NOT_ALLOWED,
                        f"number of channels opened ({len(self.channels)}) has reached the "
                        f"negotiated channel_max ({self.channel_max})",
                    )
                self.channels[number] = Channel(self, number)
                self.send_method(number, frames.build(commands.Channel.OpenOk, channel_id=""))
                return
            raise errors.ConnectionError(
                errors.CHANNEL_ERROR, "expected 'channel.open'", *frames.method_ids(method)
            )
        if channel.closing:
            # After we sent channel.close, everything but close-ok (or a crossing
            # channel.close) is ignored, as the spec says.
            if isinstance(method, commands.Channel.CloseOk):
                del self.channels[number]
            elif isinstance(method, commands.Channel.Close):
                self.send_method(number, commands.Channel.CloseOk())
            return
        if isinstance(method, commands.Channel.Close):
            channel.release()
            del self.channels[number]
            self.send_method(number, commands.Channel.CloseOk())
            return
        if isinstance(method, commands.Channel.Open):
            raise errors.ConnectionError(errors.CHANNEL_ERROR, "second 'channel.open' seen", 20, 10)
        try:
            channel.handle(method)
        except errors.ChannelError as error:
            if not error.class_id:
                error.class_id, error.method_id = frames.method_ids(method)
            self._close_channel(channel, error)
        except errors.ConnectionError as error:
            if not error.class_id:
                error.class_id, error.method_id = frames.method_ids(method)
            raise

    # -- closing ----------------------------------------------------------------------

    def _close_channel(self, channel: Channel, error: errors.ChannelError) -> None:
        log.info("channel %s on %s closed: %s", channel.number, self.peer, error)
        channel.release()
        self.send_method(
            channel.number,
            commands.Channel.Close(
                reply_code=error.reply_code,
                reply_text=error.reply_text,
                class_id=error.class_id,
                method_id=error.method_id,
            ),
        )

    def _fail(self, error: errors.ConnectionError, framing: bool = False) -> None:
        """Close the connection with an error. After a framing error the byte stream
        cannot be trusted, so the socket closes as soon as the close is written."""
        if self.state in ("closing", "closed"):
            self._close_transport()
            return
        log.info("connection %s closed: %s", self.peer, error)
        self.close(error.reply_code, error.reply_text, error.class_id, error.method_id)
        if framing:
            self._flush(force=True)
            self._close_transport()

    def close(self, code: int, text: str, class_id: int = 0, method_id: int = 0) -> None:
        """Send connection.close, release everything, and await close-ok briefly."""
        if self.state in ("closing", "closed"):
            return
        self._release()
        self.state = "closing"
        self.send_method(
            0,
            commands.Connection.Close(
                reply_code=code, reply_text=text, class_id=class_id, method_id=method_id
            ),
        )
        self._cancel_timer()
        self._timer = self.loop.call_later(CLOSE_OK_TIMEOUT, self._close_transport)

    def _release(self) -> None:
        for channel in list(self.channels.values()):
            channel.release()
        self.channels.clear()
        self._confirming.clear()
        for queue in list(self.exclusive_queues):
            queue.vhost.delete_queue(queue)

    def _teardown(self) -> None:
        if self.state != "closed":
            self._release()
            self.state = "closed"
        self._cancel_timer()
        self.broker.connections.discard(self)

    def _close_transport(self) -> None:
        self._teardown()
        if self.transport is not None and not self.transport.is_closing():
            if self._out:
                self._flush(force=True)
            self.transport.close()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _handshake_timeout(self) -> None:
        self._timer = None
        log.info("connection %s: handshake timeout", self.peer)
        self.state = "closed"
        self._close_transport()

    def _heartbeat_tick(self) -> None:
        now = self.loop.time()
        interval = self.heartbeat
        if now - self._last_recv > 2 * interval:
            log.info(
                "connection %s: missed heartbeats from client, timeout: %ss", self.peer, interval
            )
            self.abort()
            return
        if now - self._last_send >= interval / 2 and not self._out:
            self.write(frames.HEARTBEAT_FRAME)
        self._timer = self.loop.call_later(interval / 2, self._heartbeat_tick)

    def pause_reading(self) -> None:
        """Stop reading the client (at shutdown, while the store writes its last)."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def _block(self, reason: str) -> None:
        """A resource alarm is on and this client publishes: stop reading it."""
        self._blocked = True
        self.set_blocked(reason)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def set_blocked(self, reason: str | None) -> None:
        """Tell a client that understands connection.blocked why publishing stalls (a
        resource alarm), and when it may go on; read a blocked client again when the
        alarm clears. The notice is written at once, not held behind output that waits
        for the disk."""
        if reason is None and self._blocked:
            self._blocked = False
            if not self._reading_paused:
                self.resume_reading()
        if self.state != "running" or not self.client_capability("connection.blocked"):
            return
        if reason is None:
            frame = frames.method_frame(0, commands.Connection.Unblocked())
        else:
            frame = frames.method_frame(0, commands.Connection.Blocked(reason=reason[:255]))
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(frame)

    def abort(self) -> None:
        self._teardown()
        if self.transport is not None:
            self.transport.abort()
