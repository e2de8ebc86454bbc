"""The CTI listeners: XiVO desktop clients on TCP (5003) and TLS from the first byte
(5013), one ``asyncio.Protocol`` per connection (no task per client).

A connection cuts bytes into lines (``codec.LineBuffer``, capped), parses each line,
feeds it to its ``protocol.CtiSession`` and carries out the effects the session returns.
It reads nothing more while an effect is pending (a password check in a thread, a
``Wait``) or while its peer is not reading what it is sent (``pause_writing``), so one
client can neither reorder its own messages nor make the server buffer without bound.
A login timer closes connections that have not logged in within 5 s, as XiVO's did,
and lines are capped smaller before login, so that connections that never log in cost
little.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from xivo_bus.cti import codec
from xivo_bus.cti.protocol import (
    LOGIN_TIMEOUT,
    CheckPassword,
    Close,
    CtiSession,
    Effect,
    LoggedIn,
    Publish,
    Send,
    Wait,
)
from xivo_bus.cti.sheets import SheetRouter
from xivo_bus.cti.users import User, UserStore
from xivo_bus.events import CallFormResult

log = logging.getLogger("xivo_bus.cti")

LOGIN_MAX_LINE = 16 * 1024  # before login: login messages are a few hundred bytes
WRITE_HIGH_WATER = 256 * 1024  # above this much unsent, stop reading the client
MAX_UNSENT = 8 * 1024 * 1024  # a client this far behind is disconnected


@dataclass
class ServerState:
    """What every CTI connection shares; nothing else of the server."""

    users: UserStore
    publish: Callable[[CallFormResult], object]  # the outbox's add
    sheets: SheetRouter
    login_timeout: float = LOGIN_TIMEOUT
    # scrypt takes tens of milliseconds and 16 MiB: two at a time at most, so that a
    # storm of 2.x logins queues up rather than eats the machine.
    password_checks: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(2, thread_name_prefix="cti-password")
    )
    connections: set[CtiConnection] = field(default_factory=set)


class CtiConnection(asyncio.Protocol):
    """One desktop client."""

    def __init__(self, state: ServerState, tls: bool):
        self.state = state
        self.tls = tls
        self.session = CtiSession(state.users)
        self.peer = "?"
        self.transport: asyncio.Transport | None = None
        self._lines = codec.LineBuffer(LOGIN_MAX_LINE)  # codec.MAX_LINE once authenticated
        self._pending: deque[bytes] = deque()  # received lines not yet acted on
        self._writing_paused = False  # the peer is not reading what we send
        self._reading_paused = False
        self._busy: asyncio.Handle | asyncio.Future | None = None  # a Wait or a check
        self._login_timer: asyncio.TimerHandle | None = None
        self._user: User | None = None  # once logged in
        self._closing = False

    # --- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.state.connections.add(self)
        loop = asyncio.get_running_loop()
        self._login_timer = loop.call_later(self.state.login_timeout, self._login_expired)
        log.debug("CTI: connection from %s%s", self.peer, " (TLS)" if self.tls else "")

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        if self.session.authenticated:
            self._lines.max_line = codec.MAX_LINE
        try:
            self._pending.extend(self._lines.feed(data))
        except codec.LineTooLong as error:
            self._close(f"{error}", logging.WARNING)
            return
        self._act()

    def eof_received(self) -> bool:
        return False  # close our side too

    def pause_writing(self) -> None:
        self._writing_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._act()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self.state.connections.discard(self)
        if self._login_timer is not None:
            self._login_timer.cancel()
        if self._busy is not None:
            self._busy.cancel()
        if self._user is not None:
            self.state.sheets.detach(self._user.id, self)
            log.info("CTI: user %s (%d) from %s gone", self._user.login, self._user.id, self.peer)
        self._pending.clear()

    # --- what the router calls -------------------------------------------------------

    def send_message(self, message: dict) -> None:
        if self._closing:
            return
        self.transport.write(codec.encode(message, time.time()))
        if self.transport.get_write_buffer_size() > MAX_UNSENT:
            log.warning("CTI: %s reads nothing of what it is sent; disconnected", self.peer)
            self._closing = True
            self.transport.abort()

    # --- acting on what was received ---------------------------------------------------

    def _act(self) -> None:
        """Act on the received lines, in order, until one makes us wait."""
        while self._pending and self._busy is None and not self._writing_paused:
            if self._closing:
                return
            line = self._pending.popleft()
            try:
                message = codec.decode(line)
            except codec.MalformedMessage as error:
                self._close(f"malformed message: {error}", logging.WARNING)
                return
            self._carry_out(self.session.receive(message))
        self._update_reading()

    def _carry_out(self, effects: list[Effect]) -> None:
        for index, effect in enumerate(effects):
            if self._closing:
                return
            if isinstance(effect, Send):
                self.send_message(effect.message)
            elif isinstance(effect, Publish):
                try:
                    self.state.publish(effect.event)
                except Exception:  # the outbox cannot keep it (disk full, ...)
                    log.exception("CTI: call_form_result of user %d lost", effect.event.user_id)
                    self._close("the outbox failed", logging.ERROR)
                    return
                log.debug("CTI: call_form_result of user %d kept", effect.event.user_id)
            elif isinstance(effect, LoggedIn):
                self._logged_in(effect.user)
            elif isinstance(effect, Close):
                self._close(effect.reason, effect.level)
            elif isinstance(effect, Wait):
                rest = effects[index + 1 :]
                loop = asyncio.get_running_loop()
                self._busy = loop.call_later(effect.seconds, self._done_waiting, rest)
                self._update_reading()
                return
            elif isinstance(effect, CheckPassword):
                self._check_password(effect)
                return  # the session says what next once the check is done

    def _done_waiting(self, rest: list[Effect]) -> None:
        self._busy = None
        self._carry_out(rest)
        self._act()

    def _check_password(self, effect: CheckPassword) -> None:
        loop = asyncio.get_running_loop()
        users = self.state.users
        future = loop.run_in_executor(
            self.state.password_checks, users.authenticate, effect.login, effect.password
        )
        self._busy = future
        self._update_reading()

        def checked(done: asyncio.Future) -> None:
            if done.cancelled() or self._closing:
                return
            self._busy = None
            try:
                user = done.result()
            except Exception as error:  # a broken users file: refuse, say why
                log.error("CTI: cannot check a password: %s", error)
                user = None
            self._carry_out(self.session.password_checked(user))
            self._act()

        future.add_done_callback(checked)

    def _logged_in(self, user: User) -> None:
        self._user = user
        if self._login_timer is not None:
            self._login_timer.cancel()
            self._login_timer = None
        self.state.sheets.attach(user.id, self)
        log.info(
            "CTI: user %s (%d) logged in from %s, protocol %s",
            user.login,
            user.id,
            self.peer,
            self.session.protocol,
        )

    def _login_expired(self) -> None:
        self._login_timer = None
        self._close(f"not logged in within {self.state.login_timeout:g} s", logging.INFO)

    def _close(self, reason: str, level: int) -> None:
        if self._closing:
            return
        self._closing = True
        self._pending.clear()
        log.log(level, "CTI: closing %s: %s", self.peer, reason)
        self.transport.close()  # after what is queued for writing

    # --- flow control ------------------------------------------------------------------

    def _update_reading(self) -> None:
        """Read only when nothing received waits to be acted on and the peer reads us."""
        if self._closing:
            return
        pause = bool(self._pending) or self._busy is not None or self._writing_paused
        if pause != self._reading_paused:
            self._reading_paused = pause
            with contextlib.suppress(RuntimeError):
                if pause:
                    self.transport.pause_reading()
                else:
                    self.transport.resume_reading()


class CtiListener:
    """The plain and TLS listeners of the CTI server."""

    def __init__(self, state: ServerState):
        self.state = state
        self.servers: list[tuple[asyncio.base_events.Server, bool]] = []

    async def listen(self, host: str, port: int, tls: ssl.SSLContext | None = None) -> int:
        """Accept desktop clients on ``host:port`` (TLS from the first byte with ``tls``);
        the bound port. ``OSError`` with a plain message when it cannot."""
        loop = asyncio.get_running_loop()
        is_tls = tls is not None
        extra = {"ssl_handshake_timeout": self.state.login_timeout} if is_tls else {}
        try:
            server = await loop.create_server(
                lambda: CtiConnection(self.state, is_tls),
                host,
                port,
                ssl=tls,
                reuse_address=True,
                **extra,
            )
        except OSError as error:
            reason = error.strerror or str(error)
            raise OSError(f"cannot listen on {host}:{port}: {reason}") from None
        self.servers.append((server, is_tls))
        return server.sockets[0].getsockname()[1]

    @property
    def sessions(self) -> int:
        return len(self.state.connections)

    async def close(self) -> None:
        for server, _ in self.servers:
            server.close()
        for connection in list(self.state.connections):
            if connection.transport is not None:
                connection.transport.close()
        for server, _ in self.servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)
        self.servers.clear()
        self.state.password_checks.shutdown(wait=False, cancel_futures=True)
