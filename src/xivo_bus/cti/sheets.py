"""Call forms pushed on a call: XiVO's "sheets".

A ``call_form_request`` (from the bus, the HTTP API or ``xivo-bus cti sheet``) names a
user or a queue, a form and the call's variables. ``SheetRouter`` turns it into a
``Sheet`` and hands it to every session of the users it is for: the desktop clients get
XiVO's ``sheet`` message, the open web pages a server-sent event.

The ``sheet`` message is what XiVO's CTI server sent: ``payload`` is base64 of a 4-byte
big-endian length and the zlib-compressed XML (Qt's ``qUncompress`` format), and the XML
is a ``<profile>`` whose ``sheet_qtui`` carries a Qt Designer form. We build that form
from the call form's fields: each one a widget named ``XIVOFORM_<name>`` (so the client
sends it back in ``call_form_result``), pre-filled from the variables, and a ``save``
button (the one the client listens to).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import logging
import re
import secrets
import struct
import xml.etree.ElementTree as ET
import zlib
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Protocol

from xivo_bus.cti.forms import FieldDef, FormDef
from xivo_bus.cti.messages import FORM_PREFIX
from xivo_bus.cti.users import User
from xivo_bus.events import CallFormRequest

log = logging.getLogger("xivo_bus.cti")

RECENT_SHEETS = 500  # sheets a web page can still open
_PLACEHOLDER = re.compile(r"\{([A-Za-z0-9_.:-]{1,100})\}")
# Characters XML 1.0 cannot carry, even escaped; a variable holding one loses it.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


class SheetError(ValueError):
    """A request that cannot become a sheet (an unknown form)."""


@dataclass(frozen=True)
class Sheet:
    id: str
    form: FormDef
    channel: str
    variables: dict[str, Any]
    user_ids: frozenset[int]  # whom it was for

    def text(self, text: str) -> str:
        """``text`` with ``{name}`` replaced by the variable ``name`` where there is one."""
        return substitute(text, self.variables)

    @property
    def title(self) -> str:
        return self.text(self.form.title)

    def values(self) -> dict[str, str]:
        """The fields' initial values, as the web form shows them (strings)."""
        values = {}
        for item in self.form.fields:
            if item.name in self.variables:
                values[item.name] = _as_text(item, self.variables[item.name])
        return values

    def web_event(self) -> dict:
        """What an open web page receives."""
        return {
            "id": self.id,
            "form": self.form.id,
            "title": self.title,
            "channel": self.channel,
            "variables": self.variables,
        }


def substitute(text: str, variables: Mapping[str, Any]) -> str:
    def value(match: re.Match) -> str:
        name = match.group(1)
        return _plain(variables[name]) if name in variables else match.group(0)

    return _PLACEHOLDER.sub(value, text)


def _plain(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _as_text(item: FieldDef, value: Any) -> str:
    if item.type == "checkbox":
        return "true" if value in (True, "true", "1", "on", 1) else "false"
    return _plain(value)


# --- the sheet message of XiVO's CTI protocol -----------------------------------------


def qt_form(sheet: Sheet) -> str:
    """The Qt Designer form (``.ui`` XML) of the sheet's call form."""
    ui = ET.Element("ui", version="4.0")
    ET.SubElement(ui, "class").text = "CallForm"
    root = ET.SubElement(ui, "widget", {"class": "QWidget", "name": "CallForm"})
    _property(root, "windowTitle", "string", sheet.title)
    layout = ET.SubElement(root, "layout", {"class": "QFormLayout", "name": "fields"})
    values = sheet.values()
    row = 0
    if sheet.form.description:
        item = ET.SubElement(layout, "item", row=str(row), column="0", colspan="2")
        _label(item, "description", sheet.text(sheet.form.description))
        row += 1
    for item_def in sheet.form.fields:
        label = sheet.text(item_def.label) + (" (required)" if item_def.required else "")
        item = ET.SubElement(layout, "item", row=str(row), column="0")
        _label(item, f"label_{item_def.name}", label)
        item = ET.SubElement(layout, "item", row=str(row), column="1")
        _widget(item, item_def, values.get(item_def.name), label)
        row += 1
    item = ET.SubElement(layout, "item", row=str(row), column="1")
    button = ET.SubElement(item, "widget", {"class": "QPushButton", "name": "save"})
    _property(button, "text", "string", "Save")
    ET.SubElement(ui, "resources")
    ET.SubElement(ui, "connections")
    return ET.tostring(ui, encoding="unicode")


def _property(widget: ET.Element, name: str, kind: str, value: str) -> ET.Element:
    prop = ET.SubElement(widget, "property", name=name)
    ET.SubElement(prop, kind).text = value
    return prop


def _label(item: ET.Element, name: str, text: str) -> None:
    label = ET.SubElement(item, "widget", {"class": "QLabel", "name": name})
    _property(label, "text", "string", text)
    _property(label, "wordWrap", "bool", "true")


def _widget(item: ET.Element, item_def: FieldDef, value: str | None, label: str) -> None:
    name = FORM_PREFIX + item_def.name
    kind = item_def.type
    if kind == "checkbox":
        widget = ET.SubElement(item, "widget", {"class": "QCheckBox", "name": name})
        _property(widget, "checked", "bool", "true" if value == "true" else "false")
    elif kind == "textarea":
        widget = ET.SubElement(item, "widget", {"class": "QPlainTextEdit", "name": name})
        _property(widget, "plainText", "string", value or "")
    elif kind == "select":
        widget = ET.SubElement(item, "widget", {"class": "QComboBox", "name": name})
        options = [option.value for option in item_def.options]
        for option in item_def.options:
            entry = ET.SubElement(widget, "item")
            _property(entry, "text", "string", option.value)
        if value in options:
            _property(widget, "currentIndex", "number", str(options.index(value)))
    elif kind == "date":
        widget = ET.SubElement(item, "widget", {"class": "QDateEdit", "name": name})
        _property(widget, "displayFormat", "string", "yyyy-MM-dd")
        _property(widget, "calendarPopup", "bool", "true")
        with contextlib.suppress(TypeError, ValueError):
            day = date.fromisoformat(value or "")
            prop = ET.SubElement(widget, "property", name="date")
            when = ET.SubElement(prop, "date")
            for part, number in (("year", day.year), ("month", day.month), ("day", day.day)):
                ET.SubElement(when, part).text = str(number)
    elif kind == "number":
        widget = ET.SubElement(item, "widget", {"class": "QDoubleSpinBox", "name": name})
        _property(widget, "decimals", "number", "2")
        _property(widget, "minimum", "double", _number(item_def.min, -1e9))
        _property(widget, "maximum", "double", _number(item_def.max, 1e9))
        with contextlib.suppress(TypeError, ValueError):
            _property(widget, "value", "double", repr(float(value)))
    else:
        widget = ET.SubElement(item, "widget", {"class": "QLineEdit", "name": name})
        _property(widget, "text", "string", value or "")
        _property(widget, "maxLength", "number", str(item_def.limit))
    _property(widget, "accessibleName", "string", label)


def _number(value: float | None, default: float) -> str:
    return repr(float(default if value is None else value))


def _cdata(text: str) -> str:
    # "]]>" cannot be inside a CDATA section: end it there and start another.
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")


def sheet_xml(sheet: Sheet, where: str = "dial") -> str:
    """The XML XiVO's client reads: internals, the Qt form, the info lines."""

    def element(tag: str, text: str, **attributes: str) -> str:
        attrs = "".join(f' {key}="{_escape(value)}"' for key, value in attributes.items())
        return f"<{tag}{attrs}>{_cdata(text)}</{tag}>"

    parts = [
        element("internal", where, name="where"),
        element("internal", "xivo", name="ipbxid"),
        element("internal", sheet.id, name="uid"),
        element("internal", "no", name="focus"),
        element("internal", "1", name="zip"),
        element("sheet_qtui", qt_form(sheet), order="0010", name="qtui", type="None"),
        element("sheet_info", sheet.title, order="0010", name="title", type="title"),
        element("sheet_info", "qtui", order="0020", name="form", type="form"),
        element("systray_info", sheet.title, order="0010", name="title", type="title"),
        element("systray_info", sheet.channel, order="0020", name="body", type="body"),
    ]
    body = "".join(parts)
    return f'<?xml version="1.0" encoding="utf-8"?>\n<profile><user>{body}</user></profile>'


def compress(data: bytes) -> bytes:
    """Qt's ``qCompress`` format: the length, 4 bytes big-endian, then zlib."""
    return struct.pack(">I", len(data)) + zlib.compress(data)


def sheet_message(sheet: Sheet) -> dict:
    """XiVO's ``sheet`` message for the desktop client."""
    xml = _NOT_XML.sub("", sheet_xml(sheet))
    payload = base64.b64encode(compress(xml.encode("utf-8"))).decode("ascii")
    return {
        "class": "sheet",
        "channel": sheet.channel,
        "serial": "xml",
        "compressed": True,
        "payload": payload,
    }


# --- routing ---------------------------------------------------------------------------


class SheetReceiver(Protocol):
    """A desktop client's connection, as the router sees it."""

    def send_message(self, message: dict) -> None: ...


class UserLookup(Protocol):
    def all(self) -> list[User]: ...

    def members(self, queue: str) -> list[User]: ...


@dataclass
class Delivery:
    sheet: Sheet
    cti: int = 0  # desktop client sessions reached
    web: int = 0  # open web pages reached


@dataclass
class SheetRouter:
    """Who is connected (desktop clients, web pages), and sheets sent to them."""

    users: UserLookup
    forms: dict[str, FormDef]
    cti_sessions: dict[int, set[SheetReceiver]] = field(default_factory=dict)
    web_pages: dict[int, set[asyncio.Queue]] = field(default_factory=dict)
    recent: OrderedDict[str, Sheet] = field(default_factory=OrderedDict)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def attach(self, user_id: int, receiver: SheetReceiver) -> None:
        self.cti_sessions.setdefault(user_id, set()).add(receiver)

    def detach(self, user_id: int, receiver: SheetReceiver) -> None:
        receivers = self.cti_sessions.get(user_id)
        if receivers is not None:
            receivers.discard(receiver)
            if not receivers:
                del self.cti_sessions[user_id]

    @contextlib.contextmanager
    def web_page(self, user_id: int, maxsize: int = 100) -> Iterator[asyncio.Queue]:
        """A queue that receives the user's sheets while the block runs."""
        queue: asyncio.Queue = asyncio.Queue(maxsize)
        self.web_pages.setdefault(user_id, set()).add(queue)
        try:
            yield queue
        finally:
            pages = self.web_pages.get(user_id, set())
            pages.discard(queue)
            if not pages:
                self.web_pages.pop(user_id, None)

    def sheet(self, request: CallFormRequest) -> Sheet:
        """The sheet a request asks for; ``SheetError`` for an unknown form."""
        if request.form is None:
            form = next(iter(self.forms.values()))
        else:
            form = self.forms.get(request.form)
            if form is None:
                raise SheetError(f"no form {request.form!r}")
        if request.user_id is not None:
            user_ids = frozenset({request.user_id})
        else:
            user_ids = frozenset(user.id for user in self.users.members(request.queue))
        ident = f"{next(self._ids)}-{secrets.token_hex(4)}"
        channel = request.channel or f"xivo-bus/{ident}"
        return Sheet(ident, form, channel, dict(request.variables), user_ids)

    def push(self, request: CallFormRequest) -> Delivery:
        """Send the requested sheet to every session of the users it is for."""
        sheet = self.sheet(request)
        self.recent[sheet.id] = sheet
        while len(self.recent) > RECENT_SHEETS:
            self.recent.popitem(last=False)
        delivery = Delivery(sheet)
        message = None
        for user_id in sorted(sheet.user_ids):
            receivers = list(self.cti_sessions.get(user_id, ()))
            if receivers and message is None:
                message = sheet_message(sheet)
            for receiver in receivers:
                receiver.send_message(message)
                delivery.cti += 1
            for page in self.web_pages.get(user_id, ()):
                with contextlib.suppress(asyncio.QueueFull):  # a stalled page misses it
                    page.put_nowait(sheet)
                    delivery.web += 1
        log.info(
            "call form %s (%s) for users %s: %d desktop sessions, %d web pages",
            sheet.id,
            sheet.form.id,
            sorted(sheet.user_ids),
            delivery.cti,
            delivery.web,
        )
        return delivery

    def for_user(self, sheet_id: str, user_id: int) -> Sheet | None:
        """A recent sheet, if it was for this user."""
        sheet = self.recent.get(sheet_id)
        return sheet if sheet is not None and user_id in sheet.user_ids else None
