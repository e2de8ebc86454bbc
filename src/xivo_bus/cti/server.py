"""Run the call forms under uvicorn inside the caller's event loop (``xivo-bus cti`` and
``xivo-bus serve`` both do), on a socket bound here so errors and the port are known;
and the CTI listeners for XiVO desktop clients beside them, sharing their users, forms,
outbox and sheets."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

from xivo_bus.cti.app import CtiState, create_app
from xivo_bus.cti.forms import load_forms
from xivo_bus.cti.listener import CtiListener, ServerState
from xivo_bus.cti.users import UserStore, session_secret
from xivo_bus.http_server import EmbeddedHttpServer
from xivo_bus.paths import private_dir

log = logging.getLogger("xivo_bus.cti")


class CtiStartError(Exception):
    """The call forms cannot start; the message says why."""


def parse_host_port(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) into its parts."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


DEFAULT_CTI = "127.0.0.1:5003"  # XiVO's CTI port (on loopback unless told otherwise)
DEFAULT_CTI_TLS = "127.0.0.1:5013"  # XiVO's CTIS port: TLS from the first byte


class CtiServer:
    """The call forms, publishing to ``url``, listening on ``host:port``, with users,
    forms and outbox in ``data_dir``; ``listen_cti`` adds the desktop clients' ports."""

    def __init__(self, url: str, host: str, port: int, data_dir: Path, confirm_wait: float = 2.0):
        self.amqp_url = url
        self.host, self.port = host, port
        self.data_dir = Path(data_dir)
        self.confirm_wait = confirm_wait
        self.forms_source = ""
        self.state: CtiState | None = None
        self.cti: CtiListener | None = None
        self.cti_listeners: list[tuple[str, int, bool]] = []  # host, port, TLS
        self._http: EmbeddedHttpServer | None = None

    @property
    def url(self) -> str:
        return self._http.url if self._http is not None else ""

    async def start(self) -> str:
        """Load the files, bind, serve; the page's URL. ``CtiStartError`` on failure."""
        try:
            private_dir(self.data_dir)
            forms, self.forms_source = load_forms(self.data_dir)
            users = UserStore(self.data_dir)
            users.all()  # a broken users file is an error now, not at first login
            secret = session_secret(self.data_dir)
        except (OSError, ValueError) as error:
            raise CtiStartError(str(error)) from None
        self.state = CtiState(self.amqp_url, self.data_dir, users, forms, secret, self.confirm_wait)
        self._http = EmbeddedHttpServer(
            create_app(self.state), self.host, self.port, "xivo-bus cti"
        )
        try:
            url = await self._http.start()
        except OSError as error:
            self._http = None
            raise CtiStartError(str(error)) from None
        self.port = self._http.port
        return url

    async def listen_cti(
        self, host: str, port: int, tls: ssl.SSLContext | None = None
    ) -> tuple[str, int]:
        """Accept XiVO desktop clients on ``host:port`` (port 0: a free one), over TLS from
        the first byte with ``tls``; the bound address. After ``start``; ``CtiStartError``
        when it cannot."""
        if self.cti is None:
            state = self.state
            self.cti = CtiListener(ServerState(state.users, state.outbox.add, state.sheets))
        try:
            port = await self.cti.listen(host, port, tls)
        except OSError as error:
            raise CtiStartError(str(error)) from None
        self.cti_listeners.append((host, port, tls is not None))
        return host, port

    async def close(self) -> None:
        if self.cti is not None:
            await self.cti.close()
            self.cti = None
        if self._http is None:
            return
        self.state.closing.set()  # ends the live streams, so shutdown need not wait
        await self._http.close()
