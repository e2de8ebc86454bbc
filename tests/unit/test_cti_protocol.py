"""The CTI protocol without a network: the line framing, the session state machine fed
plain dicts, and the sheet payload, checked against CTI-PROTOCOL.md's wire examples."""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import xml.etree.ElementTree as ET
import zlib

import pytest

from xivo_bus.cti import codec
from xivo_bus.cti.forms import load_forms
from xivo_bus.cti.protocol import (
    CheckPassword,
    Close,
    CtiSession,
    LoggedIn,
    Publish,
    Send,
    State,
    Wait,
)
from xivo_bus.cti.sheets import SheetRouter, sheet_message
from xivo_bus.cti.users import User
from xivo_bus.events import CallFormRequest

ALICE = User(3, "alice", "Alice B", "scrypt$...", cti_password="secret", queues=("sales",))
BOB = User(7, "bob", "Bob", "scrypt$...")  # no CTI password: protocol 2.x only


class Users:
    def __init__(self, *users: User):
        self.users = {user.login: user for user in users}

    def get(self, login: str) -> User | None:
        return self.users.get(login)

    def all(self) -> list[User]:
        return list(self.users.values())

    def members(self, queue: str) -> list[User]:
        return [user for user in self.users.values() if queue in user.queues]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def session(clock: Clock | None = None) -> CtiSession:
    return CtiSession(Users(ALICE, BOB), clock=clock or Clock(), session_ids=lambda: "aB3dE5gH7j")


def sent(effects) -> list[dict]:
    return [effect.message for effect in effects if isinstance(effect, Send)]


def login_1_2(cti: CtiSession) -> list:
    cti.receive(
        {
            "class": "login_id",
            "company": "xivo",
            "ident": "-",
            "userlogin": "alice",
            "version": "9999",
            "xivoversion": "1.2",
            "commandid": 1,
        }
    )
    digest = hashlib.sha1(b"aB3dE5gH7j:secret").hexdigest()
    cti.receive({"class": "login_pass", "hashedpassword": digest, "commandid": 2})
    return cti.receive(
        {
            "class": "login_capas",
            "capaid": 1,
            "state": "available",
            "lastconnwins": False,
            "loginkind": "user",
            "commandid": 3,
        }
    )


# --- framing ---------------------------------------------------------------------------


def test_lines_are_cut_at_newlines_across_reads_and_blank_ones_skipped():
    lines = codec.LineBuffer()
    assert lines.feed(b'{"class": "a"}\n{"cla') == [b'{"class": "a"}']
    assert lines.feed(b'ss": "b"}\n\n  \n{"class": "c"}\r\n') == [
        b'{"class": "b"}',
        b'{"class": "c"}\r',
    ]
    assert lines.buffered == 0


def test_a_line_longer_than_the_cap_is_refused_before_it_is_whole():
    lines = codec.LineBuffer(max_line=100)
    lines.feed(b"x" * 60)
    with pytest.raises(codec.LineTooLong):
        lines.feed(b"x" * 60)  # 120 bytes and still no end
    with pytest.raises(codec.LineTooLong):
        codec.LineBuffer(max_line=100).feed(b"y" * 101 + b"\n")
    assert codec.LineBuffer(max_line=100).feed(b"z" * 100 + b"\n") == [b"z" * 100]


@pytest.mark.parametrize(
    "line", [b"{nope", b"[1]", b'{"class": 3}', b'{"a": NaN, "class": "x"}', b"\xff"]
)
def test_malformed_lines_are_refused(line):
    with pytest.raises(codec.MalformedMessage):
        codec.decode(line)


def test_every_server_line_carries_timenow_and_is_ascii():
    line = codec.encode({"class": "x", "name": "Élodie"}, 1361268824.64)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == {"class": "x", "name": "Élodie", "timenow": 1361268824.64}
    line.decode("ascii")


# --- the session ----------------------------------------------------------------------


def test_the_1_2_login_answers_as_xivo_14_05():
    cti = session()
    identified = cti.receive(
        {
            "class": "login_id",
            "company": "xivo",
            "ident": "X11-LE-24079",
            "userlogin": "alice",
            "version": "9999",
            "xivoversion": "1.2",
            "commandid": 1092130023,
        }
    )
    assert sent(identified) == [
        {"class": "login_id", "sessionid": "aB3dE5gH7j", "xivoversion": "1.2"}
    ]
    digest = hashlib.sha1(b"aB3dE5gH7j:secret").hexdigest()
    accepted = cti.receive({"class": "login_pass", "hashedpassword": digest, "commandid": 5})
    assert sent(accepted) == [{"class": "login_pass", "replyid": 5, "capalist": [1]}]
    assert cti.state is State.AUTHENTICATED
    effects = cti.receive(
        {
            "class": "login_capas",
            "capaid": "1",  # int() on it, as XiVO
            "state": "away",
            "lastconnwins": False,
            "loginkind": "user",
            "commandid": 6,
        }
    )
    capas, status = sent(effects)
    assert capas["replyid"] == 6 and capas["userid"] == "3" and capas["ipbxid"] == "xivo"
    assert set(capas["capas"]) >= {"regcommands", "ipbxcommands", "userstatus", "phonestatus"}
    assert LoggedIn(ALICE) in effects
    assert status["status"] == {"availstate": "away", "connection": "yes"}
    assert cti.state is State.LOGGED


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ({"class": "login_pass", "hashedpassword": "0" * 40, "commandid": 2}, "login_password"),
        ({"class": "login_pass", "commandid": 2}, "missing:hashedpassword"),
    ],
)
def test_1_2_login_pass_errors_carry_replyid_and_close(message, error):
    cti = session()
    cti.receive(
        {"class": "login_id", "company": "x", "ident": "-", "userlogin": "alice"}
        | {"xivoversion": "1.2"}
    )
    effects = cti.receive(message)
    assert sent(effects) == [{"class": "login_pass", "replyid": 2, "error_string": error}]
    assert isinstance(effects[-1], Close) and cti.state is State.CLOSED


def test_a_1_2_login_needs_a_password_kept_for_cti_clients():
    cti = session()
    cti.receive(
        {"class": "login_id", "company": "x", "ident": "-", "userlogin": "bob"}
        | {"xivoversion": "1.2"}
    )
    digest = hashlib.sha1(b"aB3dE5gH7j:").hexdigest()
    effects = cti.receive({"class": "login_pass", "hashedpassword": digest})
    assert effects[0] == Wait(1.0)
    assert sent(effects) == [{"class": "login_pass", "error_string": "login_password"}]


def test_a_wrong_version_is_an_error_and_the_connection_stays_open():
    cti = session()
    effects = cti.receive({"class": "login_id", "userlogin": "alice", "xivoversion": "1.1"})
    assert sent(effects) == [{"class": "login_id", "error_string": "xivoversion_client:1.1;1.2"}]
    assert not any(isinstance(effect, Close) for effect in effects)
    assert cti.state is State.CONNECTED


def test_protocol_2_checks_the_password_elsewhere_then_goes_on():
    cti = session()
    reply = sent(cti.receive({"class": "login_id", "userlogin": "bob", "xivoversion": "2.0"}))
    assert reply == [{"class": "login_id", "sessionid": "aB3dE5gH7j", "xivoversion": "2.0"}]
    effects = cti.receive({"class": "login_pass", "password": "pw", "commandid": 9})
    assert effects == [CheckPassword("bob", "pw")] and cti.state is State.CHECKING
    refused = cti.password_checked(None)
    assert refused == [Wait(1.0), Send({"class": "login_pass", "error_string": "login_password"})]
    assert cti.state is State.IDENTIFIED  # 2.x: try again on the same connection
    cti.receive({"class": "login_pass", "password": "pw"})
    assert sent(cti.password_checked(BOB)) == [{"class": "login_pass", "capalist": [1]}]
    effects = cti.receive({"class": "login_capas", "capaid": 1, "state": "available"})
    assert "replyid" not in sent(effects)[0] and "regcommands" not in sent(effects)[0]["capas"]


def test_before_login_only_login_messages_count():
    cti = session()
    assert cti.receive({"class": "call_form_result", "infos": {"variables": {}}}) == []
    assert cti.receive({"class": "keepalive", "commandid": 1}) == []
    effects = cti.receive({"class": "login_capas", "capaid": 1})
    assert effects == [Close("login_capas before login_pass", 30)]


def test_legacy_commands_before_login_capas_are_notloggedyet_and_close():
    cti = session()
    cti.receive(
        {"class": "login_id", "company": "x", "ident": "-", "userlogin": "alice"}
        | {"xivoversion": "1.2"}
    )
    digest = hashlib.sha1(b"aB3dE5gH7j:secret").hexdigest()
    cti.receive({"class": "login_pass", "hashedpassword": digest})
    published = cti.receive({"class": "call_form_result", "infos": {"variables": {}}})
    assert isinstance(published[0], Publish)  # a command class: accepted already
    effects = cti.receive({"class": "getipbxlist", "commandid": 4})
    assert sent(effects) == [{"class": "getipbxlist", "replyid": 4, "error_string": "notloggedyet"}]
    assert isinstance(effects[-1], Close)


def test_login_capas_errors():
    for message, error in [
        ({"capaid": 1, "state": "available"}, "missing:lastconnwins,loginkind"),
        (
            {"capaid": 2, "state": "x", "lastconnwins": 0, "loginkind": "user"},
            "unknown cti_profile_id",
        ),
    ]:
        cti = session()
        cti.receive(
            {"class": "login_id", "company": "x", "ident": "-", "userlogin": "alice"}
            | {"xivoversion": "1.2"}
        )
        digest = hashlib.sha1(b"aB3dE5gH7j:secret").hexdigest()
        cti.receive({"class": "login_pass", "hashedpassword": digest})
        effects = cti.receive({"class": "login_capas", "commandid": 3, **message})
        assert sent(effects) == [{"class": "login_capas", "replyid": 3, "error_string": error}]


def test_lists_hold_the_users_own_entry_only():
    cti = session()
    login_1_2(cti)

    def getlist(function: str, listname: str, **extra) -> list[dict]:
        message = {"class": "getlist", "function": function, "listname": listname}
        return sent(cti.receive({**message, "tipbxid": "xivo", "commandid": 8, **extra}))

    assert getlist("listid", "users") == [
        {"class": "getlist", "function": "listid", "listname": "users", "tipbxid": "xivo"}
        | {"list": ["3"]}
    ]
    for listname in ("phones", "agents", "queues", "voicemails", "queuemembers"):
        assert getlist("listid", listname)[0]["list"] == []
    config = getlist("updateconfig", "users", tid="3")[0]
    assert (config["tid"], config["config"]["firstname"], config["config"]["lastname"]) == (
        "3",
        "Alice",
        "B",
    )
    assert getlist("updatestatus", "users", tid=3)[0]["status"]["availstate"] == "available"
    assert getlist("updateconfig", "users", tid="4") == []
    assert getlist("listid", "meetmes") == []
    assert sent(cti.receive({"class": "getipbxlist", "commandid": 4})) == [
        {"class": "getipbxlist", "replyid": 4, "ipbxlist": ["xivo"]}
    ]


def test_call_form_results_are_published_for_the_session_user_and_throttled():
    clock = Clock()
    cti = session(clock)
    login_1_2(cti)
    message = {
        "class": "call_form_result",
        "user_id": 99,
        "infos": {"variables": {"XIVOFORM_note": "hi", "XIVOFORM_vip": True, "other": 1}},
    }
    effects = [cti.receive(message) for _ in range(10)]  # the burst
    assert all(len(each) == 1 and isinstance(each[0], Publish) for each in effects)
    assert effects[0][0].event.data == {"user_id": 3, "variables": {"note": "hi", "vip": True}}
    assert cti.receive(message) == []  # beyond the burst: dropped
    assert cti.call_forms_dropped == 1
    clock.now += 0.5  # 2 a second
    assert isinstance(cti.receive(message)[0], Publish)
    assert cti.receive(message) == []
    clock.now += 10  # time passes: a burst again, up to 10
    assert all(isinstance(cti.receive(message)[0], Publish) for _ in range(10))
    assert cti.receive(message) == [] and cti.call_forms_dropped == 3
    assert cti.receive({**message, "infos": {"variables": {"XIVOFORM_x": [1]}}}) == []


def test_presence_logout_and_keepalive():
    cti = session()
    login_1_2(cti)
    assert sent(cti.receive({"class": "keepalive", "commandid": 100})) == [
        {"class": "keepalive", "replyid": 100, "warning_string": "unimplemented"}
    ]
    away = sent(cti.receive({"class": "availstate", "availstate": "away"}))
    assert away[0]["status"]["availstate"] == "away" and cti.presence == "away"
    assert cti.receive({"class": "availstate", "availstate": "away", "userid": "4"}) == []
    assert cti.receive({"class": "nonsense"}) == []
    effects = cti.receive({"class": "logout", "stopper": "quit"})
    assert isinstance(effects[0], Close) and cti.receive({"class": "keepalive"}) == []


# --- sheets ---------------------------------------------------------------------------


class Receiver:
    def __init__(self) -> None:
        self.messages: list[dict] = []

    def send_message(self, message: dict) -> None:
        self.messages.append(message)


def test_a_sheet_payload_is_what_qt_reads():
    forms, _ = load_forms("/nonexistent")
    router = SheetRouter(Users(ALICE, BOB), forms)
    alice, bob = Receiver(), Receiver()
    router.attach(3, alice)
    router.attach(7, bob)
    request = CallFormRequest(
        queue="sales",
        channel="SIP/x2gjtw-0000000b",
        variables={"firstname": "Jo]]>hn <&>", "comment": "calls about {reason}", "reason": "x"},
    )
    delivery = router.push(request)
    assert (delivery.cti, delivery.web) == (1, 0) and bob.messages == []
    (message,) = alice.messages
    assert message["class"] == "sheet" and message["channel"] == "SIP/x2gjtw-0000000b"
    data = base64.b64decode(message["payload"])
    (length,) = struct.unpack(">I", data[:4])
    xml = zlib.decompress(data[4:])
    assert len(xml) == length
    profile = ET.fromstring(xml)
    internals = {node.get("name"): node.text for node in profile.iter("internal")}
    assert internals["ipbxid"] == "xivo" and internals["uid"] == delivery.sheet.id
    ui = ET.fromstring(profile.find("./user/sheet_qtui").text)
    widgets = {node.get("name"): node for node in ui.iter("widget")}
    assert widgets["XIVOFORM_firstname"].find("./property[@name='text']/string").text == (
        "Jo]]>hn <&>"
    )
    comment = widgets["XIVOFORM_comment"].find("./property[@name='plainText']/string").text
    assert comment == "calls about {reason}"  # values are not templates
    assert widgets["save"].get("class") == "QPushButton"
    router.detach(3, alice)
    assert router.push(request).cti == 0


def test_variables_fill_the_forms_texts():
    forms, _ = load_forms("/nonexistent")
    router = SheetRouter(Users(ALICE), forms)
    contact = forms["contact"].model_copy(update={"title": "Call from {xivo-calleridnum}"})
    router.forms = {"contact": contact}
    sheet = router.sheet(CallFormRequest(user_id=3, variables={"xivo-calleridnum": "0123"}))
    assert sheet.title == "Call from 0123" and sheet.text("{unknown}") == "{unknown}"
    message = sheet_message(sheet)
    assert message["compressed"] is True
