"""The users file: who may log in to the call forms, and the ``user_id`` of their events.

A JSON file ``users.json`` in the data directory::

    {"users": [{"id": 40, "login": "alice", "name": "Alice Martin",
                "password": "scrypt$16384$8$1$<salt>$<hash>"}]}

Passwords are stored as stdlib ``hashlib.scrypt`` hashes (salted, memory-hard); the file
is written atomically and readable by its owner only. The store re-reads the file when it
changes on disk, so ``xivo-bus users add`` takes effect in a running service.

A user added with ``--cti-client`` also has ``"cti_password"``: the password itself, in
clear, because XiVO's CTI protocol 1.2 proves the password with
``sha1(sessionid + ":" + password)``, which only a server that knows the password can
check (XiVO kept its CTI passwords in clear too). Anyone who can read the file has those
passwords. Users without it log in with protocol 2.x or the web page, against the hash.
``"queues"`` lists the queues a user answers, for call forms pushed to a queue.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets
from dataclasses import dataclass, replace
from pathlib import Path

from xivo_bus.paths import private_dir

USERS_FILE = "users.json"
LOGIN_PATTERN = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
QUEUE_PATTERN = re.compile(r"[A-Za-z0-9_.@-]{1,64}")

# scrypt cost: n=2**14, r=8, p=1 takes ~16 MiB and tens of milliseconds, as OWASP suggests.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


class UserError(ValueError):
    """A user that cannot be added or a users file that cannot be read."""


@dataclass(frozen=True)
class User:
    id: int
    login: str
    name: str
    password: str  # the hash, never the password
    cti_password: str | None = None  # the password in clear: CTI protocol 1.2 users only
    queues: tuple[str, ...] = ()

    def public(self) -> dict:
        return {"id": self.id, "login": self.login, "name": self.name}

    def saved(self) -> dict:
        """The user as the file keeps it (optional keys only when set)."""
        entry = {"id": self.id, "login": self.login, "name": self.name}
        entry["password"] = self.password
        if self.cti_password is not None:
            entry["cti_password"] = self.cti_password
        if self.queues:
            entry["queues"] = list(self.queues)
        return entry


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P)
    return "$".join(
        ["scrypt", str(_SCRYPT_N), str(_SCRYPT_R), str(_SCRYPT_P), _b64(salt), _b64(digest)]
    )


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        computed = _scrypt(password, base64.b64decode(salt), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(computed, base64.b64decode(digest))


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=2**26)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# Checked against when a login is unknown, so that the answer takes as long as for a
# wrong password.
_DUMMY_HASH = hash_password(secrets.token_hex(8))


class UserStore:
    """The users of ``users.json`` in ``data_dir``, re-read when the file changes."""

    def __init__(self, data_dir: Path):
        self.path = Path(data_dir) / USERS_FILE
        self._users: dict[str, User] = {}
        self._stamp: tuple[int, ...] | None = None

    def all(self) -> list[User]:
        self._refresh()
        return sorted(self._users.values(), key=lambda user: user.id)

    def get(self, login: str) -> User | None:
        self._refresh()
        return self._users.get(login)

    def authenticate(self, login: str, password: str) -> User | None:
        user = self.get(login)
        if user is None:
            verify_password(password, _DUMMY_HASH)
            return None
        return user if verify_password(password, user.password) else None

    def members(self, queue: str) -> list[User]:
        """The users who answer ``queue``."""
        return [user for user in self.all() if queue in user.queues]

    def add(
        self,
        login: str,
        password: str,
        *,
        user_id: int | None = None,
        name: str = "",
        cti_client: bool = False,
        queues: tuple[str, ...] | list[str] = (),
    ) -> User:
        """Add a user; ``user_id`` defaults to one more than the highest id so far. With
        ``cti_client`` the password is also kept in clear, for CTI protocol 1.2 logins."""
        users = {user.login: user for user in self.all()}
        if not LOGIN_PATTERN.fullmatch(login):
            raise UserError(
                f"login {login!r}: use 1 to 64 letters, digits or the characters _ . @ -"
            )
        if login in users:
            raise UserError(f"login {login!r} already exists (id {users[login].id})")
        if not password:
            raise UserError("the password must not be empty")
        if user_id is None:
            user_id = max((user.id for user in users.values()), default=0) + 1
        if user_id < 0:
            raise UserError(f"user id {user_id}: must be zero or positive")
        taken = next((user for user in users.values() if user.id == user_id), None)
        if taken is not None:
            raise UserError(f"user id {user_id} already belongs to {taken.login!r}")
        for queue in queues:
            if not QUEUE_PATTERN.fullmatch(queue):
                raise UserError(
                    f"queue {queue!r}: use 1 to 64 letters, digits or the characters _ . @ -"
                )
        user = User(
            user_id,
            login,
            name or login,
            hash_password(password),
            password if cti_client else None,
            tuple(dict.fromkeys(queues)),
        )
        users[login] = user
        self._write(users.values())
        return user

    def set_password(self, login: str, password: str, *, cti_client: bool = False) -> User:
        """Change a user's password; with ``cti_client`` it is also kept in clear for CTI
        protocol 1.2, without it any password kept in clear is removed."""
        users = {user.login: user for user in self.all()}
        if login not in users:
            raise UserError(f"no user {login!r} in {self.path}")
        if not password:
            raise UserError("the password must not be empty")
        user = replace(
            users[login],
            password=hash_password(password),
            cti_password=password if cti_client else None,
        )
        users[login] = user
        self._write(users.values())
        return user

    def remove(self, login: str) -> User:
        users = {user.login: user for user in self.all()}
        if login not in users:
            raise UserError(f"no user {login!r} in {self.path}")
        user = users.pop(login)
        self._write(users.values())
        return user

    def _refresh(self) -> None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._users, self._stamp = {}, None
            return
        # A new password is a file of the same size (written aside, then renamed over
        # this one): its inode and change time tell it apart too, not only its mtime.
        stamp = (stat.st_ino, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_size)
        if stamp == self._stamp:
            return
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
            users = [_user(entry) for entry in document["users"]]
        except (ValueError, KeyError, TypeError) as error:
            raise UserError(f"{self.path}: not a users file: {error}") from None
        self._users = {user.login: user for user in users}
        self._stamp = stamp

    def _write(self, users) -> None:
        document = {"users": [user.saved() for user in sorted(users, key=lambda u: u.id)]}
        write_private(self.path, json.dumps(document, indent=2, ensure_ascii=False) + "\n")
        self._stamp = None


def _user(entry: dict) -> User:
    user = User(**entry)
    if not isinstance(user.id, int) or isinstance(user.id, bool):
        raise TypeError(f"user {user.login!r}: id must be an integer")
    if user.cti_password is not None and not isinstance(user.cti_password, str):
        raise TypeError(f"user {user.login!r}: cti_password must be a string")
    if not isinstance(user.queues, list | tuple):
        raise TypeError(f"user {user.login!r}: queues must be a list")
    return replace(user, queues=tuple(str(queue) for queue in user.queues))


def write_private(path: Path, text: str) -> None:
    """Write ``text`` atomically to ``path``, readable by its owner only."""
    private_dir(path.parent)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()  # left by a crash, maybe with another mode: never reused
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(text)
    os.replace(temporary, path)


def session_secret(data_dir: Path) -> str:
    """The key of the pages' CSRF tokens and session fingerprints (see ``sessions``),
    made once and kept in ``data_dir/secret``."""
    path = Path(data_dir) / "secret"
    try:
        return path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        secret = secrets.token_hex(32)
        write_private(path, secret + "\n")
        return secret
