"""Routing: direct, fanout, topic and headers exchanges, the default exchange and xivo-cti,
as a client sees it."""

from __future__ import annotations

import pika
import pytest
from pika_helpers import consume, drain, new_queue, publish, pump


def routed(ch, exchange: str, bindings: dict, keys: list[str], **publish_kwargs) -> dict:
    """Bind one queue per binding name, publish one message per routing key (the key is
    the body), and return {binding name: [keys that reached its queue]}."""
    queues = {}
    for label, (routing_key, arguments) in bindings.items():
        queues[label] = new_queue(ch)
        ch.queue_bind(queues[label], exchange, routing_key, arguments=arguments)
    for key in keys:
        publish(ch, key, key.encode(), exchange=exchange, **publish_kwargs)
    return {label: [body.decode() for body, _ in drain(ch, q)] for label, q in queues.items()}


def test_direct_routing(ch, name):
    ch.exchange_declare(name, "direct")
    got = routed(ch, name, {"one": ("k1", None), "two": ("k2", None)}, ["k1", "k2", "k3", ""])
    assert got == {"one": ["k1"], "two": ["k2"]}
    ch.exchange_delete(name)


def test_direct_queue_bound_twice_gets_one_copy(ch, name):
    ch.exchange_declare(name, "direct")
    queue = new_queue(ch)
    ch.queue_bind(queue, name, "k")
    ch.queue_bind(queue, name, "k")
    ch.queue_bind(queue, name, "k", arguments={"x": 1})
    publish(ch, "k", exchange=name)
    assert len(drain(ch, queue)) == 1
    ch.queue_unbind(queue, name, "k")
    publish(ch, "k", exchange=name)
    assert len(drain(ch, queue)) == 1  # still bound with the arguments
    ch.exchange_delete(name)


def test_fanout_routing_ignores_keys(ch, name):
    ch.exchange_declare(name, "fanout")
    got = routed(ch, name, {"a": ("x", None), "b": ("y", None)}, ["x", "z"])
    assert got == {"a": ["x", "z"], "b": ["x", "z"]}
    ch.exchange_delete(name)


def test_amq_fanout_and_xivo_cti_route(ch, name):
    assert routed(ch, "amq.fanout", {"f": ("", None)}, [name]) == {"f": [name]}
    assert routed(ch, "xivo-cti", {"x": (name, None)}, [name, name + "-other"]) == {"x": [name]}


TOPIC_KEYS = [
    "",
    "a",
    "b",
    "ab",
    "a.b",
    "b.a",
    "a.c",
    "a.b.c",
    "a..c",
    "a.",
    ".a",
    "a.b.b.c",
    "x.y.b",
    "a.bc",
]


@pytest.mark.parametrize(
    ("pattern", "matching"),
    [
        ("#", TOPIC_KEYS),
        ("a.#", ["a", "a.b", "a.c", "a.b.c", "a..c", "a.", "a.b.b.c", "a.bc"]),
        ("#.b", ["b", "a.b", "x.y.b"]),
        ("a.*.c", ["a.b.c", "a..c"]),
        ("*", ["a", "b", "ab"]),
        ("a.*", ["a.b", "a.c", "a.", "a.bc"]),
        ("*.#", [k for k in TOPIC_KEYS if k]),
        ("a.#.c", ["a.c", "a.b.c", "a..c", "a.b.b.c"]),
        ("#.a.#", ["a", "a.b", "b.a", "a.c", "a.b.c", "a..c", "a.", ".a", "a.b.b.c", "a.bc"]),
        ("a.b", ["a.b"]),
        ("", [""]),
        ("a..c", ["a..c"]),
    ],
    ids=[
        "hash",
        "a.hash",
        "hash.b",
        "a.star.c",
        "star",
        "a.star",
        "star.hash",
        "a.hash.c",
        "hash.a.hash",
        "a.b",
        "empty",
        "a..c",
    ],
)
def test_topic_routing(ch, plain_name, pattern, matching):
    ch.exchange_declare(plain_name, "topic")
    assert routed(ch, plain_name, {"q": (pattern, None)}, TOPIC_KEYS) == {"q": matching}
    ch.exchange_delete(plain_name)


def test_topic_message_reaches_queue_once_with_overlapping_bindings(ch):
    got = routed(ch, "amq.topic", {"q": ("#", None)}, ["one.two"])
    queue = new_queue(ch)
    for pattern in ("#", "one.*", "*.two", "one.two"):
        ch.queue_bind(queue, "amq.topic", pattern)
    publish(ch, "one.two", exchange="amq.topic")
    assert len(drain(ch, queue)) == 1
    assert got == {"q": ["one.two"]}


HEADERS = {
    "all": {"x-match": "all", "a": 1, "b": "x"},
    "any": {"x-match": "any", "a": 1, "b": "x"},
    "default": {"a": 1, "b": "x"},
    "present": {"a": None},
    "any-present": {"x-match": "any", "a": None, "c": None},
}


@pytest.mark.parametrize(
    ("headers", "matching"),
    [
        ({"a": 1, "b": "x", "c": True}, ["all", "any", "default", "present", "any-present"]),
        ({"a": 1}, ["any", "present", "any-present"]),
        ({"a": 2, "b": "x"}, ["any", "present", "any-present"]),
        ({"b": "x"}, ["any"]),
        ({"c": "anything"}, ["any-present"]),
        ({}, []),
        (None, []),
    ],
    ids=["all-match", "only-a", "b-differs", "only-b", "only-c", "no-headers", "none"],
)
def test_headers_routing(ch, plain_name, headers, matching):
    ch.exchange_declare(plain_name, "headers")
    bindings = {label: ("", args) for label, args in HEADERS.items()}
    properties = pika.BasicProperties(headers=headers)
    got = routed(ch, plain_name, bindings, ["m"], properties=properties)
    assert sorted(label for label, keys in got.items() if keys) == sorted(matching)
    ch.exchange_delete(plain_name)


ODD_NAME = "a b/c#*$%é[x]{y}"


def test_any_exchange_name_is_carried_back(conn, ch, name):
    """RabbitMQ accepts any UTF-8 exchange name and sends it back in deliver, get-ok and
    return alike."""
    exchange = f"{ODD_NAME}-{name}"
    ch.exchange_declare(exchange, "direct")
    queue = new_queue(ch)
    ch.queue_bind(queue, exchange, ODD_NAME)
    publish(ch, ODD_NAME, b"1", exchange=exchange)
    method, _, _ = ch.basic_get(queue, auto_ack=True)
    assert (method.exchange, method.routing_key) == (exchange, ODD_NAME)
    got = consume(ch, queue, auto_ack=True)
    publish(ch, ODD_NAME, b"2", exchange=exchange)
    pump(conn, lambda: got)
    assert (got[0][0].exchange, got[0][0].routing_key) == (exchange, ODD_NAME)
    returned = []
    ch.add_on_return_callback(lambda _c, m, _p, _b: returned.append(m))
    publish(ch, "unbound " + ODD_NAME, b"3", exchange=exchange, mandatory=True)
    pump(conn, lambda: returned)
    assert (returned[0].exchange, returned[0].routing_key) == (exchange, "unbound " + ODD_NAME)
    ch.exchange_delete(exchange)


def test_headers_routing_ignores_routing_key_on_amq_match(ch):
    got = routed(
        ch,
        "amq.match",
        {"q": ("some-key", {"h": "v"})},
        ["other-key"],
        properties=pika.BasicProperties(headers={"h": "v"}),
    )
    assert got == {"q": ["other-key"]}
