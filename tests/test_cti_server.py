"""The CTI server for XiVO desktop clients, on a real ``xivo-bus serve`` (plain and TLS
listeners on free ports), driven by a client written from CTI-PROTOCOL.md
(``cti_client.py``); what reaches the bus is read by the spec's consumer."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import ssl
import stat
import string
import subprocess
import sys
import time

import httpx
import pika
import pytest
import trustme
from conftest import ChildLines, start_broker
from cti_client import CtiClient, decode_sheet
from cti_support import SpecConsumer, cti_line

from xivo_bus.cti.users import UserStore, hash_password, write_private

CTI_READY = re.compile(r"xivo-bus: CTI clients (over TLS )?on (\S+):(\d+)$")
ALICE, BOB, CAROL = ("alice", "alice-secret", 40), ("bob", "bob-secret", 7), ("carol", "c4rol", 12)
AGENTS = 50  # agent1..agent50, 4 sessions each: 200 concurrent sessions
SESSIONS_PER_AGENT = 4


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cti-pki")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    files = {"ca": folder / "ca.pem", "cert": folder / "cert.pem", "key": folder / "key.pem"}
    ca.cert_pem.write_to_path(files["ca"])
    server.cert_chain_pems[0].write_to_path(files["cert"])
    server.private_key_pem.write_to_path(files["key"])
    return files


def client_tls(pki) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(pki["ca"]))


def write_users(data_dir) -> None:
    """alice and carol may use protocol 1.2, bob only 2.x; agents for the load test. The
    users file is written at once (one scrypt hash shared), as ``users add`` would."""
    store = UserStore(data_dir)
    store.add(ALICE[0], ALICE[1], user_id=ALICE[2], name="Alice Martin", cti_client=True)
    store.add(BOB[0], BOB[1], user_id=BOB[2], queues=["sales"])
    store.add(CAROL[0], CAROL[1], user_id=CAROL[2], cti_client=True, queues=["sales"])
    document = json.loads(store.path.read_text())
    shared = hash_password("agent-secret")
    for number in range(1, AGENTS + 1):
        document["users"].append(
            {
                "id": 1000 + number,
                "login": f"agent{number}",
                "name": f"Agent {number}",
                "password": shared,
                "cti_password": "agent-secret",
            }
        )
    write_private(store.path, json.dumps(document))


class Bus:
    def __init__(self, broker, lines, http, plain, tls, data_dir):
        self.broker, self.lines, self.http = broker, lines, http
        self.plain, self.tls, self.data_dir = plain, tls, data_dir

    def consumer(self) -> SpecConsumer:
        return SpecConsumer(self.broker.host, self.broker.port)

    async def client(self, tls: ssl.SSLContext | None = None) -> CtiClient:
        host, port = self.tls if tls is not None else self.plain
        return await CtiClient.connect(host, port, tls)

    async def logged_in(self, who=ALICE, version="1.2") -> CtiClient:
        client = await self.client()
        reply = await client.login(who[0], who[1], version)
        assert reply["class"] == "login_capas" and "error_string" not in reply, reply
        await client.sync()  # the status update that follows login is read too
        return client


@pytest.fixture(scope="module")
def bus(tmp_path_factory, pki):
    data_dir = tmp_path_factory.mktemp("cti-server")
    write_users(data_dir)
    broker = start_broker(
        "--http",
        "127.0.0.1:0",
        "--data-dir",
        str(data_dir),
        "--cti-tls-listen",
        "127.0.0.1:0",
        "--cti-certfile",
        str(pki["cert"]),
        "--cti-keyfile",
        str(pki["key"]),
        cti=True,
    )
    lines = ChildLines(broker.proc)
    http = cti_line(lines)
    listeners = {}
    for _ in range(2):
        match = CTI_READY.match(lines.wait_for("xivo-bus: CTI clients", timeout=30))
        listeners[bool(match.group(1))] = (match.group(2), int(match.group(3)))
    yield Bus(broker, lines, http, listeners[False], listeners[True], data_dir)
    assert broker.stop() == 0


def event(user_id: int, **variables) -> dict:
    return {"name": "call_form_result", "data": {"user_id": user_id, "variables": variables}}


async def nothing_pending(client: CtiClient) -> None:
    """Prove the server sent nothing since the last message: a keepalive's answer is the
    very next line (of those not read yet: the lists' repeated answers, read already,
    are let go)."""
    assert not [m for m in client.forget() if m["class"] not in ("getlist", "keepalive")]
    commandid = await client.send({"class": "keepalive"})
    reply = await client.receive()
    assert reply == {
        "class": "keepalive",
        "replyid": commandid,
        "warning_string": "unimplemented",
        "timenow": reply["timenow"],
    }


# --- protocol 1.2, end to end --------------------------------------------------------------


async def test_a_1_2_client_logs_in_initialises_and_its_form_reaches_the_spec_consumer(bus):
    consumer = bus.consumer()
    client = await bus.client()
    try:
        before = time.time()
        login_id = await client.login_id("alice")
        sessionid = login_id["sessionid"]
        assert login_id == {
            "class": "login_id",
            "sessionid": sessionid,
            "xivoversion": "1.2",
            "timenow": login_id["timenow"],
        }
        assert before - 1 < login_id["timenow"] < time.time() + 1
        assert len(sessionid) == 10 == len(set(sessionid))
        assert set(sessionid) <= set(string.ascii_letters + string.digits)

        digest = hashlib.sha1(f"{sessionid}:{ALICE[1]}".encode()).hexdigest()
        commandid = await client.send({"class": "login_pass", "hashedpassword": digest})
        login_pass = await client.receive()
        assert login_pass["replyid"] == commandid and login_pass["capalist"] == [1]

        commandid = await client.send(
            {
                "class": "login_capas",
                "capaid": login_pass["capalist"][0],
                "state": "available",
                "lastconnwins": False,
                "loginkind": "user",
            }
        )
        capas = await client.expect(**{"class": "login_capas"})
        assert capas["replyid"] == commandid
        assert (capas["ipbxid"], capas["userid"], capas["appliname"]) == ("xivo", "40", "Client")
        assert ["customerinfo", "dock", "fcms"] in capas["capaxlets"]
        assert {"userstatus", "phonestatus", "services", "preferences"} <= set(capas["capas"])

        lists = await client.initialise(capas["userid"])
        assert lists == {
            "users": ["40"],
            "phones": [],
            "agents": [],
            "queues": [],
            "voicemails": [],
            "queuemembers": [],
        }
        config = next(m for m in client.seen if m.get("function") == "updateconfig")
        assert config["config"]["fullname"] == "Alice Martin"
        assert all("replyid" not in m for m in client.seen if m["class"] == "getlist")

        # As the Qt client sends it: every widget, with its JSON type; user_id is the
        # session's whatever the message says.
        await client.send(
            {
                "class": "call_form_result",
                "user_id": 1,
                "infos": {
                    "buttonname": "saveandclose",
                    "user_id": 2,
                    "variables": {
                        "XIVOFORM_lastname": "Manning",
                        "XIVOFORM_firstname": "Preston",
                        "XIVOFORM_vip": True,
                        "XIVOFORM_age": 42,
                        "XIVOFORM_rate": 1.5,
                        "XIVOFORM_client-number": "77",
                        "XIVOFORM_": "dropped",
                        "label_1": "Name:",
                    },
                },
            }
        )
        await nothing_pending(client)  # no reply, as XiVO
        assert consumer.next() == event(
            40, lastname="Manning", firstname="Preston", vip=True, age=42, rate=1.5, client="77"
        )
    finally:
        consumer.close()
        await client.close()


async def test_the_same_over_tls(bus, pki):
    consumer = bus.consumer()
    client = await bus.client(client_tls(pki))
    try:
        capas = await client.login(*CAROL[:2])
        assert capas["userid"] == "12"
        await client.initialise(capas["userid"])
        await client.call_form_result({"XIVOFORM_note": "over TLS"})
        await nothing_pending(client)
        assert consumer.next() == event(12, note="over TLS")
    finally:
        consumer.close()
        await client.close()


async def test_tls_listener_speaks_tls_from_the_first_byte(bus):
    host, port = bus.tls
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b'{"class": "login_id"}\n')  # plain text on the TLS port
    await writer.drain()
    try:
        assert await asyncio.wait_for(reader.read(), 10) == b""  # no handshake: closed
    except ConnectionResetError:
        pass
    writer.close()


# --- refusals -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("login", "password"),
    [("alice", "wrong"), ("nobody", "whatever"), ("bob", BOB[1])],
    ids=["wrong-password", "unknown-user", "no-1.2-password"],
)
async def test_1_2_refusals_wait_a_second_then_answer_and_close(bus, login, password):
    client = await bus.client()
    try:
        started = time.monotonic()
        reply = await client.login(login, password)
        assert time.monotonic() - started >= 0.9  # the refusal waits a second
        assert reply == {
            "class": "login_pass",
            "replyid": 2,
            "error_string": "login_password",
            "timenow": reply["timenow"],
        }
        assert await client.closed()
    finally:
        await client.close()


async def test_protocol_2_checks_the_password_against_the_stored_hash(bus):
    consumer = bus.consumer()
    client = await bus.client()
    try:
        reply = await client.login_id("bob", "2.0")
        assert reply["xivoversion"] == "2.0" and len(reply["sessionid"]) == 10
        await client.send({"class": "login_pass", "password": "wrong"})
        refused = await client.receive()
        assert refused == {
            "class": "login_pass",
            "error_string": "login_password",
            "timenow": refused["timenow"],
        }
        await client.send({"class": "login_pass", "password": BOB[1]})  # 2.x: still open
        accepted = await client.receive()
        assert accepted["capalist"] == [1] and "replyid" not in accepted
        await client.send({"class": "login_capas", "capaid": 1, "state": "away"})
        capas = await client.expect(**{"class": "login_capas"})
        assert capas["userid"] == "7" and "replyid" not in capas
        assert "regcommands" not in capas["capas"]
        await client.initialise("7")
        status = next(m for m in client.seen if m.get("function") == "updatestatus")
        assert status["status"]["availstate"] == "away"
        await client.call_form_result({"XIVOFORM_via": "2.0"})
        assert consumer.next() == event(7, via="2.0")
    finally:
        consumer.close()
        await client.close()


async def test_wazo_clients_send_wazoversion(bus):
    client = await bus.client()
    try:
        reply = await client.login_id("bob", "2.3", key="wazoversion")
        assert reply["wazoversion"] == "2.3" and "xivoversion" not in reply
    finally:
        await client.close()


async def test_wrong_version_and_silence_end_with_the_login_timer(bus):
    async def wrong_version() -> float:
        client = await bus.client()
        started = time.monotonic()
        reply = await client.login_id("alice", "1.1")
        assert reply["error_string"] == "xivoversion_client:1.1;1.2"
        assert await client.closed(timeout=15)  # left open: the login timer closes it
        await client.close()
        return time.monotonic() - started

    async def silent() -> float:
        client = await bus.client()
        started = time.monotonic()
        assert await client.closed(timeout=15)
        assert client.seen == []  # closed without a word
        await client.close()
        return time.monotonic() - started

    async def too_slow() -> float:
        client = await bus.client()
        started = time.monotonic()
        await client.login_id("alice")  # and no more
        assert await client.closed(timeout=15)
        await client.close()
        return time.monotonic() - started

    for elapsed in await asyncio.gather(wrong_version(), silent(), too_slow()):
        assert 4.5 <= elapsed < 15


async def test_nothing_but_login_counts_before_login(bus):
    consumer = bus.consumer()
    client = await bus.client()
    try:
        await client.call_form_result({"XIVOFORM_early": "dropped"})
        await client.send({"class": "getipbxlist"})
        await client.send({"class": "keepalive"})
        reply = await client.login_id("alice")  # the first answer is login_id's
        assert client.seen == [reply]
        await client.close()

        # Between login_pass and login_capas a legacy command is "notloggedyet", closed.
        client = await bus.client()
        reply = await client.login_id("alice")
        digest = hashlib.sha1(f"{reply['sessionid']}:{ALICE[1]}".encode()).hexdigest()
        await client.send({"class": "login_pass", "hashedpassword": digest})
        await client.expect(**{"class": "login_pass"})
        await client.call_form_result({"XIVOFORM_authenticated": "yes"})  # accepted now
        commandid = await client.send({"class": "getipbxlist"})
        refused = await client.receive()
        assert refused["error_string"] == "notloggedyet" and refused["replyid"] == commandid
        assert await client.closed()
        assert consumer.next() == event(40, authenticated="yes")
    finally:
        consumer.close()
        await client.close()


# --- the rest of a session ------------------------------------------------------------


async def test_keepalive_presence_unknown_classes_and_logout(bus):
    client = await bus.logged_in()
    try:
        await client.initialise("40")
        await client.send({"class": "no_such_class", "x": 1})
        await client.send({"class": "ipbxcommand", "command": "dial"})
        unimplemented = await client.receive()
        assert unimplemented["warning_string"] == "unimplemented"  # as XiVO's "sheet"
        await client.send({"class": "availstate", "availstate": "donotdisturb", "userid": "40"})
        status = await client.receive()
        assert status["status"] == {"availstate": "donotdisturb", "connection": "yes"}
        await client.send({"class": "availstate", "availstate": "not-a-presence"})
        await client.getlist("updatestatus", "users", tid="40")
        status = await client.receive()
        assert status["status"]["availstate"] == "donotdisturb"  # kept per session
        other = await bus.logged_in()
        await other.getlist("updatestatus", "users", tid="40")
        assert (await other.expect(function="updatestatus"))["status"]["availstate"] == (
            "available"
        )
        await other.close()
        await client.getlist("updateconfig", "users", tid="3")  # not ours: nothing
        await client.getlist("listid", "meetmes")  # unknown list: nothing
        await nothing_pending(client)
        await client.send({"class": "logout", "stopper": "quit"})
        assert await client.closed()
    finally:
        await client.close()


# --- abuse ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [b"{not json\n", b"[1, 2]\n", b'{"no": "class"}\n', b"\xff\xfe\n", b'{"class": NaN}\n'],
    ids=["garbage", "array", "no-class", "not-utf8", "nan"],
)
async def test_malformed_lines_close_the_connection_without_a_word(bus, line):
    client = await bus.logged_in()
    try:
        seen = len(client.seen)
        await client.send_raw(line)
        assert await client.closed()
        assert len(client.seen) == seen
    finally:
        await client.close()
    await (await bus.logged_in()).close()  # the server is fine


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return int(next(line for line in status if line.startswith("VmRSS:")).split()[1])


async def test_a_10_mb_line_is_refused_before_it_is_whole(bus):
    client = await bus.client()
    before = rss_kib(bus.broker.proc.pid)
    chunk = b"x" * 65536
    sent = 0
    try:
        await client.send_raw(b'{"class": "login_id", "userlogin": "')
        while sent < 10 * 1024 * 1024:
            await client.send_raw(chunk)
            sent += len(chunk)
    except (ConnectionResetError, BrokenPipeError):
        pass  # closed by the server before we were done: what we want
    assert await client.closed()
    await client.close()
    # The line was never kept whole: the server grew by far less than 10 MB.
    assert rss_kib(bus.broker.proc.pid) - before < 6 * 1024
    await (await bus.logged_in()).close()


async def test_a_flood_of_call_form_results_is_rate_limited_and_starves_nobody(bus):
    consumer = bus.consumer()
    flooder = await bus.logged_in(CAROL)
    other = await bus.logged_in()
    try:
        line = {"class": "call_form_result", "infos": {"variables": {"XIVOFORM_n": "flood"}}}
        await flooder.send_raw((json.dumps(line) + "\n").encode() * 5000)
        started = time.monotonic()
        await other.call_form_result({"XIVOFORM_n": "other"})
        await nothing_pending(other)  # the other session is answered at once
        # The broker answers AMQP clients all along.
        connection = pika.BlockingConnection(
            pika.ConnectionParameters(bus.broker.host, bus.broker.port)
        )
        channel = connection.channel()
        queue = channel.queue_declare("", exclusive=True).method.queue
        channel.basic_publish("", queue, b"still here")
        assert channel.basic_get(queue, auto_ack=True)[2] == b"still here"
        connection.close()
        flood = 0
        while (message := consumer.next())["data"]["variables"]["n"] == "flood":
            flood += 1
        elapsed = time.monotonic() - started
        # 10 at once, then 2 a second (the rest dropped): far fewer than the 5000 sent.
        assert message == event(40, n="other")
        assert flood <= 10 + 2 * elapsed + 2
        await nothing_pending(flooder)  # and the flood is over: it answers at once
    finally:
        await flooder.close()
        await other.call_form_result({"XIVOFORM_n": "last"})  # everything before it is out
        while consumer.next()["data"]["variables"]["n"] != "last":
            pass
        consumer.close()
        await other.close()


async def test_200_concurrent_sessions(bus):
    consumer = bus.consumer()
    logins = asyncio.Semaphore(50)

    async def session(number: int) -> CtiClient:
        async with logins:
            return await bus.logged_in((f"agent{number}", "agent-secret", 1000 + number))

    sessions = await asyncio.gather(
        *(session(n) for n in range(1, AGENTS + 1) for _ in range(SESSIONS_PER_AGENT))
    )
    try:
        assert len(sessions) == 200
        await asyncio.gather(*(client.initialise(client_userid(client)) for client in sessions))
        for index, client in enumerate(sessions):
            await client.call_form_result({"XIVOFORM_session": index})
        received = set()
        for _ in sessions:
            data = consumer.next()["data"]
            received.add((data["user_id"], data["variables"]["session"]))
        expected = {(1000 + index // SESSIONS_PER_AGENT + 1, index) for index in range(200)}
        assert received == expected
        # All still there: a sheet for agent7 reaches its four sessions.
        push = await asyncio.to_thread(push_sheet, bus, {"user_id": 1007}, "agent7")
        assert push["delivered"] == {"cti": SESSIONS_PER_AGENT, "web": 0}
        for client in sessions[24:28]:
            assert decode_sheet(await client.expect(**{"class": "sheet"})).channel
        await asyncio.gather(*(nothing_pending(client) for client in sessions))
    finally:
        consumer.close()
        await asyncio.gather(*(client.close() for client in sessions))


def client_userid(client: CtiClient) -> str:
    return next(m for m in client.seen if m["class"] == "login_capas")["userid"]


# --- sheets ---------------------------------------------------------------------------


def push_sheet(bus: Bus, request: dict, login: str = "alice") -> dict:
    password = {"alice": ALICE[1], "agent7": "agent-secret"}[login]
    response = httpx.post(bus.http + "api/sheets", json=request, auth=(login, password))
    assert response.status_code == 201, response.text
    return response.json()


async def test_a_sheet_for_a_user_reaches_their_sessions_and_saving_it_publishes(bus):
    consumer = bus.consumer()
    first, second, carol = await bus.logged_in(), await bus.logged_in(), await bus.logged_in(CAROL)
    try:
        request = {
            "user_id": 40,
            "form": "contact",
            "channel": "SIP/abc-00000001",
            "variables": {"firstname": "John", "lastname": "Doe & <Co>", "unused": 1},
        }
        push = await asyncio.to_thread(push_sheet, bus, request)
        assert push["delivered"] == {"cti": 2, "web": 0} and push["user_ids"] == [40]
        for client in (first, second):
            message = await client.expect(**{"class": "sheet"})
            assert message["compressed"] is True and message["channel"] == "SIP/abc-00000001"
            sheet = decode_sheet(message)
            assert sheet.internal("ipbxid") == "xivo"
            fields = [name for name in sheet.widgets if name.startswith("XIVOFORM_")]
            assert fields == [
                "XIVOFORM_firstname",
                "XIVOFORM_lastname",
                "XIVOFORM_phone",
                "XIVOFORM_comment",
            ]
            assert sheet.widgets["save"].get("class") == "QPushButton"
            assert sheet.value("XIVOFORM_firstname") == "John"
            assert sheet.value("XIVOFORM_lastname") == "Doe & <Co>"
            forms = sheet.profile.findall("./user/sheet_info[@type='form']")
            assert [node.text for node in forms] == ["qtui"]
        await nothing_pending(carol)  # not for her

        # The agent saves: the client sends every widget of the form.
        await first.call_form_result(
            {
                "XIVOFORM_firstname": "John",
                "XIVOFORM_lastname": "Doe & <Co>",
                "XIVOFORM_phone": "0123",
                "XIVOFORM_comment": "",
                "label_firstname": "First name",
            }
        )
        assert consumer.next() == event(
            40, firstname="John", lastname="Doe & <Co>", phone="0123", comment=""
        )
        missing = httpx.post(
            bus.http + "api/sheets", json={"user_id": 40, "form": "nope"}, auth=ALICE[:2]
        )
        assert missing.status_code == 404 and missing.json()["known"] == ["contact"]
        neither = httpx.post(bus.http + "api/sheets", json={"form": "contact"}, auth=ALICE[:2])
        assert neither.status_code == 422
    finally:
        consumer.close()
        for client in (first, second, carol):
            await client.close()


async def test_a_sheet_for_a_queue_from_the_command_line_reaches_its_members(bus):
    alice, carol = await bus.logged_in(), await bus.logged_in(CAROL)
    bob = await bus.logged_in(BOB, "2.0")  # a member too, on protocol 2.0
    try:
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "xivo_bus", "cti", "sheet", "--queue", "sales"]
            + ["--channel", "SIP/q-0001", "firstname=Ann", "--url", bus.broker.url],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout == "published call_form_request to xivo-cti\n"
        for client in (carol, bob):
            sheet = decode_sheet(await client.expect(timeout=20, **{"class": "sheet"}))
            assert sheet.channel == "SIP/q-0001"
            assert sheet.value("XIVOFORM_firstname") == "Ann"
        await nothing_pending(alice)  # alice is not in the sales queue
    finally:
        for client in (alice, carol, bob):
            await client.close()


# --- the users file -----------------------------------------------------------------


def test_cti_passwords_are_kept_only_for_cti_clients(tmp_path):
    def users(*args: str, password: str = "s3cret-cti") -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "xivo_bus", "users", *args, "--password-stdin"]
            + ["--data-dir", str(tmp_path)],
            input=password + "\n",
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert users("add", "alice", "--id", "40", "--cti-client", "--queue", "sales").returncode == 0
    assert users("add", "bob", "--id", "7").returncode == 0
    path = tmp_path / "users.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    saved = {user["login"]: user for user in json.loads(path.read_text())["users"]}
    assert saved["alice"]["cti_password"] == "s3cret-cti"
    assert saved["alice"]["queues"] == ["sales"]
    assert "cti_password" not in saved["bob"] and "s3cret" not in json.dumps(saved["bob"])
    listing = subprocess.run(
        [sys.executable, "-m", "xivo_bus", "users", "list", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listing.stdout == "7\tbob\tbob\n40\talice\talice\tcti-client\tqueues=sales\n"
    changed = users("password", "alice", password="new")  # without --cti-client: gone
    assert changed.stdout == "changed the password of alice (id 40)\n"
    assert "cti_password" not in json.loads(path.read_text())["users"][1]
    assert UserStore(tmp_path).authenticate("alice", "new").id == 40
    assert users("password", "bob", "--cti-client", password="b").returncode == 0
    assert UserStore(tmp_path).get("bob").cti_password == "b"


async def test_the_tls_listener_may_use_the_brokers_certificate(tmp_path, pki):
    broker = start_broker(
        "--http",
        "127.0.0.1:0",
        "--data-dir",
        str(tmp_path),
        "--ssl-listen",
        "127.0.0.1:0",
        "--ssl-certfile",
        str(pki["cert"]),
        "--ssl-keyfile",
        str(pki["key"]),
        "--cti-tls-listen",
        "127.0.0.1:0",
        cti=True,
    )
    try:
        lines = ChildLines(broker.proc)
        match = CTI_READY.match(lines.wait_for("xivo-bus: CTI clients over TLS", timeout=30))
        client = await CtiClient.connect(match.group(2), int(match.group(3)), client_tls(pki))
        reply = await client.login_id("nobody")  # unknown logins are refused at login_pass
        assert reply["xivoversion"] == "1.2" and len(reply["sessionid"]) == 10
        await client.close()
    finally:
        assert broker.stop() == 0
