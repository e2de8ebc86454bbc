"""Users, their passwords, tags and permissions: RabbitMQ's internal authentication and
authorisation backend (``rabbit_auth_backend_internal``).

Passwords are kept only as RabbitMQ hashes them: ``base64(salt + H(salt + password))``
with a 4-byte random salt and SHA-256 by default (SHA-512 and MD5 hashes, which older
RabbitMQ definitions may hold, are read too), so that user definitions move between
RabbitMQ and xivo-bus unchanged. Permissions are three regular expressions per user and
vhost (configure, write, read), matched anywhere in a resource name as RabbitMQ matches
them (an empty one matches nothing); topic permissions add two per exchange for routing
keys.

Every change is written through ``UserStore`` (the broker's store) before it is
acknowledged, so users survive restarts and crashes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

SHA256 = "rabbit_password_hashing_sha256"
HASHINGS = {
    SHA256: hashlib.sha256,
    "rabbit_password_hashing_sha512": hashlib.sha512,
    "rabbit_password_hashing_md5": hashlib.md5,
}
# The tags RabbitMQ's management plugin knows; any other tag may be set too.
TAGS = ("administrator", "monitoring", "management", "policymaker", "impersonator")
DEFAULT_USER = "guest"
DEFAULT_VHOST = "/"


class UserError(Exception):
    """A refused change (the message is rabbitmqctl's)."""


def hash_password(password: str, salt: bytes | None = None) -> str:
    """RabbitMQ's default password hash (``rabbit_password_hashing_sha256``)."""
    salt = os.urandom(4) if salt is None else salt
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def check_password(password: str, password_hash: str, hashing: str = SHA256) -> bool:
    digest = HASHINGS.get(hashing)
    if digest is None or not password_hash:
        return False
    try:
        raw = base64.b64decode(password_hash, validate=True)
    except ValueError:
        return False
    salt, expected = raw[:4], raw[4:]
    return hmac.compare_digest(digest(salt + password.encode()).digest(), expected)


@dataclass(frozen=True)
class Permission:
    """A user's configure / write / read regular expressions on one vhost."""

    configure: str
    write: str
    read: str

    def allows(self, kind: str, name: str) -> bool:
        """Whether ``kind`` (configure, write or read) is allowed on resource ``name``."""
        return _matches(getattr(self, kind), name)


@dataclass(frozen=True)
class TopicPermission:
    """Write / read regular expressions on the routing keys of one topic exchange;
    ``{username}`` and ``{vhost}`` in them stand for the user's name and the vhost."""

    exchange: str
    write: str
    read: str

    def allows(self, kind: str, routing_key: str, user: str, vhost: str) -> bool:
        pattern = getattr(self, kind).replace("{username}", re.escape(user))
        return _matches(pattern.replace("{vhost}", re.escape(vhost)), routing_key)


def _matches(pattern: str, name: str) -> bool:
    if not pattern:
        return False  # RabbitMQ: an empty pattern matches nothing
    try:
        return re.search(pattern, name) is not None
    except re.error:
        return False


@dataclass
class User:
    name: str
    password_hash: str = ""  # empty: no password login (clear_password)
    hashing: str = SHA256
    tags: tuple[str, ...] = ()
    permissions: dict[str, Permission] = field(default_factory=dict)  # by vhost
    # by vhost, then exchange
    topic_permissions: dict[str, dict[str, TopicPermission]] = field(default_factory=dict)
    limits: dict[str, int] = field(default_factory=dict)  # max-connections, max-channels

    def check_password(self, password: str) -> bool:
        return check_password(password, self.password_hash, self.hashing)

    def topic_allows(self, vhost: str, exchange: str, kind: str, routing_key: str) -> bool:
        """No topic permission on the exchange: anything goes, as in RabbitMQ."""
        permission = self.topic_permissions.get(vhost, {}).get(exchange)
        return permission is None or permission.allows(kind, routing_key, self.name, vhost)


class UserStore(Protocol):
    """Where users and permissions are kept (``store.Store``); each call returns the
    store write to wait for."""

    def save_user(self, user: User) -> int: ...

    def delete_user(self, name: str) -> int: ...

    def save_vhost(self, name: str) -> int: ...

    def delete_vhost(self, name: str) -> int: ...


class Users:
    """Every user by name, with ``loopback_users`` (names that may connect only from
    loopback; ``guest`` by default, as RabbitMQ)."""

    def __init__(self, loopback_users: Iterable[str] = (DEFAULT_USER,)):
        self._users: dict[str, User] = {}
        self.loopback_users = set(loopback_users)

    @staticmethod
    def default(
        name: str = DEFAULT_USER, password: str = DEFAULT_USER, vhost: str = DEFAULT_VHOST
    ) -> User:
        """The user of a fresh broker: guest/guest (RabbitMQ's ``default_user`` and
        ``default_pass``), administrator, every permission on the default vhost."""
        return User(
            name,
            hash_password(password),
            tags=("administrator",),
            permissions={vhost: Permission(".*", ".*", ".*")},
        )

    def __iter__(self):
        return iter(sorted(self._users.values(), key=lambda user: user.name))

    def __contains__(self, name: str) -> bool:
        return name in self._users

    def get(self, name: str) -> User | None:
        return self._users.get(name)

    def user(self, name: str) -> User:
        user = self._users.get(name)
        if user is None:
            raise UserError(f'User "{name}" does not exist')
        return user

    def put(self, user: User) -> None:
        """Add or replace a user as it is (start-up, definitions)."""
        self._users[user.name] = user

    def add(self, name: str, password: str | None) -> User:
        if not name:
            raise UserError("user name cannot be empty")
        if name in self._users:
            raise UserError(f'User "{name}" already exists')
        user = User(name, hash_password(password) if password is not None else "")
        self._users[name] = user
        return user

    def delete(self, name: str) -> User:
        user = self.user(name)
        del self._users[name]
        return user

    def change_password(self, name: str, password: str) -> User:
        user = self.user(name)
        user.password_hash, user.hashing = hash_password(password), SHA256
        return user

    def clear_password(self, name: str) -> User:
        user = self.user(name)
        user.password_hash = ""
        return user

    def set_tags(self, name: str, tags: Iterable[str]) -> User:
        user = self.user(name)
        user.tags = tuple(dict.fromkeys(tag for tag in tags if tag))
        return user

    def set_permissions(self, name: str, vhost: str, configure: str, write: str, read: str):
        for pattern in (configure, write, read):
            _check_regex(pattern)
        user = self.user(name)
        user.permissions[vhost] = Permission(configure, write, read)
        return user

    def clear_permissions(self, name: str, vhost: str) -> User:
        user = self.user(name)
        user.permissions.pop(vhost, None)
        return user

    def set_topic_permissions(
        self, name: str, vhost: str, exchange: str, write: str, read: str
    ) -> User:
        for pattern in (write, read):
            _check_regex(pattern)
        user = self.user(name)
        user.topic_permissions.setdefault(vhost, {})[exchange] = TopicPermission(
            exchange, write, read
        )
        return user

    def clear_topic_permissions(self, name: str, vhost: str, exchange: str | None) -> User:
        user = self.user(name)
        if exchange is None:
            user.topic_permissions.pop(vhost, None)
        else:
            user.topic_permissions.get(vhost, {}).pop(exchange, None)
            if not user.topic_permissions.get(vhost, True):
                del user.topic_permissions[vhost]
        return user

    def forget_vhost(self, vhost: str) -> list[User]:
        """A vhost was deleted: its permissions go; returns the users that had some."""
        changed = []
        for user in self._users.values():
            had = user.permissions.pop(vhost, None)
            had_topic = user.topic_permissions.pop(vhost, None)
            if had is not None or had_topic is not None:
                changed.append(user)
        return changed


def _check_regex(pattern: str) -> None:
    try:
        re.compile(pattern)
    except re.error as error:
        raise UserError(f"invalid regular expression '{pattern}': {error}") from None
