"""SASL parsing and the guest-only-from-loopback rule (no network needed)."""

from __future__ import annotations

import struct

import pytest
from pamqp import encode

from xivo_bus.broker.auth import AuthenticationFailed, authenticate, is_loopback, parse_response
from xivo_bus.broker.users import Users


def amqplain(login: str, password: str) -> bytes:
    table = encode.field_table({"LOGIN": login, "PASSWORD": password})
    return table[4:]  # AMQPLAIN sends the table without its length prefix


def test_plain_and_amqplain_parse():
    assert parse_response("PLAIN", b"\x00guest\x00secret") == ("guest", "secret")
    assert parse_response("AMQPLAIN", amqplain("guest", "secret")) == ("guest", "secret")


@pytest.mark.parametrize(
    "mechanism, response",
    [
        ("PLAIN", b"guestguest"),
        ("PLAIN", b"\x00gu\xffest\x00x"),
        ("AMQPLAIN", struct.pack(">B", 5) + b"LOGIN"),
        ("EXTERNAL", b""),
    ],
)
def test_malformed_responses_are_not_refused_logins(mechanism, response):
    with pytest.raises(AuthenticationFailed) as failure:
        parse_response(mechanism, response)
    assert failure.value.refused is False


@pytest.mark.parametrize(
    "host, loopback",
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("fe80::1%eth0", False),
        ("192.0.2.7", False),
        ("10.0.0.1", False),
        ("::ffff:127.0.0.1", True),  # an IPv4 client of a listener on "::"
        ("::ffff:192.0.2.7", False),
        (None, True),
    ],
)
def test_loopback(host, loopback):
    assert is_loopback(host) is loopback


def test_guest_only_from_loopback_other_users_anywhere():
    users = Users()
    users.put(Users.default())
    users.add("alice", "s3cret")
    users.add("nopass", None)  # a user without a password cannot log in with one
    assert authenticate(users, "PLAIN", b"\x00guest\x00guest", "127.0.0.1").name == "guest"
    with pytest.raises(AuthenticationFailed) as failure:
        authenticate(users, "PLAIN", b"\x00guest\x00guest", "192.0.2.7")
    assert failure.value.refused and "can only connect via localhost" in failure.value.reason
    assert authenticate(users, "PLAIN", b"\x00alice\x00s3cret", "192.0.2.7").name == "alice"
    for response in (b"\x00alice\x00wrong", b"\x00nobody\x00x", b"\x00nopass\x00"):
        with pytest.raises(AuthenticationFailed):
            authenticate(users, "PLAIN", response, "127.0.0.1")
