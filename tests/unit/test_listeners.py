"""Listener addresses as operators write them, and the user a client certificate names."""

import pytest

from xivo_bus.broker.listeners import certificate_user, parse_address


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("127.0.0.1:5672", ("127.0.0.1", 5672)),
        ("[::1]:5671", ("::1", 5671)),
        ("[fe80::1%eth0]:5672", ("fe80::1%eth0", 5672)),
        ("5672", ("::", 5672)),
        ("bus.example:0", ("bus.example", 0)),
    ],
)
def test_addresses(text, address):
    assert parse_address(text) == address


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("nowhere", "is not HOST:PORT"),
        ("::1:5672x", "the port must be a number"),
        ("host:70000", "the port must be a number from 0 to 65535"),
        (":5672", "is not HOST:PORT"),
    ],
)
def test_bad_addresses(text, error):
    with pytest.raises(ValueError, match=error):
        parse_address(text)


def test_certificate_user():
    peer = {
        "subject": ((("organizationName", "XiVO"),), (("commonName", "calld"),)),
        "subjectAltName": (("IP Address", "10.0.0.1"), ("DNS", "calld.xivo"), ("DNS", "x")),
    }
    assert certificate_user(peer) == "calld"
    assert certificate_user(peer, "subject_alternative_name") == "calld.xivo"
    assert certificate_user({"subject": ()}) is None
    assert certificate_user(None) is None
