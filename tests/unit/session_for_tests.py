"""Real broker connections in-process, without sockets: a ``session.Connection`` on its
own event loop, fed bytes by the test, writing to a transport that records what it is
given (a stand-in for the operating system's socket, nothing of ours). The vhost,
channels, queues and exchanges behind it are the real ones.

The loop's exception handler records what escapes into its callbacks (a timer, a
``call_soon``): a test asserts there was nothing.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

from pamqp import commands, frame

from xivo_bus.amqp import frames
from xivo_bus.broker.alarms import Alarms
from xivo_bus.broker.model.vhost import VHost
from xivo_bus.broker.session.connection import Connection
from xivo_bus.broker.session.server_state import ServerState, Tuning
from xivo_bus.broker.store import Store
from xivo_bus.broker.users import Users

from .roles_for_tests import ManualClock

PLAIN_GUEST = "\0guest\0guest"


class RecordingTransport:
    """What a connection needs of an ``asyncio.Transport``; keeps every byte written."""

    def __init__(self, peer: tuple[str, int] = ("127.0.0.1", 40000)):
        self.peer = peer
        self.written = bytearray()
        self.closed = False
        self.reading = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.peer if name == "peername" else default

    def write(self, data: bytes) -> None:
        self.written += data

    def writelines(self, chunks) -> None:
        for chunk in chunks:
            self.written += chunk

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


class Loop:
    """An event loop the test drives step by step; what escapes a callback is kept in
    ``escaped``."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.escaped: list[dict] = []
        self.loop.set_exception_handler(lambda _loop, context: self.escaped.append(context))

    def run(self, function, *args) -> Any:
        """Call ``function`` inside the running loop, then let the callbacks it scheduled
        with ``call_soon`` (output flushes) run."""

        async def step():
            result = function(*args)
            for _ in range(3):
                await asyncio.sleep(0)
            return result

        return self.loop.run_until_complete(step())

    def sleep(self, seconds: float) -> None:
        """Let real time pass on the loop (timers fire)."""
        self.loop.run_until_complete(asyncio.sleep(seconds))

    def close(self) -> None:
        self.loop.close()


class Broker:
    """The shared state every connection of a broker gets, with vhost ``/`` and guest.
    The vhost's queues keep time by ``clock`` (TTLs, expiries), moved by the test."""

    def __init__(
        self, loop: Loop, max_message_size: int = 1 << 20, store: Store | None = None, **tuning
    ):
        self.loop = loop
        self.clock = ManualClock()
        self.store = store
        if store is not None:  # a real one, on disk, with its writer thread
            store.open()
            store.start(loop.loop)
        connections: set[Connection] = set()
        users = Users()
        users.put(Users.default())
        self.alarms = Alarms(connections, None)
        self.state = ServerState(
            vhosts={},
            users=users,
            alarms=self.alarms,
            store=store,
            max_message_size=max_message_size,
            connections=connections,
            tuning=Tuning(**tuning),
        )
        self.vhost = self.state.vhosts["/"] = VHost(self.clock, store=store)

    def close(self) -> None:
        """Stop the store's writer (what it still has is written)."""
        if self.store is not None:
            self.store.close()

    def advance(self, seconds: float) -> None:
        """Move the queues' clock: the TTL and expiry timers due fire, on the loop."""
        self.loop.run(self.clock.advance, seconds)

    def connect(self) -> Client:
        return Client(self)


class Client:
    """One client connection: bytes in, the frames the broker answered out."""

    def __init__(self, broker: Broker):
        self.loop = broker.loop
        self.transport = RecordingTransport()
        self.connection: Connection = self.loop.run(self._made, broker)
        self._read = 0

    def _made(self, broker: Broker) -> Connection:
        connection = Connection(broker.state)
        connection.connection_made(self.transport)
        return connection

    # -- in -------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        self.loop.run(self.connection.data_received, data)

    def method(self, channel: int, method) -> None:
        self.send(frames.method_frame(channel, method))

    def publish(
        self, channel: int, exchange: str, routing_key: str, body: bytes, properties: bytes
    ) -> None:
        """A basic.publish with raw property bytes (flags and list), in one write."""
        method = frames.encode_method(
            frames.build(
                commands.Basic.Publish,
                ticket=0,
                exchange=exchange,
                routing_key=routing_key,
                mandatory=False,
                immediate=False,
            )
        )
        self.send(b"".join(frames.content_frames(channel, method, properties, body, 131072)))

    def open(self, channels: tuple[int, ...] = (1,), **client_properties) -> None:
        """The handshake up to connection.open-ok, then channel.open on ``channels``."""
        self.send(frames.PROTOCOL_HEADER)
        self.method(
            0,
            frames.build(
                commands.Connection.StartOk,
                client_properties={
                    "capabilities": {
                        "consumer_cancel_notify": True,
                        "connection.blocked": True,
                        "authentication_failure_close": True,
                    },
                    **client_properties,
                },
                mechanism="PLAIN",
                response=PLAIN_GUEST,
                locale="en_US",
            ),
        )
        self.method(0, commands.Connection.TuneOk(channel_max=0, frame_max=131072, heartbeat=0))
        self.method(0, commands.Connection.Open(virtual_host="/"))
        for number in channels:
            self.method(number, commands.Channel.Open())
        self.received()

    def lost(self) -> None:
        """The socket is gone."""
        self.loop.run(self.connection.connection_lost, None)

    # -- out ------------------------------------------------------------------------

    def received(self) -> list[tuple[int, Any]]:
        """(channel, pamqp method) of each method frame written since the last call
        (content headers and bodies are passed over)."""
        out = []
        data = bytes(self.transport.written[self._read :])
        offset = 0
        while len(data) - offset >= 8:
            kind, channel, size = struct.unpack_from(">BHI", data, offset)
            if len(data) - offset < size + 8:
                break
            if kind == frames.FRAME_METHOD:
                out.append((channel, frame.unmarshal(data[offset : offset + size + 8])[2]))
            offset += size + 8
        self._read += offset
        return out

    def closes(self) -> list[tuple[int, Any]]:
        """The channel.close and connection.close frames written since the last call."""
        return [
            (channel, value)
            for channel, value in self.received()
            if isinstance(value, (commands.Channel.Close, commands.Connection.Close))
        ]
