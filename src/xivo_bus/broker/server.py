"""The broker: vhosts, users, the listening socket and a clean shutdown."""

from __future__ import annotations

import asyncio
import logging

from xivo_bus.amqp import errors
from xivo_bus.broker.auth import Users
from xivo_bus.broker.connection import Connection
from xivo_bus.broker.vhost import VHost

log = logging.getLogger("xivo_bus.broker")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5672
SHUTDOWN_TEXT = "broker forced connection closure with reason 'shutdown'"


class Broker:
    def __init__(self) -> None:
        self.vhosts: dict[str, VHost] = {"/": VHost("/")}
        self.users = Users()
        self.connections: set[Connection] = set()
        self.server: asyncio.base_events.Server | None = None

    async def start(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> tuple[str, int]:
        """Listen for AMQP connections; returns the bound address (port 0 picks one)."""
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: Connection(self), host, port, reuse_address=True, backlog=1024
        )
        address = self.server.sockets[0].getsockname()
        return address[0], address[1]

    async def close(self, timeout: float = 1.0) -> None:
        """Stop listening, close every client with 320 CONNECTION_FORCED, wait briefly
        for their close-ok."""
        if self.server is not None:
            self.server.close()
        for connection in list(self.connections):
            connection.close(errors.CONNECTION_FORCED, f"CONNECTION_FORCED - {SHUTDOWN_TEXT}")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.connections and loop.time() < deadline:
            await asyncio.sleep(0.02)
        for connection in list(self.connections):
            connection.abort()
        if self.server is not None:
            await self.server.wait_closed()
