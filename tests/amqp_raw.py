"""A raw-socket AMQP test client: sends exactly the bytes a test wants, reads frames back.

Used to check the broker's answers to malformed or unusual input that real client
libraries never send.
"""

from __future__ import annotations

import socket
import struct

from pamqp import commands, frame, header, heartbeat
from pamqp import exceptions as pamqp_exceptions

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"


def plain_response(user: str = "guest", password: str = "guest") -> str:
    return f"\0{user}\0{password}"


class RawClient:
    def __init__(self, host: str, port: int, timeout: float = 5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buffer = b""

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- sending --------------------------------------------------------------------

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, channel: int, value) -> None:
        self.sock.sendall(frame.marshal(value, channel))

    def send_frame(self, frame_type: int, channel: int, payload: bytes, end: int = 0xCE) -> None:
        self.sock.sendall(
            struct.pack(">BHI", frame_type, channel, len(payload)) + payload + bytes([end])
        )

    def publish(
        self,
        channel: int,
        exchange: str,
        routing_key: str,
        body: bytes,
        properties: commands.Basic.Properties | None = None,
        mandatory=False,
    ) -> None:
        self.send(
            channel,
            commands.Basic.Publish(exchange=exchange, routing_key=routing_key, mandatory=mandatory),
        )
        self.send(channel, header.ContentHeader(0, len(body), properties))
        if body:
            from pamqp import body as pamqp_body

            self.send(channel, pamqp_body.ContentBody(body))

    # -- receiving ------------------------------------------------------------------

    def recv_frame(self):
        """(channel, frame) of the next frame, skipping heartbeats; None on EOF."""
        while True:
            if len(self.buffer) >= 7:
                _type, _channel, size = struct.unpack(">BHI", self.buffer[:7])
                if len(self.buffer) >= size + 8:
                    consumed, channel, value = frame.unmarshal(self.buffer)
                    self.buffer = self.buffer[consumed:]
                    if isinstance(value, heartbeat.Heartbeat):
                        continue
                    return channel, value
            data = self.sock.recv(65536)
            if not data:
                return None
            self.buffer += data

    def expect(self, cls, channel: int | None = None):
        got = self.recv_frame()
        assert got is not None, f"connection closed while expecting {cls.__name__}"
        assert isinstance(got[1], cls), f"expected {cls.__name__}, got {got[1]!r}"
        if channel is not None:
            assert got[0] == channel
        return got[1]

    def recv_raw(self, count: int = 65536) -> bytes:
        data, self.buffer = self.buffer, b""
        return data or self.sock.recv(count)

    def closed_by_peer(self) -> bool:
        """True once the broker has closed the socket (reads to EOF)."""
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return True
        except (TimeoutError, ConnectionResetError):
            return False

    # -- handshake ------------------------------------------------------------------

    def handshake(
        self,
        vhost: str = "/",
        heartbeat_interval: int = 0,
        frame_max: int = 131072,
        channel_max: int = 2047,
        capabilities: dict | None = None,
        response: str | None = None,
        mechanism: str = "PLAIN",
    ):
        self.send_raw(PROTOCOL_HEADER)
        start = self.expect(commands.Connection.Start)
        caps = {
            "authentication_failure_close": True,
            "consumer_cancel_notify": True,
            "publisher_confirms": True,
            "basic.nack": True,
        }
        if capabilities is not None:
            caps = capabilities
        self.send(
            0,
            commands.Connection.StartOk(
                client_properties={"product": "raw-test", "capabilities": caps},
                mechanism=mechanism,
                response=response if response is not None else plain_response(),
            ),
        )
        got = self.recv_frame()
        if got is None or not isinstance(got[1], commands.Connection.Tune):
            return got
        tune = got[1]
        self.send(
            0,
            commands.Connection.TuneOk(
                channel_max=channel_max, frame_max=frame_max, heartbeat=heartbeat_interval
            ),
        )
        self.send(0, commands.Connection.Open(virtual_host=vhost))
        got = self.recv_frame()
        return start, tune, got

    def open_channel(self, number: int = 1) -> None:
        self.send(number, commands.Channel.Open())
        self.expect(commands.Channel.OpenOk, number)


__all__ = ["RawClient", "PROTOCOL_HEADER", "plain_response", "pamqp_exceptions"]
