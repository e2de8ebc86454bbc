"""One client connection: the handshake (``state``), channel multiplexing, heartbeats,
and the one place where an AMQP error becomes ``channel.close`` or ``connection.close``.

Built on ``asyncio.Protocol``: ``data_received`` feeds the sans-I/O frame reader and hands
each frame to the connection (channel 0) or to its channel; what goes out, and when the
client is read, is the ``Output``'s business.
"""

from __future__ import annotations

import asyncio
import logging
import platform
import time

from pamqp import commands

from xivo_bus import __version__
from xivo_bus.amqp import errors, frames
from xivo_bus.broker.auth import EXTERNAL, MECHANISMS, AuthenticationFailed, authenticate
from xivo_bus.broker.listeners import certificate_user
from xivo_bus.broker.model import wording
from xivo_bus.broker.model.queue import Queue
from xivo_bus.broker.model.vhost import VHost
from xivo_bus.broker.session.channel import Channel
from xivo_bus.broker.session.output import (
    ALARM,
    AUTH_FAILURE,
    DISK,
    FLOW,
    SHUTDOWN,
    TURN,
    Output,
)
from xivo_bus.broker.session.server_state import ServerState
from xivo_bus.broker.session.state import ConnectionState, Event, State
from xivo_bus.broker.users import User

log = logging.getLogger("xivo_bus.broker")

_RUNNING, _CLOSING, _CLOSED = State.RUNNING, State.CLOSING, State.CLOSED  # read per frame

CLOSE_OK_TIMEOUT = 1.0
# frames handled in one turn of the event loop before the others get theirs (~0.5 ms)
TURN_EVENTS = 64
# Credit flow, as RabbitMQ's: a connection that publishes to a queue that is behind waits
# one more turn of the loop between its batches, so that the others go first; when that
# queue has consumers at work (who do not keep up), it is not read until they have caught
# up, or for this long at most (seconds: a client consuming what it publishes must not
# wait on itself for long)
FLOW_WAIT = 0.1

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


class Connection(asyncio.Protocol):
    def __init__(self, server: ServerState, external: bool = False):
        self.server = server
        # a TLS listener that checks client certificates also offers SASL EXTERNAL
        self.mechanisms = (*MECHANISMS, EXTERNAL) if external else MECHANISMS
        self.loop = asyncio.get_running_loop()
        self.reader = frames.FrameReader()
        self.reader.max_body_size = server.max_message_size
        self.state = ConnectionState()
        self.tuning = tuning = server.tuning
        self.output = Output(
            self.loop, server.store, self._resume_deliveries, self._committed, tuning.frame_max
        )
        self.channels: dict[int, Channel] = {}
        self.exclusive_queues: list[Queue] = []
        self.client_properties: dict = {}
        self.capabilities: dict = {}  # the client's, from client_properties
        self.vhost: VHost | None = None
        self.user: User | None = None
        self.channel_max = tuning.channel_max
        self.heartbeat = 0
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.peer_host: str | None = None
        self.connected_at = 0.0  # seconds since the epoch
        self.auth_mechanism = ""
        self.frame_max = tuning.frame_max
        self._confirming: dict[Channel, None] = {}  # channels with confirms due
        self._awaiting_disk: dict[Channel, None] = {}  # channels with confirms to write
        # credit flow: this turn, the last one published to a queue that is behind
        self._outran = self._in_flow = False
        self._flow_timer: asyncio.TimerHandle | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._last_recv = self.loop.time()

    # -- transport events -------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.transport = self.output.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer_host = peer[0] if peer else None
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "unix"
        self.server.connections.add(self)
        self.server.connections_opened += 1
        self.connected_at = time.time()
        self._timer = self.loop.call_later(
            self.tuning.handshake_timeout, self._guarded, self._handshake_timeout
        )

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.state.closed:
            log.info("connection %s lost%s", self.peer, f": {exc}" if exc else "")
        try:
            self._teardown()
        except Exception:  # a bug of ours: the connection must still be forgotten
            log.exception("internal error on connection %s while tearing it down", self.peer)
            self._drop()

    def pause_writing(self) -> None:
        self.output.pause_writing()

    def resume_writing(self) -> None:
        self.output.resume_writing()

    def data_received(self, data: bytes) -> None:
        self._last_recv = self.loop.time()
        state = self.state
        if state.closed:
            return
        self.reader.feed(data)
        output = self.output
        if not (output.paused_for(TURN) or output.paused_for(FLOW)):
            self._process()

    def _process(self) -> None:
        """Handle what the client sent, at most ``TURN_EVENTS`` frames at a time: a client
        that floods does not hold the event loop, the others get their turn between its
        batches (its socket is not read meanwhile)."""
        state = self.state
        if state.closed:
            return
        reader = self.reader
        budget = TURN_EVENTS
        self._outran = False
        while state.state is not _CLOSED:
            if not budget:
                self.output.pause_reading(TURN)
                self.loop.call_soon(self._one_turn_later if self._outran else self._process)
                break
            budget -= 1
            try:
                event = reader.next_event()
            except errors.ConnectionError as error:
                self._fail(error, framing=True)
                break
            if event is None:
                self.output.resume_reading(TURN)
                break
            try:
                self._handle(event)
            except errors.ConnectionError as error:
                self._fail(error)
            except Exception:  # a bug of ours must not take the broker down
                self.internal_error()
            if self._flow_timer is not None:
                break  # waits for a queue's consumers to catch up
        self._in_flow = self._outran
        try:
            if self._confirming:
                self._send_confirms()
            if state.state is _RUNNING:
                self.output.throttle()  # the disk may be behind this client's writes
                # a message still arriving counts as publishing: under an alarm its sender
                # is the one that stops being read
                reason = self.server.alarms.reason
                if reason is not None and self.reader.receiving_content:
                    if not self.output.paused_for(ALARM):
                        self._block(reason)
        except Exception:
            self.internal_error()

    # -- what channels need (session.channel.ChannelConnection) -----------------------

    @property
    def flow_state(self) -> str:
        """As RabbitMQ shows a connection: ``blocked`` under a resource alarm, ``flow``
        while it outruns the broker (it publishes to queues that are behind, its turn is
        over, or its writes wait for the disk), ``running`` otherwise."""
        output = self.output
        if output.paused_for(ALARM):
            return "blocked"
        if (
            self._in_flow
            or output.paused_for(FLOW)
            or output.paused_for(TURN)
            or output.paused_for(DISK)
        ):
            return "flow"
        return "running"

    def outran_queue(self, queue: Queue) -> None:
        self._outran = True
        if (
            self._flow_timer is None
            and queue.consumers
            and queue.consumers_progressing()
            and not self.state.closed
        ):
            self.output.pause_reading(FLOW)
            self._flow_timer = self.loop.call_later(FLOW_WAIT, self.queue_caught_up)
            queue.wait_until_caught_up(self)

    def queue_caught_up(self) -> None:
        """The queue this connection waited for caught up (or the wait is over): read
        it again, starting with what it had sent meanwhile."""
        timer, self._flow_timer = self._flow_timer, None
        if timer is None:
            return
        timer.cancel()
        if self.state.closed:
            return
        self.output.resume_reading(FLOW)
        # the turn it stopped in may have been one that TURN had scheduled: the next one
        # takes that reason away once all it sent is handled
        self.loop.call_soon(self._process)

    def _one_turn_later(self) -> None:
        self.loop.call_soon(self._process)

    @property
    def user_name(self) -> str:
        return self.user.name

    @property
    def max_message_size(self) -> int:
        return self.server.max_message_size

    def send_method(self, channel: int, method) -> None:
        self.output.write(frames.method_frame(channel, method))

    def confirms_pending(self, channel: Channel) -> None:
        """``channel`` published in confirm mode: its confirms go at the end of this
        turn (``_process``)."""
        self._confirming[channel] = None

    def confirms_settled(self, channel: Channel) -> None:
        """Confirms of ``channel`` became due in another connection's turn (a consumer
        acked what it published): sent soon."""
        if not self._confirming:
            self.loop.call_soon(self._send_confirms)
        self._confirming[channel] = None

    def _send_confirms(self) -> None:
        if not self._confirming:
            return
        confirming, self._confirming = self._confirming, {}
        for channel in confirming:
            if channel.send_confirms():
                self._awaiting_disk[channel] = None
        if self._awaiting_disk:
            self.output.wait_for_commit()

    def _committed(self) -> None:
        """The store committed writes: the confirms that waited for them are due."""
        if self._awaiting_disk:
            awaiting, self._awaiting_disk = self._awaiting_disk, {}
            self._confirming.update(awaiting)
            self._send_confirms()

    def client_capability(self, name: str) -> bool:
        return bool(self.capabilities.get(name))

    def close_channel(self, channel: Channel, error: errors.ChannelError) -> None:
        """Close one channel with an error (``channel.close``); the rest go on."""
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

    # -- what the vhost needs (roles.QueueOwner) --------------------------------------

    def exclusive_queue_declared(self, queue: Queue) -> None:
        self.exclusive_queues.append(queue)

    def exclusive_queue_deleted(self, queue: Queue) -> None:
        try:
            self.exclusive_queues.remove(queue)
        except ValueError:
            pass

    def _resume_deliveries(self) -> None:
        """The output drained: queues may hand this connection's consumers more."""
        try:
            for channel in list(self.channels.values()):
                for consumer in list(channel.consumers.values()):
                    consumer.queue.dispatch()
        except Exception:  # called back by the output (a loop callback, a drained socket)
            self.internal_error()

    # -- frames -----------------------------------------------------------------------

    def _handle(self, event: frames.Event) -> None:
        if isinstance(event, frames.ContentFrame):
            channel = self.channels.get(event.channel)
            if channel is None:
                raise wording.channel_expected(60, 40)
            if channel.closing or self.state.state is not _RUNNING:
                return
            try:
                channel.on_publish(event.method, event.properties, event.body)
                reason = self.server.alarms.reason
                if reason is not None and not self.output.paused_for(ALARM):
                    self._block(reason)
            except errors.ChannelError as error:
                error.class_id, error.method_id = 60, 40
                self.close_channel(channel, error)
            except errors.ConnectionError as error:
                error.class_id, error.method_id = 60, 40
                self._fail(error)
        elif isinstance(event, frames.OversizedContent):
            channel = self.channels.get(event.channel)
            if channel is None:
                raise wording.channel_expected(60, 40)
            if not channel.closing and self.state.state is _RUNNING:
                error = wording.message_too_large(event.body_size, self.server.max_message_size)
                error.class_id, error.method_id = 60, 40
                self.close_channel(channel, error)
        elif isinstance(event, frames.MethodFrame):
            if event.channel == 0:
                self._connection_method(event.method)
            elif self.state.state is _RUNNING:
                self._channel_method(event.channel, event.method)
            elif self.state.state is not _CLOSING:
                raise wording.unexpected_frame(frames.erlang_binary(event.payload))
        elif isinstance(event, frames.ProtocolHeader):
            if not event.valid:
                self.output.write(frames.PROTOCOL_HEADER)
                self.output.flush(force=True)
                self._close_transport()
                return
            self.state.advance(Event.HEADER)
            self.send_method(
                0,
                commands.Connection.Start(
                    server_properties=server_properties(),
                    mechanisms=" ".join(self.mechanisms),
                    locales="en_US",
                ),
            )
        # heartbeats only refresh _last_recv

    def _connection_method(self, method) -> None:
        state = self.state.state
        if isinstance(method, commands.Connection.Close):
            self.send_method(0, commands.Connection.CloseOk())
            self.output.flush(force=True)
            self._close_transport()
            return
        if isinstance(method, commands.Connection.CloseOk):
            if state is _CLOSING:
                self._close_transport()
            return
        if state is _CLOSING:
            return
        if isinstance(method, commands.Connection.UpdateSecret) and state is _RUNNING:
            # As RabbitMQ 3.10 with its internal backend: the new secret is taken without
            # a check (it is meant for token backends); the login stays the same.
            log.info("connection %s: secret updated (%s)", self.peer, method.reason)
            self.send_method(0, commands.Connection.UpdateSecretOk())
            return
        event = self.state.expects(method)
        if event is Event.START_OK:
            self._start_ok(method)
        elif event is Event.TUNE_OK:
            self._tune_ok(method)
        elif event is Event.OPEN:
            self._open(method)
        elif not isinstance(method, (commands.Connection.StartOk, commands.Connection.SecureOk)):
            raise wording.unexpected_in_state(state.value, *frames.method_ids(method))

    def _start_ok(self, method: commands.Connection.StartOk) -> None:
        properties = method.client_properties
        self.client_properties = properties if isinstance(properties, dict) else {}
        # as RabbitMQ: capabilities that are not a table are no capabilities
        capabilities = self.client_properties.get("capabilities")
        self.capabilities = capabilities if isinstance(capabilities, dict) else {}
        response = method.response
        if isinstance(response, str):
            response = response.encode("utf-8")
        mechanism = method.mechanism
        if mechanism not in self.mechanisms:
            mechanism = f"{mechanism} (not offered here)"  # refused below, as unknown
        try:
            self.user = authenticate(
                self.server.users, mechanism, response, self.peer_host, self._certificate_user()
            )
        except AuthenticationFailed as failure:
            log.warning("connection %s: login refused: %s", self.peer, failure.reason)
            # Answered a little later, the client unread meanwhile: guessing is slow.
            self.output.pause_reading(AUTH_FAILURE)
            self._cancel_timer()
            self._timer = self.loop.call_later(
                self.tuning.auth_failure_delay,
                self._guarded,
                self._refuse_login,
                failure,
                mechanism,
            )
            return
        self.auth_mechanism = mechanism
        self.state.advance(Event.START_OK)
        self.send_method(
            0,
            commands.Connection.Tune(
                channel_max=self.tuning.channel_max,
                frame_max=self.tuning.frame_max,
                heartbeat=self.tuning.heartbeat,
            ),
        )

    def _refuse_login(self, failure: AuthenticationFailed, mechanism: str) -> None:
        """Like RabbitMQ: a refused login is explained to clients that asked for it; an
        unknown mechanism or a malformed response only gets the socket closed."""
        self._timer = None
        self.output.resume_reading(AUTH_FAILURE)
        if not failure.refused or not self.client_capability("authentication_failure_close"):
            self._close_transport()
            return
        self._fail(wording.login_refused(mechanism))

    def _certificate_user(self) -> str | None:
        tls = self.transport.get_extra_info("ssl_object") if self.transport else None
        if tls is None:
            return None
        return certificate_user(tls.getpeercert(), self.tuning.cert_login_from)

    def _tune_ok(self, method: commands.Connection.TuneOk) -> None:
        tuning = self.tuning
        frame_max = method.frame_max or tuning.frame_max
        if frame_max < frames.FRAME_MIN_SIZE:
            raise wording.frame_max_too_small(frame_max, frames.FRAME_MIN_SIZE)
        if frame_max > tuning.frame_max:
            raise wording.frame_max_too_large(frame_max, tuning.frame_max)
        channel_max = method.channel_max or tuning.channel_max
        if channel_max > tuning.channel_max:
            raise wording.channel_max_too_large(channel_max, tuning.channel_max)
        self.channel_max = channel_max
        self.frame_max = self.reader.frame_max = frame_max
        self.output.tuned(frame_max)
        self.heartbeat = method.heartbeat
        self.state.advance(Event.TUNE_OK)

    def _open(self, method: commands.Connection.Open) -> None:
        vhost = self.server.vhosts.get(method.virtual_host)
        if vhost is None:
            raise wording.vhost_not_found(method.virtual_host)
        user = self.user
        # in RabbitMQ's order: the vhost's connection limit, the user's, then access
        limit = vhost.limits.get("max-connections", -1)
        if limit >= 0 and self._count(lambda other: other.vhost is vhost) >= limit:
            raise wording.vhost_connection_limit(vhost.name, user.name, limit)
        limit = user.limits.get("max-connections", -1)
        if limit >= 0 and self._count(lambda other: other.user is user) >= limit:
            raise wording.user_connection_limit(user.name, limit)
        if vhost.name not in self.user.permissions:
            raise wording.vhost_access_refused(vhost.name, self.user.name)
        self.vhost = vhost
        self.state.advance(Event.OPEN)
        self._cancel_timer()
        if self.heartbeat:
            self._timer = self.loop.call_later(
                self.heartbeat / 2, self._guarded, self._heartbeat_tick
            )
        self.send_method(0, commands.Connection.OpenOk())
        log.debug("connection %s open on vhost %s", self.peer, vhost.name)

    def _user_channels(self) -> int:
        user = self.user
        return sum(len(other.channels) for other in self.server.connections if other.user is user)

    def _count(self, which) -> int:
        """Open connections (this one left out) that ``which`` picks."""
        return sum(
            1
            for other in self.server.connections
            if other is not self and other.state.state is _RUNNING and which(other)
        )

    def _channel_method(self, number: int, method) -> None:
        channel = self.channels.get(number)
        if channel is None:
            if isinstance(method, commands.Channel.Open):
                # RabbitMQ limits how many channels are open, not their numbers.
                if len(self.channels) >= self.channel_max:
                    raise wording.too_many_channels(len(self.channels), self.channel_max)
                limit = self.user.limits.get("max-channels", -1)
                if limit >= 0 and self._user_channels() >= limit:
                    raise wording.user_channel_limit(self.user.name, limit)
                self.channels[number] = Channel(self, number)
                self.server.channels_opened += 1
                self.send_method(number, frames.build(commands.Channel.OpenOk, channel_id=""))
                return
            raise wording.channel_expected(*frames.method_ids(method))
        if channel.closing:
            # After we sent channel.close, everything but close-ok (or a crossing
            # channel.close) is ignored, as the spec says.
            if isinstance(method, commands.Channel.CloseOk):
                self._forget_channel(number)
            elif isinstance(method, commands.Channel.Close):
                self.send_method(number, commands.Channel.CloseOk())
            return
        if isinstance(method, commands.Channel.Close):
            channel.release()
            self._forget_channel(number)
            self.send_method(number, commands.Channel.CloseOk())
            return
        if isinstance(method, commands.Channel.Open):
            raise wording.second_channel_open()
        try:
            channel.handle(method)
        except errors.ChannelError as error:
            if not error.class_id:
                error.class_id, error.method_id = frames.method_ids(method)
            self.close_channel(channel, error)
        except errors.ConnectionError as error:
            if not error.class_id:
                error.class_id, error.method_id = frames.method_ids(method)
            raise

    # -- closing ----------------------------------------------------------------------

    def _fail(self, error: errors.ConnectionError, framing: bool = False) -> None:
        """Close the connection with an error. After a framing error the byte stream
        cannot be trusted: what else comes is dropped unread (close-ok cannot be told
        from the rest), and the socket closes after ``CLOSE_OK_TIMEOUT``, as RabbitMQ
        waits too: closed at once, it would be reset while the client still sends, and
        the client could lose the close and its reason."""
        if self.state.ending:
            self._close_transport()
            return
        log.info("connection %s closed: %s", self.peer, error)
        self.close(error.reply_code, error.reply_text, error.class_id, error.method_id)
        if framing:
            self.reader = frames.ClosedReader()
            self.output.flush(force=True)

    def close(self, code: int, text: str, class_id: int = 0, method_id: int = 0) -> None:
        """Send connection.close, release everything, and await close-ok briefly."""
        if self.state.ending:
            return
        self._release()
        self.state.advance(Event.CLOSE_SENT)
        self.send_method(
            0,
            commands.Connection.Close(
                reply_code=code, reply_text=text, class_id=class_id, method_id=method_id
            ),
        )
        self._cancel_timer()
        self._timer = self.loop.call_later(CLOSE_OK_TIMEOUT, self._guarded, self._close_transport)

    def _release(self) -> None:
        for number, channel in list(self.channels.items()):
            channel.release()
            self._forget_channel(number)
        self._confirming.clear()
        self._awaiting_disk.clear()
        for queue in list(self.exclusive_queues):
            queue.host.delete_queue(queue)

    def _forget_channel(self, number: int) -> None:
        """A channel is gone: its message counts stay in its vhost's totals."""
        channel = self.channels.pop(number)
        channel.vhost.retired_stats.add(channel.stats)
        self.server.channels_closed += 1

    def _teardown(self) -> None:
        if not self.state.closed:
            self._release()
            self.state.advance(Event.CLOSED)
        self._cancel_timer()
        if self in self.server.connections:
            self.server.connections.discard(self)
            self.server.connections_closed += 1

    def _close_transport(self) -> None:
        self._teardown()
        if self.transport is not None and not self.transport.is_closing():
            if self.output.pending:
                self.output.flush(force=True)
            self.transport.close()

    # -- bugs of ours -----------------------------------------------------------------

    def _guarded(self, callback, *args) -> None:
        """Run one of this connection's timers: a bug in it closes this connection only."""
        try:
            callback(*args)
        except Exception:
            self.internal_error()

    def internal_error(self) -> None:
        """A bug of ours while serving this connection (call it from the ``except``
        block): logged with its traceback, and this connection, only, closed with 541
        INTERNAL_ERROR, as RabbitMQ closes a connection whose channel crashed."""
        log.exception("internal error on connection %s", self.peer)
        try:
            self._fail(errors.ConnectionError(errors.INTERNAL_ERROR, "internal error"))
        except Exception:
            log.exception("connection %s cannot be closed properly: dropped", self.peer)
            self._drop()

    def _drop(self) -> None:
        """The last resort when closing fails: release what can be released, forget the
        connection, send connection.close (541) if it was not sent, cut the socket."""
        told = self.state.ending
        self._cancel_timer()
        for channel in list(self.channels.values()):
            self._attempt(channel.release)
        for queue in list(self.exclusive_queues):
            self._attempt(queue.host.delete_queue, queue)
        if not self.state.closed:
            self.state.advance(Event.CLOSED)
        if self in self.server.connections:
            self.server.connections.discard(self)
            self.server.connections_closed += 1
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        try:
            if not told:
                close = commands.Connection.Close(
                    reply_code=errors.INTERNAL_ERROR, reply_text="INTERNAL_ERROR - internal error"
                )
                transport.write(frames.method_frame(0, close))
            transport.close()
        except Exception:
            transport.abort()

    def _attempt(self, release, *args) -> None:
        try:
            release(*args)
        except Exception:
            log.exception("connection %s: cannot release everything", self.peer)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _handshake_timeout(self) -> None:
        self._timer = None
        log.info("connection %s: handshake timeout", self.peer)
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
        if now - self.output.last_send >= interval / 2 and not self.output.pending:
            self.output.write(frames.HEARTBEAT_FRAME)
        self._timer = self.loop.call_later(interval / 2, self._guarded, self._heartbeat_tick)

    # -- the server's calls -----------------------------------------------------------

    def pause_for_shutdown(self) -> None:
        """Stop reading the client while the store writes its last."""
        self.output.pause_reading(SHUTDOWN)

    def resume_for_close_ok(self) -> None:
        """Read the client again, whatever held it, for its close-ok."""
        self.output.resume_reading()

    def _block(self, reason: str) -> None:
        """A resource alarm is on and this client publishes: stop reading it."""
        self.output.pause_reading(ALARM)
        self._notify_blocked(reason)

    def set_blocked(self, reason: str | None) -> None:
        """A resource alarm changed (``roles.Blockable``): tell a client that
        understands connection.blocked why publishing stalls, and when it may go on;
        read a blocked client again when the alarm clears."""
        if reason is None:
            self.output.resume_reading(ALARM)
        self._notify_blocked(reason)

    def _notify_blocked(self, reason: str | None) -> None:
        """The notice is written at once, not held behind output that waits for the
        disk."""
        if self.state.state is not _RUNNING or not self.client_capability("connection.blocked"):
            return
        if reason is None:
            frame = frames.method_frame(0, commands.Connection.Unblocked())
        else:
            frame = frames.method_frame(0, commands.Connection.Blocked(reason=reason[:255]))
        self.output.write_now(frame)

    def abort(self) -> None:
        self._teardown()
        if self.transport is not None:
            self.transport.abort()
