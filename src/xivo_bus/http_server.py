"""An ASGI application served by uvicorn inside the caller's event loop, on a socket bound
here so that errors and the port are known at once (the call forms and the management
API both run this way, beside the broker)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket

import uvicorn


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its signal handlers: the embedding program owns the signals."""

    def capture_signals(self):
        return contextlib.nullcontext()


class EmbeddedHttpServer:
    """``app`` on ``host:port`` (port 0: any free one; ``port`` is the bound one after
    ``start``)."""

    def __init__(self, app, host: str, port: int, name: str):
        self.app = app
        self.host, self.port = host, port
        self.name = name
        self._server: _EmbeddedServer | None = None
        self._task: asyncio.Task | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    async def start(self) -> str:
        """Bind and serve; the URL. ``OSError`` (with a plain message) when it cannot."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        try:
            sock = socket.create_server((self.host, self.port), family=family)
        except OSError as error:
            reason = os.strerror(error.errno) if error.errno else str(error)
            raise OSError(f"cannot listen on {self.host}:{self.port}: {reason}") from None
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            lifespan="on",
            log_config=None,
            access_log=False,
            ws="none",
            timeout_graceful_shutdown=2,
        )
        self._server = _EmbeddedServer(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name=self.name)
        while not self._server.started:
            if self._task.done():
                sock.close()
                raise OSError(f"the HTTP server stopped: {self._task.exception()}")
            await asyncio.sleep(0.01)
        return self.url

    async def close(self) -> None:
        if self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
