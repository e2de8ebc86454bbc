"""Users and SASL authentication (PLAIN, AMQPLAIN), as RabbitMQ does it.

The default user guest/guest may connect only from loopback, like RabbitMQ's
``loopback_users``.
"""

from __future__ import annotations

import hmac
import ipaddress
import struct
from dataclasses import dataclass, field

from pamqp import decode

MECHANISMS = ("PLAIN", "AMQPLAIN")


class AuthenticationFailed(Exception):
    """Login refused; ``reason`` is for the log, never for the client."""

    def __init__(self, mechanism: str, reason: str, refused: bool = True):
        super().__init__(reason)
        self.mechanism = mechanism
        self.reason = reason
        # False for an unknown mechanism or a malformed response: not a refused login.
        self.refused = refused


@dataclass
class User:
    name: str
    password: str
    loopback_only: bool = False
    vhosts: set[str] = field(default_factory=lambda: {"/"})


class Users:
    def __init__(self) -> None:
        self._users: dict[str, User] = {"guest": User("guest", "guest", loopback_only=True)}

    def add(self, user: User) -> None:
        self._users[user.name] = user

    def authenticate(self, mechanism: str, response: bytes, peer_host: str | None) -> User:
        username, password = parse_response(mechanism, response)
        user = self._users.get(username)
        if user is None or not hmac.compare_digest(user.password.encode(), password.encode()):
            raise AuthenticationFailed(mechanism, f"invalid credentials for user '{username}'")
        if user.loopback_only and not is_loopback(peer_host):
            raise AuthenticationFailed(
                mechanism, f"user '{username}' can only connect via localhost"
            )
        return user


def is_loopback(host: str | None) -> bool:
    if host is None:  # a Unix socket
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def parse_response(mechanism: str, response: bytes) -> tuple[str, str]:
    """(username, password) from a SASL response."""
    try:
        if mechanism == "PLAIN":
            _authzid, username, password = response.split(b"\x00")
            return username.decode(), password.decode()
        if mechanism == "AMQPLAIN":
            # A field table without its length prefix.
            _, table = decode.field_table(struct.pack(">I", len(response)) + response)
            username, password = table["LOGIN"], table["PASSWORD"]
            if isinstance(username, bytes):
                username = username.decode()
            if isinstance(password, bytes):
                password = password.decode()
            return str(username), str(password)
    except (ValueError, KeyError, UnicodeDecodeError) as error:
        raise AuthenticationFailed(
            mechanism, f"malformed {mechanism} response", refused=False
        ) from error
    raise AuthenticationFailed(mechanism, f"unsupported mechanism {mechanism}", refused=False)
