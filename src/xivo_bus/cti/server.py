"""Run the call forms under uvicorn inside the caller's event loop (``xivo-bus cti`` and
``xivo-bus serve`` both do), on a socket bound here so errors and the port are known."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from pathlib import Path

import uvicorn

from xivo_bus.cti.app import CtiState, create_app
from xivo_bus.cti.forms import load_forms
from xivo_bus.cti.users import UserStore, session_secret

log = logging.getLogger("xivo_bus.cti")


class CtiStartError(Exception):
    """The call forms cannot start; the message says why."""


def parse_host_port(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) into its parts."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def http_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its signal handlers: the embedding program owns the signals."""

    def capture_signals(self):
        return contextlib.nullcontext()


class CtiServer:
    """The call forms, publishing to ``url``, listening on ``host:port``, with users,
    forms and outbox in ``data_dir``."""

    def __init__(self, url: str, host: str, port: int, data_dir: Path, confirm_wait: float = 2.0):
        self.amqp_url = url
        self.host, self.port = host, port
        self.data_dir = Path(data_dir)
        self.confirm_wait = confirm_wait
        self.forms_source = ""
        self.state: CtiState | None = None
        self._server: _EmbeddedServer | None = None
        self._task: asyncio.Task | None = None

    @property
    def url(self) -> str:
        return http_url(self.host, self.port)

    async def start(self) -> str:
        """Load the files, bind, serve; the page's URL. ``CtiStartError`` on failure."""
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            forms, self.forms_source = load_forms(self.data_dir)
            users = UserStore(self.data_dir)
            users.all()  # a broken users file is an error now, not at first login
            secret = session_secret(self.data_dir)
        except (OSError, ValueError) as error:
            raise CtiStartError(str(error)) from None
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        try:
            sock = socket.create_server((self.host, self.port), family=family)
        except OSError as error:
            reason = os.strerror(error.errno) if error.errno else str(error)
            raise CtiStartError(f"cannot listen on {self.host}:{self.port}: {reason}") from None
        self.port = sock.getsockname()[1]
        self.state = CtiState(self.amqp_url, self.data_dir, users, forms, secret, self.confirm_wait)
        config = uvicorn.Config(
            create_app(self.state),
            lifespan="on",
            log_config=None,
            access_log=False,
            ws="none",
            timeout_graceful_shutdown=2,
        )
        self._server = _EmbeddedServer(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="xivo-bus cti")
        while not self._server.started:
            if self._task.done():
                sock.close()
                raise CtiStartError(f"the HTTP server stopped: {self._task.exception()}")
            await asyncio.sleep(0.01)
        return self.url

    async def close(self) -> None:
        if self._task is None:
            return
        self.state.closing.set()  # ends the live streams, so shutdown need not wait
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
