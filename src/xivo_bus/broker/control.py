"""The control socket: ``xivo-bus ctl`` talks to the running broker through a Unix socket
in its data directory (mode 0600: only the broker's own user may use it), one JSON
request a line, one JSON answer a line.

    → {"verb": "add_user", "args": {"name": "alice", "password": "..."}}
    ← {"ok": null}, {"ok": [rows...]}, or {"error": "User \\"alice\\" already exists",
                                         "code": 70}

Passwords travel only over this socket; they are never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from pathlib import Path

from xivo_bus.broker.admin import EX_DATAERR, EX_SOFTWARE, Admin, AdminError

log = logging.getLogger("xivo_bus.broker.control")

SOCKET_NAME = "ctl.sock"
MAX_REQUEST = 64 << 20  # definitions of many queues and users

VERBS = {
    "add_user": ("name", "password"),
    "delete_user": ("name",),
    "change_password": ("name", "password"),
    "clear_password": ("name",),
    "authenticate_user": ("name", "password"),
    "set_user_tags": ("name", "tags"),
    "list_users": (),
    "add_vhost": ("name",),
    "delete_vhost": ("name",),
    "list_vhosts": (),
    "set_permissions": ("vhost", "user", "configure", "write", "read"),
    "clear_permissions": ("vhost", "user"),
    "list_permissions": ("vhost",),
    "list_user_permissions": ("user",),
    "set_topic_permissions": ("vhost", "user", "exchange", "write", "read"),
    "clear_topic_permissions": ("vhost", "user", "exchange"),
    "list_topic_permissions": ("vhost",),
    "list_user_topic_permissions": ("user",),
    "set_vhost_limits": ("vhost", "limits"),
    "clear_vhost_limits": ("vhost",),
    "list_vhost_limits": ("vhost", "all_"),
    "set_user_limits": ("user", "limits"),
    "clear_user_limits": ("user", "name"),
    "list_user_limits": ("user", "all_"),
    "list_queues": ("vhost", "columns"),
    "list_exchanges": ("vhost", "columns"),
    "list_bindings": ("vhost",),
    "list_connections": ("columns",),
    "list_channels": (),
    "list_consumers": ("vhost",),
    "purge_queue": ("vhost", "queue"),
    "delete_queue": ("vhost", "queue"),
    "close_connection": ("name", "reason"),
    "close_all_connections": ("vhost", "all_", "reason"),
    "status": (),
    "export_definitions": (),
    "import_definitions": ("definitions_",),
}


class Control:
    def __init__(self, admin: Admin, path: Path):
        self.admin = admin
        self.path = Path(path)
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # left by a broker that was killed
        umask = os.umask(0o177)  # the socket is created mode 0600
        try:
            self._server = await asyncio.start_unix_server(
                self._serve, path=str(self.path), limit=MAX_REQUEST
            )
        finally:
            os.umask(umask)
        os.chmod(self.path, 0o600)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                answer = await self.answer(line)
                writer.write(json.dumps(answer).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, ValueError):  # ValueError: a line over the limit
            pass
        finally:
            writer.close()

    async def answer(self, line: bytes) -> dict:
        try:
            request = json.loads(line)
            verb = request["verb"]
            args = request.get("args") or {}
            names = VERBS[verb]
            if not isinstance(args, dict) or set(args) - set(names):
                raise KeyError(verb)
        except (ValueError, KeyError, TypeError):
            return {"error": "malformed request", "code": EX_DATAERR}
        try:
            result = await getattr(self.admin, verb)(**{name: args.get(name) for name in names})
        except AdminError as error:
            return {"error": str(error), "code": error.code}
        except Exception:  # a bug of ours: the broker goes on
            log.exception("control: %s failed", verb)
            return {"error": f"internal error in {verb}", "code": EX_SOFTWARE}
        log.info("control: %s %s", verb, {k: v for k, v in args.items() if k != "password"})
        return {"ok": result}
