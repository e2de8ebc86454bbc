"""A connection's output and flow control: what it writes, when, and when it reads.

Replies and deliveries are buffered and written once per loop iteration. What must
follow a store write (a tx.commit-ok) waits until that write is on disk: the whole output
is held behind it, so that order is kept. Deliveries never wait for the disk, nor do
publisher confirms, which go out of order (``session.confirms``).
Reading stops for one of a set of reasons (the disk is behind, a resource alarm,
shutdown) and goes on when none is left. Deliveries stop while the output is over its
limit or the socket's buffer is full, and resume once it drains.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from xivo_bus.amqp import frames
from xivo_bus.broker.model.message import Message
from xivo_bus.broker.roles import Durability

# Deliveries stop being handed to a connection whose unsent output exceeds this; they
# resume when the socket drains (RabbitMQ's credit flow plays the same part).
OUTPUT_LIMIT = 1 << 20
# A client stops being read while this many of its store writes wait for the disk, or
# while it has writes waiting and the store's wait for this many bytes of bodies.
MAX_UNCOMMITTED = 20_000
MAX_UNCOMMITTED_BYTES = 64 << 20

# Why a connection is not read.
DISK = "disk"  # its store writes are too far ahead of the disk
ALARM = "alarm"  # a resource alarm is on and it publishes
SHUTDOWN = "shutdown"  # the broker writes its last to the store
AUTH_FAILURE = "auth failure"  # its login was refused: the refusal comes a little later
TURN = "turn"  # it had its turn of the event loop; the rest of what it sent comes next
FLOW = "flow"  # it publishes to a queue whose consumers do not keep up (credit flow)


class Output:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        durability: Durability | None,
        on_room: Callable[[], None],
        on_commit: Callable[[], None],
        frame_max: int,
    ):
        self._loop = loop
        self.frame_max = frame_max  # bodies are split into frames of this size at most
        self._durability = durability
        self._on_room = on_room  # deliveries may go on
        self._on_commit = on_commit  # the store committed what this connection waited for
        self.transport: asyncio.Transport | None = None
        self._out: list[bytes] = []
        self._size = 0
        self._flush_handle: asyncio.Handle | None = None
        self._writing_paused = False  # the socket's buffer is full
        self._full = False  # deliveries were stopped: resume them once drained
        self._barrier = 0  # store write that must be on disk before more output
        self._latest_write = 0  # the latest store write this client caused
        self._unread: set[str] = set()  # why reading is paused
        self.last_send = loop.time()

    # -- writing ----------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        self._out.append(data)
        self._size += len(data)
        if self._size > OUTPUT_LIMIT:
            self._full = True
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self.flush)

    def write_content(self, channel: int, method_payload: bytes, message: Message) -> None:
        """A method with content (basic.deliver, get-ok, return) and its message."""
        body = message.body
        self._out += frames.content_frames(
            channel, method_payload, message.raw_properties, body, self.frame_max
        )
        self._size += len(body) + 64
        if self._size > OUTPUT_LIMIT:
            self._full = True
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self.flush)

    def write_now(self, frame: bytes) -> None:
        """Written at once, ahead of output that waits for the disk (connection.blocked
        notices)."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(frame)

    def tuned(self, frame_max: int) -> None:
        """The client agreed on the largest frame (connection.tune-ok)."""
        self.frame_max = frame_max

    @property
    def pending(self) -> bool:
        return bool(self._out)

    def has_room(self) -> bool:
        """Room for more deliveries."""
        return not self._writing_paused and self._size <= OUTPUT_LIMIT

    @property
    def committed(self) -> int:
        """The latest store write on disk."""
        durability = self._durability
        return durability.committed if durability is not None else 0

    def wrote(self, write: int) -> None:
        """The client caused store write ``write`` (a persistent message): it is not read
        while too many of those wait for the disk (``throttle``)."""
        if write > self._latest_write:
            self._latest_write = write

    def wait_for_commit(self) -> None:
        """Call ``on_commit`` after the store's next commit."""
        if self._durability is not None:
            self._durability.notify(self)

    def hold_output_until(self, write: int) -> None:
        """Send nothing more until store write ``write`` is on disk: what follows
        depends on it (tx.commit-ok). 0: no wait."""
        if write > self._barrier:
            self._barrier = write

    def flush(self, force: bool = False) -> None:
        """Write what is buffered, unless it waits for the disk (``force``: regardless,
        when closing)."""
        self._flush_handle = None
        durability = self._durability
        if not force and durability is not None and self._barrier > durability.committed:
            durability.notify(self)  # the output waits for the disk
            return
        transport = self.transport
        if self._out and transport is not None and not transport.is_closing():
            transport.writelines(self._out)
            self.last_send = self._loop.time()
        self._out = []
        self._size = 0
        if self._full and not self._writing_paused:
            self._full = False
            self._on_room()

    def store_committed(self) -> None:
        """The store committed writes: send what waited for them, read again."""
        if self._out and self._flush_handle is None:
            self.flush()
        self.resume_reading(DISK)
        self._on_commit()

    def throttle(self) -> None:
        """Stop reading the client while its store writes are too far ahead of the disk;
        it is read again after the next commit."""
        durability = self._durability
        if durability is None:
            return
        behind = self._latest_write - durability.committed
        if behind > MAX_UNCOMMITTED or (
            behind > 0 and durability.uncommitted_bytes > MAX_UNCOMMITTED_BYTES
        ):
            self.pause_reading(DISK)
            durability.notify(self)

    # -- the transport's flow control -------------------------------------------------

    def pause_writing(self) -> None:
        self._writing_paused = True
        self._full = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._full = False
        self._on_room()

    # -- reading ----------------------------------------------------------------------

    def pause_reading(self, reason: str) -> None:
        if not self._unread:
            transport = self.transport
            if transport is not None and not transport.is_closing():
                transport.pause_reading()
        self._unread.add(reason)

    def resume_reading(self, reason: str | None = None) -> None:
        """Read again once no reason is left (``None``: whatever the reasons)."""
        if not self._unread:
            return
        if reason is None:
            self._unread.clear()
        else:
            self._unread.discard(reason)
            if self._unread:
                return
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.resume_reading()

    def paused_for(self, reason: str) -> bool:
        return reason in self._unread
