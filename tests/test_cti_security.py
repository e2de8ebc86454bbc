"""The call forms against other sites and stolen cookies, on a real ``xivo-bus cti``
process over HTTP: state-changing requests from another origin are refused (403) and
publish nothing; the pages' forms carry a per-session CSRF token, without which they are
refused; logout and a password change end the sessions, copied cookies included; cookies
are ``Secure`` behind HTTPS; the data files are created private."""

from __future__ import annotations

import os
import re
import sqlite3
import stat
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from conftest import ChildLines, start_broker
from cti_support import SpecConsumer, add_agent, cti_line, expected, start_cti
from starlette.responses import Response

from xivo_bus.broker.store import Store
from xivo_bus.cti.outbox import Outbox
from xivo_bus.cti.sessions import COOKIE, LOGIN_COOKIE, SessionStore, set_cookie
from xivo_bus.cti.users import UserStore

TOKEN = re.compile(r'name="csrf-token" value="([^"]+)"')
CONTACT = {"firstname": "John", "lastname": "Doe", "phone": "", "comment": ""}


@pytest.fixture(scope="module")
def agents(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("cti-security")
    return data_dir, add_agent(data_dir, "alice", 40), add_agent(data_dir, "bob", 7)


@pytest.fixture(scope="module")
def cti(broker, agents):
    process = start_cti(broker.url, agents[0])
    yield process
    assert process.stop() == 0


@pytest.fixture
def consumer(broker):
    spec_consumer = SpecConsumer(broker.host, broker.port)
    yield spec_consumer
    spec_consumer.close()


def token_of(page: httpx.Response) -> str:
    match = TOKEN.search(page.text)
    assert match, f"no CSRF token in the page: {page.text[:2000]}"
    return match.group(1)


def logged_in(url: str, agent, **headers: str) -> httpx.Client:
    """A client logged in through the login page, as a browser would (cookies kept)."""
    http = httpx.Client(base_url=url, headers=headers)
    token = token_of(http.get("/login"))
    form = {"login": agent.login, "password": agent.password, "next": "/forms"}
    response = http.post("/login", data={**form, "csrf-token": token})
    assert response.status_code == 303 and response.headers["location"] == "/forms", response
    assert http.cookies.get(COOKIE)
    return http


def save_contact(http: httpx.Client, token: str | None, **headers: str) -> httpx.Response:
    data = dict(CONTACT) if token is None else {**CONTACT, "csrf-token": token}
    return http.post("/forms/contact", data=data, headers=headers)


def sentinel_first(http: httpx.Client, consumer: SpecConsumer, user_id: int) -> None:
    """Nothing was published before: a form saved now is the next event on the bus."""
    response = save_contact(http, token_of(http.get("/forms/contact")))
    assert response.status_code == 303
    assert consumer.next() == expected(user_id, **CONTACT)


# --- cross-site requests -----------------------------------------------------------------


def test_a_cross_site_post_is_refused_and_publishes_nothing(cti, agents, consumer, unused_port):
    http = logged_in(cti.url, agents[1])
    token = token_of(http.get("/forms/contact"))  # even with the right token
    own = cti.url.rstrip("/")
    for headers in (
        {"Origin": "http://evil.example"},
        {"Origin": f"http://127.0.0.1:{unused_port}"},  # the same site, another port
        {"Origin": own.replace("127.0.0.1", "localhost")},
        {"Origin": own.replace("http:", "https:")},
        {"Origin": "null"},  # a sandboxed frame, a data: URL
        {"Referer": "http://evil.example/attack.html"},  # no Origin: the Referer decides
        {"Origin": "http://evil.example", "Referer": f"{own}/forms/contact"},
    ):
        response = save_contact(http, token, **headers)
        assert response.status_code == 403, headers
        assert "another site" in response.text and "Refused" in response.text, response.text
        assert "this service is http://127.0.0.1:" in response.text

    # The JSON API with the session cookie, and even with HTTP Basic (a browser keeps
    # Basic credentials and sends them along too): refused from another origin.
    evil = {"Origin": "http://evil.example", "X-CSRF-Token": token}
    api = http.post("/api/forms/contact/results", json={"variables": CONTACT}, headers=evil)
    assert api.status_code == 403
    assert "another site" in api.json()["error"]
    basic = httpx.post(
        cti.url + "api/cti",
        json={"class": "call_form_result", "infos": {"variables": {"XIVOFORM_a": "1"}}},
        headers={"Origin": "http://evil.example"},
        auth=(agents[1].login, agents[1].password),
    )
    assert basic.status_code == 403

    # Logging out and logging in (login CSRF) from another site are refused as well.
    assert http.post("/logout", data={"csrf-token": token}, headers=evil).status_code == 403
    stranger = httpx.Client(base_url=cti.url)
    login_token = token_of(stranger.get("/login"))
    form = {"login": "bob", "password": agents[2].password, "csrf-token": login_token}
    assert stranger.post("/login", data=form, headers=evil).status_code == 403
    assert COOKIE not in stranger.cookies

    # The same requests from the service's own pages (their Origin) go through.
    assert http.get("/api/me").json()["id"] == 40  # the session survived all of that
    assert save_contact(http, token, Origin=own).status_code == 303
    assert consumer.next() == expected(40, **CONTACT)  # the first event: none came before


# --- CSRF tokens ---------------------------------------------------------------------------


def test_a_missing_or_wrong_token_is_refused(cti, agents, consumer):
    alice, bob = logged_in(cti.url, agents[1]), logged_in(cti.url, agents[2])
    bobs_token = token_of(bob.get("/forms/contact"))
    for token in (None, "", "0" * 64, bobs_token):
        response = save_contact(alice, token)
        assert response.status_code == 403, token
        assert "security token of the form is missing or out of date" in response.text
        assert 'href="/forms/contact"' in response.text  # where to start again

    # Logging out needs it too (the token of the logout button of every page).
    token = token_of(alice.get("/forms"))
    assert alice.post("/logout", data={}).status_code == 403
    assert alice.post("/logout", data={"csrf-token": bobs_token}).status_code == 403
    assert alice.get("/api/me").status_code == 200  # still logged in

    # An API call authenticated by the session cookie needs the token in a header.
    body = {"variables": CONTACT}
    for headers in ({}, {"X-CSRF-Token": bobs_token}):
        response = alice.post("/api/forms/contact/results", json=body, headers=headers)
        assert response.status_code == 403
        assert response.json()["error"] == (
            "a request with the session cookie needs the X-CSRF-Token header"
        )

    # The login form's token is bound to the login page's cookie.
    stranger = httpx.Client(base_url=cti.url)
    login_token = token_of(stranger.get("/login"))
    assert stranger.cookies.get(LOGIN_COOKIE)
    form = {"login": "alice", "password": agents[1].password}
    for data, cookies in (
        (form, None),  # no token
        ({**form, "csrf-token": "x" * 64}, None),  # a wrong one
        ({**form, "csrf-token": login_token}, {}),  # a token without its cookie
    ):
        if cookies is not None:
            stranger.cookies.clear()
        response = stranger.post("/login", data=data)
        assert response.status_code == 403
        assert "security token of the login form" in response.text
        assert COOKIE not in stranger.cookies

    sentinel_first(alice, consumer, 40)
    response = alice.post("/api/forms/contact/results", json=body, headers={"X-CSRF-Token": token})
    assert response.status_code == 201
    assert consumer.next() == expected(40, **CONTACT)


# --- sessions ----------------------------------------------------------------------------


def test_logout_ends_the_session_for_a_copied_cookie_too(cti, agents, consumer):
    http = logged_in(cti.url, agents[1])
    token = token_of(http.get("/forms/contact"))
    copied = httpx.Client(base_url=cti.url, cookies={COOKIE: http.cookies[COOKIE]})
    assert copied.get("/api/me").status_code == 200  # the copy works while logged in

    response = http.post("/logout", data={"csrf-token": token})
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert COOKIE not in http.cookies  # the browser's copy is cleared

    assert copied.get("/api/me").status_code == 401
    page = copied.get("/forms/contact")
    assert page.status_code == 303 and page.headers["location"].startswith("/login")
    response = save_contact(copied, token)
    assert response.status_code == 303 and response.headers["location"].startswith("/login")
    sentinel_first(logged_in(cti.url, agents[1]), consumer, 40)  # nothing came from it


def test_a_password_change_ends_the_users_sessions(cti, agents):
    data_dir = agents[0]
    carol = add_agent(data_dir, "carol", 12)  # while the service runs
    sessions = [logged_in(cti.url, carol), logged_in(cti.url, carol)]
    alice = logged_in(cti.url, agents[1])
    assert all(http.get("/api/me").json()["id"] == 12 for http in sessions)

    changed = subprocess.run(
        [sys.executable, "-m", "xivo_bus", "users", "password", "carol", "--password-stdin"]
        + ["--data-dir", str(data_dir)],
        input="carol-new-secret\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert changed.returncode == 0, changed.stderr
    for http in sessions:  # at once, on the next request
        assert http.get("/api/me").status_code == 401
        assert http.get("/forms").status_code == 303
    assert alice.get("/api/me").status_code == 200  # other users keep theirs

    again = logged_in(cti.url, replace(carol, password="carol-new-secret"))
    assert again.get("/api/me").json()["id"] == 12


def test_the_session_cookie_is_short_lived_httponly_and_secure_behind_https(cti, agents):
    plain = httpx.Client(base_url=cti.url)
    page = plain.get("/login")
    (login_cookie,) = page.headers.get_list("set-cookie")
    assert login_cookie.startswith(f"{LOGIN_COOKIE}=") and "Secure" not in login_cookie
    assert "Path=/login" in login_cookie and "HttpOnly" in login_cookie
    form = {"login": "alice", "password": agents[1].password, "csrf-token": token_of(page)}
    (cookie,) = plain.post("/login", data=form).headers.get_list("set-cookie")
    assert cookie.startswith(f"{COOKIE}=")
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert attributes == {"max-age", "path", "httponly", "samesite"}  # no Secure on HTTP
    assert "Max-Age=43200" in cookie and "SameSite=lax" in cookie  # 12 hours, not 14 days

    # Behind a TLS proxy on this host (X-Forwarded-Proto, trusted from loopback only).
    # httpx, as a browser, keeps Secure cookies for https URLs: they are sent by hand.
    tls = httpx.Client(base_url=cti.url, headers={"X-Forwarded-Proto": "https"})
    page = tls.get("/login")
    assert "; Secure" in page.headers["set-cookie"]
    form["csrf-token"] = token_of(page)
    https_origin = cti.url.replace("http:", "https:").rstrip("/")
    login_cookie = page.headers["set-cookie"].split(";")[0]
    headers = {"Origin": https_origin, "Cookie": login_cookie}
    response = tls.post("/login", data=form, headers=headers)
    assert response.status_code == 303
    assert "; Secure" in response.headers["set-cookie"]
    session_cookie = response.headers["set-cookie"].split(";")[0]
    assert tls.get("/api/me", headers={"Cookie": session_cookie}).status_code == 200


def test_the_cookie_function_sets_secure_for_https():
    for secure in (False, True):
        response = Response()
        set_cookie(response, COOKIE, "abc", secure=secure, max_age=60)
        header = response.headers["set-cookie"]
        assert ("; secure" in header.lower()) is secure
        assert "httponly" in header.lower() and "samesite=lax" in header.lower()


# --- files ---------------------------------------------------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_data_files_are_created_private_in_a_private_directory(tmp_path):
    data_dir = tmp_path / "new" / "xivo-bus"  # made by the service
    umask = os.umask(0o022)  # the usual umask: files 0644 and directories 0755 by default
    try:
        broker = start_broker("--http", "127.0.0.1:0", "--data-dir", str(data_dir), cti=True)
    finally:
        os.umask(umask)
    try:
        url = cti_line(ChildLines(broker.proc))
        agent = add_agent(data_dir, "erin", 3)  # as `xivo-bus users add` does
        http = logged_in(url, agent)
        assert save_contact(http, token_of(http.get("/forms/contact"))).status_code == 303

        assert mode(data_dir) == 0o700
        names = ["users.json", "secret"] + [
            database + suffix
            for database in ("broker.sqlite", "outbox.sqlite3", "sessions.sqlite3")
            for suffix in ("", "-wal", "-shm")
        ]
        modes = {path.name: oct(mode(path)) for path in data_dir.iterdir()}
        assert set(names) <= set(modes)
        assert modes.pop("pages") == oct(0o700)  # queue backlogs paged out
        assert modes == dict.fromkeys(modes, oct(0o600))  # ctl.sock (ctl's socket) too
    finally:
        assert broker.stop() == 0


def test_databases_exist_private_before_sqlite_opens_them(tmp_path, monkeypatch):
    """Not narrowed after SQLite made them 0644: private before it touches the path."""
    seen: dict[str, int | None] = {}
    connect = sqlite3.connect

    def watching(path, *args, **kwargs):
        seen[Path(path).name] = mode(path) if os.path.exists(path) else None
        return connect(path, *args, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", watching)
    umask = os.umask(0o022)
    try:
        store = Store(tmp_path / "broker")
        store.open()
        store.close()
        assert mode(tmp_path / "broker") == 0o700
        Outbox(tmp_path / "outbox.sqlite3", None)._db.close()
        SessionStore(tmp_path / "sessions.sqlite3", "secret", UserStore(tmp_path)).close()
    finally:
        os.umask(umask)
    assert seen == {"broker.sqlite": 0o600, "outbox.sqlite3": 0o600, "sessions.sqlite3": 0o600}


def test_databases_left_readable_by_an_older_version_are_narrowed(tmp_path):
    names = ("outbox.sqlite3", "outbox.sqlite3-wal", "outbox.sqlite3-shm")
    for name in names:
        (tmp_path / name).touch()
        (tmp_path / name).chmod(0o644)
    outbox = Outbox(tmp_path / "outbox.sqlite3", None)
    try:
        assert {name: mode(tmp_path / name) for name in names} == dict.fromkeys(names, 0o600)
    finally:
        outbox._db.close()
