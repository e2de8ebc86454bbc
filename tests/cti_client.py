"""A XiVO desktop client, as ``../shared/spec/CTI-PROTOCOL.md`` describes it (not as our
server is written): JSON lines over TCP or TLS, the three-step login of protocol 1.2
(``sha1(sessionid + ":" + password)``) or 2.x (the password itself), the start-up
sequence of xivo-client 14.05 (getipbxlist, then the six lists) and the ``sheet``
payload (base64, 4-byte big-endian length, zlib, XML holding a Qt form)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import ssl
import struct
import xml.etree.ElementTree as ET
import zlib
from dataclasses import dataclass, field

LISTS = ("users", "phones", "agents", "queues", "voicemails", "queuemembers")


class CtiClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self.commandid = 0
        self.seen: list[dict] = []  # every message received, in order
        self._unread: list[dict] = []  # received while waiting for something else

    @classmethod
    async def connect(
        cls, host: str, port: int, tls: ssl.SSLContext | None = None, timeout: float = 10
    ) -> CtiClient:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=tls, limit=1 << 22), timeout
        )
        return cls(reader, writer)

    async def send(self, message: dict, commandid: bool = True) -> int | None:
        """Send ``message`` with the next commandid (as the Qt client always did)."""
        if commandid:
            self.commandid += 1
            message = {**message, "commandid": self.commandid}
        await self.send_raw(json.dumps(message).encode() + b"\n")
        return message.get("commandid")

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def receive(self, timeout: float = 10) -> dict:
        if self._unread:
            return self._unread.pop(0)
        line = await asyncio.wait_for(self.reader.readline(), timeout)
        if not line:
            raise ConnectionError("the server closed the connection")
        assert line.endswith(b"\n"), line
        message = json.loads(line)
        assert isinstance(message["timenow"], float), message
        self.seen.append(message)
        return message

    async def expect(self, timeout: float = 10, **match) -> dict:
        """The next message whose keys have these values; others are kept for later."""
        deadline = asyncio.get_running_loop().time() + timeout
        skipped = []
        try:
            for index, message in enumerate(self._unread):
                if all(message.get(key) == value for key, value in match.items()):
                    return self._unread.pop(index)
            while True:
                left = deadline - asyncio.get_running_loop().time()
                line = await asyncio.wait_for(self.reader.readline(), max(left, 0.01))
                if not line:
                    raise ConnectionError(f"closed while waiting for {match}")
                message = json.loads(line)
                self.seen.append(message)
                if all(message.get(key) == value for key, value in match.items()):
                    return message
                skipped.append(message)
        finally:
            self._unread.extend(skipped)

    def forget(self) -> list[dict]:
        """Let go of the messages received but not asked for yet; they are returned."""
        unread, self._unread = self._unread, []
        return unread

    async def closed(self, timeout: float = 10) -> bool:
        """Wait for the server to close the connection; the lines it sent first are kept."""
        try:
            while True:
                line = await asyncio.wait_for(self.reader.readline(), timeout)
                if not line:
                    return True
                self._unread.append(json.loads(line))
        except (ConnectionResetError, BrokenPipeError):
            return True

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, ssl.SSLError):
            pass

    # --- login (CTI-PROTOCOL.md §2) ---------------------------------------------------

    async def login_id(self, login: str, version: str = "1.2", key: str = "xivoversion") -> dict:
        await self.send(
            {
                "class": "login_id",
                "company": "xivo",
                "ident": "X11-LE-24079",
                "userlogin": login,
                "version": "9999",
                key: version,
                "lastlogout-stopper": "disconnect",
                "lastlogout-datetime": "2013-02-19T11:13:36",
            }
        )
        return await self.expect(**{"class": "login_id"})

    async def login(self, login: str, password: str, version: str = "1.2") -> dict:
        """The three steps; the login_capas reply (or the first error met)."""
        reply = await self.login_id(login, version)
        if "error_string" in reply:
            return reply
        if version == "1.2":
            digest = hashlib.sha1(f"{reply['sessionid']}:{password}".encode()).hexdigest()
            await self.send({"class": "login_pass", "hashedpassword": digest})
        else:
            await self.send({"class": "login_pass", "password": password})
        reply = await self.expect(**{"class": "login_pass"})
        if "error_string" in reply:
            return reply
        capaid = reply["capalist"][0]
        capas = {"class": "login_capas", "capaid": capaid, "state": "available"}
        if version == "1.2":
            capas.update(lastconnwins=False, loginkind="user")
        await self.send(capas)
        return await self.expect(**{"class": "login_capas"})

    # --- start-up (CTI-PROTOCOL.md §4.1) ----------------------------------------------

    async def initialise(self, userid: str) -> dict[str, list[str]]:
        """What xivo-client 14.05 does after login_capas, until its init watcher says
        "initialized"; the ids of each list."""
        commandid = await self.send({"class": "getipbxlist"})
        ipbxlist = await self.expect(**{"class": "getipbxlist"})
        assert ipbxlist["replyid"] == commandid
        lists: dict[str, list[str]] = {}
        for ipbx in ipbxlist["ipbxlist"]:
            await self.getlist("updateconfig", "users", ipbx, tid=userid)
            for name in LISTS:
                await self.getlist("listid", name, ipbx)
            for name in LISTS:
                reply = await self.expect(function="listid", listname=name)
                lists[name] = reply["list"]
            waiting = {(name, tid) for name, ids in lists.items() for tid in ids}
            for name, tid in sorted(waiting):
                await self.getlist("updateconfig", name, ipbx, tid=tid)
            for name, tid in sorted(waiting):
                await self.expect(function="updateconfig", listname=name, tid=tid)
                await self.getlist("updatestatus", name, ipbx, tid=tid)
            for name, tid in sorted(waiting):
                await self.expect(function="updatestatus", listname=name, tid=tid)
        await self.sync()
        # the repeated answers (the client asks some twice) are of no more use
        self._unread = [message for message in self._unread if message["class"] != "getlist"]
        return lists

    async def sync(self) -> None:
        """Read up to the answer of a keepalive sent now: the server answers in order, so
        everything it owed us before is then read (and kept unread)."""
        commandid = await self.send({"class": "keepalive"})
        await self.expect(**{"class": "keepalive", "replyid": commandid})

    async def getlist(self, function: str, listname: str, ipbx: str = "xivo", **extra) -> None:
        message = {"class": "getlist", "function": function, "listname": listname}
        await self.send({**message, "tipbxid": ipbx, **extra})

    async def call_form_result(self, variables: dict, button: str = "saveandclose") -> None:
        infos = {"buttonname": button, "variables": variables}
        await self.send({"class": "call_form_result", "infos": infos})


# --- the sheet payload (CTI-PROTOCOL.md §5) ----------------------------------------------


@dataclass
class DecodedSheet:
    channel: str
    profile: ET.Element  # the <profile> document
    form: ET.Element  # the Qt Designer <ui> inside sheet_qtui
    widgets: dict[str, ET.Element] = field(default_factory=dict)  # by objectName

    def internal(self, name: str) -> str:
        return self.profile.find(f"./user/internal[@name='{name}']").text

    def value(self, name: str) -> str | None:
        """A widget's initial text (or checked state, or combo index)."""
        widget = self.widgets[name]
        for prop in ("text", "plainText", "checked", "currentIndex", "value"):
            node = widget.find(f"./property[@name='{prop}']/*")
            if node is not None:
                return node.text
        return None


def decode_sheet(message: dict) -> DecodedSheet:
    assert message["class"] == "sheet" and message["serial"] == "xml", message
    data = base64.b64decode(message["payload"], validate=True)
    if message["compressed"]:
        (length,) = struct.unpack(">I", data[:4])  # what Qt's qUncompress reads first
        data = zlib.decompress(data[4:])
        assert len(data) == length
    profile = ET.fromstring(data)
    assert profile.tag == "profile"
    qtui = profile.find("./user/sheet_qtui")
    form = ET.fromstring(qtui.text)
    assert form.tag == "ui"
    widgets = {widget.get("name"): widget for widget in form.iter("widget")}
    return DecodedSheet(message["channel"], profile, form, widgets)
