"""SASL authentication (PLAIN, AMQPLAIN), as RabbitMQ does it, against the users of
``users.Users``. Users named in ``loopback_users`` (guest by default) may connect only
from loopback, as in RabbitMQ."""

from __future__ import annotations

import ipaddress

from xivo_bus.amqp import fields
from xivo_bus.broker.users import User, Users

MECHANISMS = ("PLAIN", "AMQPLAIN")
EXTERNAL = "EXTERNAL"  # SASL EXTERNAL: the client certificate says who logs in


class AuthenticationFailed(Exception):
    """Login refused; ``reason`` is for the log, never for the client."""

    def __init__(self, mechanism: str, reason: str, refused: bool = True):
        super().__init__(reason)
        self.mechanism = mechanism
        self.reason = reason
        # False for an unknown mechanism or a malformed response: not a refused login.
        self.refused = refused


def authenticate(
    users: Users,
    mechanism: str,
    response: bytes,
    peer_host: str | None,
    certificate_user: str | None = None,
) -> User:
    """The user a SASL response logs in as; ``AuthenticationFailed`` otherwise. With
    EXTERNAL (offered on TLS listeners that check client certificates) the user is the
    one the client certificate names (``certificate_user``), with no password."""
    if mechanism == EXTERNAL:
        if certificate_user is None:
            raise AuthenticationFailed(mechanism, "EXTERNAL login without a client certificate")
        username = certificate_user
        user = users.get(username)
        if user is None:
            raise AuthenticationFailed(mechanism, f"user '{username}' does not exist")
    else:
        username, password = parse_response(mechanism, response)
        user = users.get(username)
        if user is None or not user.check_password(password):
            raise AuthenticationFailed(mechanism, f"invalid credentials for user '{username}'")
    if username in users.loopback_users and not is_loopback(peer_host):
        raise AuthenticationFailed(mechanism, f"user '{username}' can only connect via localhost")
    return user


def is_loopback(host: str | None) -> bool:
    if host is None:  # a Unix socket
        return True
    try:
        address = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    # an IPv4 client of a listener on "::" shows as ::ffff:127.0.0.1
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def parse_response(mechanism: str, response: bytes) -> tuple[str, str]:
    """(username, password) from a SASL response."""
    try:
        if mechanism == "PLAIN":
            _authzid, username, password = response.split(b"\x00")
            return username.decode(), password.decode()
        if mechanism == "AMQPLAIN":
            # A field table without its length prefix.
            table = fields.decode_table(response, 0, len(response))
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
