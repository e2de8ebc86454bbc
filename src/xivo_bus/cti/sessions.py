"""The pages' sessions and what protects them from other sites.

A session is kept on the server, in ``sessions.sqlite3`` of the data directory (mode
0600); the cookie holds only its random id (256 bits; the file keeps the id's SHA-256,
never the id). So a session ends for good, copied cookies included: at logout (its row
is deleted), when the user's password changes or the user is removed (each row keeps a
fingerprint of the user's password hash, id and login as they were at login; the users
file is re-read when it changes, ``xivo-bus users password`` included), and
``LIFETIME`` after login.

Every state-changing request of the pages carries a CSRF token: an HMAC, keyed from the
data directory's ``secret``, of the session id (before login: of a random value kept in
a cookie of the login page), compared in constant time. On top of it, ``cross_origin``
refuses any state-changing request whose ``Origin`` (or, without it, ``Referer``) is not
the service's own: another port of the same host is another origin, though the same
site, which ``SameSite`` cookies do not tell apart.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from xivo_bus.cti.users import User, UserStore
from xivo_bus.paths import private_database

SESSIONS_FILE = "sessions.sqlite3"
COOKIE = "xivo_bus"  # the session id, once logged in
LOGIN_COOKIE = "xivo_bus_login"  # the value the login form's token is bound to
LIFETIME = 12 * 3600  # seconds from login: an agent's working day, not weeks
CSRF_FIELD = "csrf-token"  # not a valid field name of a call form: never a form's own
CSRF_HEADER = "X-CSRF-Token"  # for API calls authenticated by the session cookie
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
FLASHES = 1000  # pending "sent"/"kept" notices, one a session at most


@dataclass(frozen=True)
class Session:
    id: str  # the cookie's value
    user: User
    expires: float


class SessionStore:
    """The logged-in sessions of ``users``, kept in the SQLite file ``path``."""

    def __init__(self, path: Path, secret: str, users: UserStore, lifetime: float = LIFETIME):
        self.users = users
        self.lifetime = lifetime
        self._key = hashlib.sha256(f"xivo-bus cti sessions\0{secret}".encode()).digest()
        self._flashes: OrderedDict[str, dict] = OrderedDict()
        private_database(path)
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # a session lost in a crash: log in
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, login TEXT NOT NULL,"
            " credential TEXT NOT NULL, expires REAL NOT NULL)"
        )

    def close(self) -> None:
        self._db.close()

    def create(self, user: User) -> Session:
        """A new session of ``user``; expired ones are dropped meanwhile."""
        now = time.time()
        self._db.execute("DELETE FROM sessions WHERE expires <= ?", (now,))
        session = Session(secrets.token_urlsafe(32), user, now + self.lifetime)
        self._db.execute(
            "INSERT INTO sessions (id, login, credential, expires) VALUES (?, ?, ?, ?)",
            (_digest(session.id), user.login, self._credential(user), session.expires),
        )
        return session

    def get(self, session_id: str | None) -> Session | None:
        """The live session of that id: None once it was ended, has expired, or its user
        was removed or given another password since login."""
        if not session_id or len(session_id) > 100:
            return None
        key = _digest(session_id)
        row = self._db.execute(
            "SELECT login, credential, expires FROM sessions WHERE id = ?", (key,)
        ).fetchone()
        if row is None:
            return None
        login, credential, expires = row
        user = self.users.get(login)
        if (
            expires <= time.time()
            or user is None
            or not hmac.compare_digest(credential, self._credential(user))
        ):
            self.end(session_id)
            return None
        return Session(session_id, user, expires)

    def end(self, session_id: str) -> None:
        key = _digest(session_id)
        self._db.execute("DELETE FROM sessions WHERE id = ?", (key,))
        self._flashes.pop(key, None)

    def set_flash(self, session: Session, flash: dict) -> None:
        """A notice for the next page of ``session`` (kept in memory only)."""
        key = _digest(session.id)
        self._flashes[key] = flash
        self._flashes.move_to_end(key)
        while len(self._flashes) > FLASHES:
            self._flashes.popitem(last=False)

    def pop_flash(self, session: Session) -> dict | None:
        return self._flashes.pop(_digest(session.id), None)

    # --- CSRF tokens ---------------------------------------------------------------

    def csrf_token(self, binding: str) -> str:
        """The token of the forms of a session (``binding``: its id), or of the login
        form (``binding``: the login cookie's value)."""
        return hmac.new(self._key, f"csrf\0{binding}".encode(), hashlib.sha256).hexdigest()

    def csrf_valid(self, binding: str | None, token: object) -> bool:
        if not binding or not isinstance(token, str):
            return False
        return hmac.compare_digest(self.csrf_token(binding), token)

    def _credential(self, user: User) -> str:
        text = f"credential\0{user.id}\0{user.login}\0{user.password}"
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def new_login_binding() -> str:
    return secrets.token_urlsafe(32)


# --- cookies ---------------------------------------------------------------------------


def is_https(request: Request) -> bool:
    """Whether the browser reached the service over HTTPS. The service itself speaks
    plain HTTP; behind a TLS proxy, uvicorn takes the scheme from the proxy's
    ``X-Forwarded-Proto`` only when the proxy connects from an address it trusts
    (``FORWARDED_ALLOW_IPS``, loopback by default), from anyone else never."""
    return request.url.scheme == "https"


def set_cookie(
    response: Response, name: str, value: str, *, secure: bool, max_age: int | None = None
) -> None:
    """Set a cookie of the pages: ``HttpOnly``, ``SameSite=Lax``, ``Secure`` when served
    over HTTPS; the login cookie only for ``/login``."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/login" if name == LOGIN_COOKIE else "/",
        secure=secure,
        httponly=True,
        samesite="lax",
    )


def clear_cookie(response: Response, name: str, *, secure: bool) -> None:
    set_cookie(response, name, "", secure=secure, max_age=0)


# --- the origin of a request -----------------------------------------------------------


def _origin(url: str) -> tuple[str, str, int] | None:
    """``(scheme, host, port)`` of an http(s) URL, None for anything else (``null``)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return parts.scheme, parts.hostname.lower(), port or (443 if parts.scheme == "https" else 80)


def _show(origin: tuple[str, str, int] | None, fallback: str) -> str:
    if origin is None:
        return repr(fallback)
    scheme, host, port = origin
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}:{port}"


def cross_origin(request: Request) -> str | None:
    """Why a state-changing request comes from another origin than this service's; None
    when it comes from the service's own pages, or from a client that sends neither
    ``Origin`` nor ``Referer`` (scripts, curl: no browser, so no other site behind it;
    the session's CSRF token still applies to them)."""
    sent, header = request.headers.get("origin"), "Origin"
    if sent is None:
        sent, header = request.headers.get("referer"), "Referer"
        if sent is None:
            return None
    own = _origin(str(request.base_url))
    theirs = _origin(sent)
    if own is not None and theirs == own:
        return None
    return (
        f"this request comes from another site: its {header} is {_show(theirs, sent)}, "
        f"this service is {_show(own, str(request.base_url))}. "
        "Forms are accepted only from this service's own pages."
    )
