"""Exchange types on their own: what each routes a message to."""

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xivo_bus.amqp import errors
from xivo_bus.broker.model.exchanges import (
    DefaultExchange,
    DirectExchange,
    FanoutExchange,
    HeadersExchange,
    TopicExchange,
    exchange_class,
)

from .roles_for_tests import message


def routes(exchange, key: str, **props) -> set[str]:
    return set(exchange.route(message(routing_key=key, **props), key))


def test_direct_routes_by_exact_key_once_per_destination():
    exchange = DirectExchange("d")
    exchange.bind("q1", "a", {})
    exchange.bind("q1", "a", {"x": 1})  # same destination, other arguments: one copy
    exchange.bind("q2", "b", {})
    assert routes(exchange, "a") == {"q1"} and exchange.route(message(), "a") == ["q1"]
    assert routes(exchange, "c") == set()
    assert exchange.unbind("q1", "a", {})
    assert routes(exchange, "a") == {"q1"}  # the other binding still holds
    assert exchange.unbind("q1", "a", {"x": 1})
    assert routes(exchange, "a") == set()
    assert not exchange.unbind("q1", "a", {})


def test_binding_identity_ignores_table_order():
    exchange = DirectExchange("d")
    assert exchange.bind("q", "k", {"a": 1, "b": [1, {"c": 2}]})
    assert not exchange.bind("q", "k", {"b": [1, {"c": 2}], "a": 1})
    assert exchange.has_binding("q", "k", {"b": [1, {"c": 2}], "a": 1})


def test_fanout_ignores_keys():
    exchange = FanoutExchange("f")
    exchange.bind("q1", "x", {})
    exchange.bind("q2", "", {})
    assert routes(exchange, "anything") == {"q1", "q2"}


def test_default_exchange_routes_by_queue_name_then_reply_queues():
    exchange = DefaultExchange({"orders": "orders-queue"}, {"amq.rabbitmq.reply-to.X": "reply"})
    assert routes(exchange, "orders") == {"orders-queue"}
    assert routes(exchange, "amq.rabbitmq.reply-to.X") == {"reply"}
    assert routes(exchange, "missing") == set()


@pytest.mark.parametrize(
    ("pattern", "matching", "not_matching"),
    [
        ("a.b", ["a.b"], ["a", "a.b.c", "a.bb"]),
        ("a.*", ["a.b", "a."], ["a", "a.b.c"]),
        ("*", ["a"], ["", "a.b"]),  # as RabbitMQ: the empty key has no words
        ("#", ["", "a", "a.b.c"], []),
        ("a.#", ["a", "a.b", "a.b.c"], ["b.a"]),
        ("#.c", ["c", "a.c", "a.b.c"], ["c.a"]),
        ("a.#.c", ["a.c", "a.b.c", "a.b.b.c"], ["a.b", "a.c.d"]),
        ("*.#", ["a", "a.b"], [""]),
        ("#.#", ["", "a", "a.b"], []),
        ("", [""], ["a"]),
    ],
)
def test_topic_patterns(pattern, matching, not_matching):
    exchange = TopicExchange("t")
    exchange.bind("q", pattern, {})
    for key in matching:
        assert routes(exchange, key) == {"q"}, key
    for key in not_matching:
        assert routes(exchange, key) == set(), key


def test_topic_overlapping_bindings_give_one_copy_and_unbind_prunes():
    exchange = TopicExchange("t")
    for pattern in ("a.*", "a.#", "#", "a.b"):
        exchange.bind("q", pattern, {})
    assert exchange.route(message(), "a.b") == ["q"]
    for pattern in ("a.*", "a.#", "#", "a.b"):
        assert exchange.unbind("q", pattern, {})
    assert exchange._root.children == {}  # no empty branches left behind
    assert routes(exchange, "a.b") == set()


@pytest.mark.parametrize(
    ("arguments", "headers", "matches"),
    [
        ({"x-match": "all", "a": 1, "b": "x"}, {"a": 1, "b": "x"}, True),
        ({"x-match": "all", "a": 1, "b": "x"}, {"a": 1}, False),
        ({"x-match": "any", "a": 1, "b": "x"}, {"b": "x"}, True),
        ({"x-match": "any", "a": 1}, {"a": 2}, False),
        ({"a": None}, {"a": "whatever"}, True),  # a void value matches presence
        ({"a": 1}, {"a": True}, False),  # a boolean is never a number
        ({"a": "x"}, {"a": bytearray(b"x")}, True),  # strings compare as bytes
        ({"x-match": "all", "x-k": 1}, {}, True),  # x- arguments are not compared...
        ({"x-match": "all-with-x", "x-k": 1}, {}, False),  # ...unless asked to
        ({"x-match": "any-with-x", "x-k": 1}, {"x-k": 1}, True),
        ({}, {}, True),  # all of nothing
        ({"x-match": "any"}, {"a": 1}, False),  # any of nothing
    ],
)
def test_headers_matching(arguments, headers, matches):
    exchange = HeadersExchange("h")
    exchange.check_binding(arguments)
    exchange.bind("q", "", arguments)
    assert routes(exchange, "ignored", headers=headers) == ({"q"} if matches else set())


def test_headers_bad_x_match_is_refused_in_rabbitmqs_words():
    with pytest.raises(errors.ChannelError) as raised:
        HeadersExchange("h").check_binding({"x-match": "some"})
    assert raised.value.reply_text == (
        'PRECONDITION_FAILED - Invalid x-match field value <<"some">>; expected all, any, '
        "all-with-x, or any-with-x"
    )


@pytest.mark.parametrize(("name", "adjective"), [("x-delayed", "unknown"), ("bogus", "invalid")])
def test_unknown_exchange_type_is_503(name, adjective):
    with pytest.raises(errors.ConnectionError) as raised:
        exchange_class(name)
    assert raised.value.reply_code == errors.COMMAND_INVALID
    assert raised.value.text == f"{adjective} exchange type '{name}'"


def _topic_matches(pattern: list[str], words: list[str]) -> bool:
    """The reference: '*' is one word, '#' zero or more (dynamic programming)."""
    reach = {0}
    for token in pattern:
        if token == "#":
            reach = set(range(min(reach), len(words) + 1)) if reach else set()
        else:
            reach = {i + 1 for i in reach if i < len(words) and token in ("*", words[i])}
    return len(words) in reach


topic_words = st.sampled_from(["a", "b", "*", "#"])


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(
    st.lists(st.lists(topic_words, max_size=6), min_size=1, max_size=4),
    st.lists(st.sampled_from(["a", "b", "c"]), max_size=8),
)
def test_topic_matching_agrees_with_the_reference(patterns, words):
    exchange = TopicExchange("t")
    for number, pattern in enumerate(patterns):
        exchange.bind(f"q{number}", ".".join(pattern), {})
    key = ".".join(words)
    expected = {
        f"q{number}"
        for number, pattern in enumerate(patterns)
        if _topic_matches([w for w in ".".join(pattern).split(".") if ".".join(pattern)], words)
    }
    assert routes(exchange, key) == expected


def test_many_hashes_cannot_hold_the_broker():
    """A binding key of many '#' and a long routing key: matched in polynomial time (it
    took hours, blocking every client, before each '#' position was matched once)."""
    exchange = TopicExchange("t")
    exchange.bind("q", ".".join(["#"] * 60), {})
    exchange.bind("r", ".".join(["#", "*"] * 30), {})
    started = time.monotonic()
    assert routes(exchange, ".".join(["a"] * 120)) == {"q", "r"}
    assert routes(exchange, ".".join(["a"] * 29)) == {"q"}
    assert time.monotonic() - started < 10
