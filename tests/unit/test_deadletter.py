"""The x-death rewrite of dead-lettering, on bytes and objects, as RabbitMQ 3.10 does it."""

import datetime

from pamqp import commands

from xivo_bus.amqp import properties
from xivo_bus.broker.model.deadletter import dead_lettered, encode_value, is_cycle
from xivo_bus.broker.model.message import Message

from .roles_for_tests import message


def test_first_death_adds_x_death_and_first_death_headers():
    headers = {"keep": "me", "CC": ["c1"]}
    original = message(b"body", "rk", "ex", headers=headers, expiration="60000")
    dead, deaths = dead_lettered(original, "expired", "q", "dlx", None)
    assert dead.exchange == "dlx" and dead.routing_key == "rk"
    assert dead.body is original.body  # shared, never copied
    props = dead.properties
    assert props.expiration is None  # dropped, kept in x-death
    headers = props.headers
    assert headers["keep"] == b"me" or headers["keep"] == "me"
    assert headers["x-first-death-reason"] in ("expired", b"expired")
    assert headers["x-first-death-queue"] in ("q", b"q")
    assert headers["x-first-death-exchange"] in ("ex", b"ex")
    [death] = headers["x-death"]
    assert death["count"] == 1
    assert death["reason"] in ("expired", b"expired")
    assert [key if isinstance(key, str) else key.decode() for key in death["routing-keys"]] == [
        "rk",
        "c1",
    ]
    assert death["original-expiration"] in ("60000", b"60000")
    assert isinstance(death["time"], datetime.datetime)
    assert deaths == [dict(sorted(deaths[0].items()))]  # keys sorted, as RabbitMQ


def test_dead_letter_routing_key_replaces_the_key_and_drops_cc():
    original = message(headers={"CC": ["c1"]}, routing_key="rk")
    dead, _ = dead_lettered(original, "rejected", "q", "dlx", "other")
    assert dead.routing_key == "other"
    assert "CC" not in dead.properties.headers


def test_same_queue_and_reason_counts_up_and_moves_to_the_front():
    first, _ = dead_lettered(message(), "expired", "a", "dlx", None)
    second, _ = dead_lettered(first, "rejected", "b", "dlx", None)
    third, deaths = dead_lettered(second, "expired", "a", "dlx", None)
    queues = [(d["queue"], d["count"]) for d in third.properties.headers["x-death"]]
    assert [(q if isinstance(q, str) else q.decode(), c) for q, c in queues] == [
        ("a", 2),
        ("b", 1),
    ]
    assert len(deaths) == 2
    # the first death is remembered as it was
    assert third.properties.headers["x-first-death-queue"] in ("a", b"a")


def test_bcc_keys_travel_with_the_copy_unless_the_key_is_replaced():
    original = message()
    original.bcc = ["hidden"]
    dead, _ = dead_lettered(original, "rejected", "q", "dlx", None)
    assert dead.bcc == ["hidden"]
    dead, _ = dead_lettered(original, "rejected", "q", "dlx", "other")
    assert dead.bcc is None


def test_other_headers_keep_their_wire_encoding():
    # a 'b' (signed 8-bit) field is kept as it came, not re-encoded as a long
    raw_table = b"\x04tiny" + b"b\x07"
    raw = properties.replace(
        properties.encode(commands.Basic.Properties()),
        headers=len(raw_table).to_bytes(4, "big") + raw_table,
    )
    dead, _ = dead_lettered(Message("", "k", raw, b""), "expired", "q", "dlx", None)
    assert b"\x04tinyb\x07" in properties.raw_headers(dead.raw_properties)


def test_cycle_only_when_every_death_since_was_automatic():
    expired_in = lambda queue: {"queue": queue, "reason": "expired"}  # noqa: E731
    assert is_cycle("a", [expired_in("b"), expired_in("a")])
    assert not is_cycle("a", [{"queue": "b", "reason": "rejected"}, expired_in("a")])
    assert not is_cycle("c", [expired_in("b"), expired_in("a")])
    assert not is_cycle("a", ["not a table", expired_in("a")])


def test_values_encoded_as_rabbitmq_writes_x_death():
    assert encode_value(5) == b"l" + (5).to_bytes(8, "big")
    assert encode_value("q") == b"S\x00\x00\x00\x01q"
    assert encode_value(True) == b"t\x01"
    assert encode_value([1]) == b"A\x00\x00\x00\x09" + b"l" + (1).to_bytes(8, "big")
    when = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    assert encode_value(when) == b"T" + int(when.timestamp()).to_bytes(8, "big")
