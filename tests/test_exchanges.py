"""Exchanges: declare, redeclare, delete, auto-delete, internal, the predeclared ones, and
every refusal in RabbitMQ's words."""

from __future__ import annotations

import pytest
from pika_helpers import (
    DEFAULT_EXCHANGE,
    channel_error,
    connection_error,
    drain,
    exists,
    inequivalent,
    new_queue,
    publish,
    pump,
    settle,
)


@pytest.mark.parametrize(
    "exchange", ["amq.direct", "amq.fanout", "amq.topic", "amq.headers", "amq.match", "xivo-cti"]
)
def test_predeclared_exchanges_exist(ch, exchange):
    ch.exchange_declare(exchange, passive=True)


@pytest.mark.parametrize(
    ("exchange", "kind"),
    [
        ("amq.direct", "direct"),
        ("amq.fanout", "fanout"),
        ("amq.topic", "topic"),
        ("amq.headers", "headers"),
        ("amq.match", "headers"),
        ("xivo-cti", "direct"),
    ],
)
def test_predeclared_exchanges_redeclare_equivalently(ch, exchange, kind):
    ch.exchange_declare(exchange, kind, durable=True)


def test_default_exchange_routes_by_queue_name(ch):
    queue = new_queue(ch)
    publish(ch, queue, b"hello")
    assert drain(ch, queue) == [(b"hello", False)]


def test_exchange_declare_and_equivalent_redeclare(ch, name):
    args = {"alternate-exchange": "elsewhere"}
    for _ in range(2):
        ch.exchange_declare(name, "topic", durable=True, auto_delete=False, arguments=args)
    ch.exchange_declare(name, "fanout", passive=True)  # passive ignores the type
    ch.exchange_delete(name)


def test_exchange_redeclare_ignores_other_arguments(ch, name):
    """RabbitMQ compares only the arguments it knows (alternate-exchange)."""
    ch.exchange_declare(name, "direct", arguments={"x-foo": 1})
    ch.exchange_declare(name, "direct", arguments={"x-foo": 2})
    ch.exchange_declare(name, "direct")
    ch.exchange_delete(name)


def test_exchange_name_prefix_is_case_sensitive(ch, name):
    ch.exchange_declare(f"AMQ.{name}")
    ch.exchange_delete(f"AMQ.{name}")


def test_exchange_delete_is_idempotent(conn, ch, name):
    ch.exchange_declare(name, "fanout")
    ch.exchange_delete(name)
    assert not exists(conn, "exchange", name)
    ch.exchange_delete(name)
    ch.exchange_delete(name, if_unused=True)


def test_exchange_delete_if_unused_when_unused(conn, ch, name):
    ch.exchange_declare(name, "fanout")
    ch.exchange_delete(name, if_unused=True)
    assert not exists(conn, "exchange", name)


def test_exchange_delete_removes_its_bindings(ch, name):
    queue = new_queue(ch)
    ch.exchange_declare(name, "fanout")
    ch.queue_bind(queue, name)
    ch.exchange_delete(name)
    ch.exchange_declare(name, "fanout")
    publish(ch, "", exchange=name)
    assert drain(ch, queue) == []
    ch.exchange_delete(name)


def test_auto_delete_exchange_goes_with_its_last_unbind(conn, ch, name):
    first, second = new_queue(ch), new_queue(ch)
    ch.exchange_declare(name, "direct", auto_delete=True)
    ch.queue_bind(first, name, "k")
    ch.queue_bind(second, name, "k")
    ch.queue_unbind(first, name, "k")
    assert exists(conn, "exchange", name)
    ch.queue_unbind(second, name, "k")
    pump(conn, lambda: not exists(conn, "exchange", name))


def test_auto_delete_exchange_goes_with_its_last_queue(conn, ch, name):
    queue = new_queue(ch)
    ch.exchange_declare(name, "fanout", auto_delete=True)
    ch.queue_bind(queue, name)
    ch.queue_delete(queue)
    pump(conn, lambda: not exists(conn, "exchange", name))


def test_auto_delete_exchange_stays_until_first_binding(conn, ch, name):
    ch.exchange_declare(name, "fanout", auto_delete=True)
    settle(conn)
    assert exists(conn, "exchange", name)
    ch.exchange_delete(name)


def test_internal_exchange_can_be_declared(conn, ch, name):
    ch.exchange_declare(name, "fanout", internal=True)
    ch.exchange_declare(name, "fanout", internal=True)
    ch.exchange_delete(name)


def test_exchange_passive_missing(conn, name):
    expected = (404, f"NOT_FOUND - no exchange '{name}' in vhost '/'", 40, 10)
    assert channel_error(conn, lambda c: c.exchange_declare(name, passive=True)) == expected


@pytest.mark.parametrize("passive", [False, True])
def test_exchange_declare_default_refused(conn, passive):
    expected = (403, DEFAULT_EXCHANGE, 40, 10)
    assert channel_error(conn, lambda c: c.exchange_declare("", passive=passive)) == expected


def test_exchange_reserved_prefix(conn, name):
    expected = (
        403,
        f"ACCESS_REFUSED - exchange name 'amq.{name}' contains reserved prefix 'amq.*'",
        40,
        10,
    )
    assert channel_error(conn, lambda c: c.exchange_declare(f"amq.{name}")) == expected


@pytest.mark.parametrize("exchange", ["amq.direct", "amq.topic", "amq.nonexistent"])
def test_exchange_delete_system_refused(conn, exchange):
    expected = (
        403,
        f"ACCESS_REFUSED - deletion of system exchange '{exchange}' in vhost '/' not allowed",
        40,
        20,
    )
    assert channel_error(conn, lambda c: c.exchange_delete(exchange)) == expected


def test_exchange_delete_default_refused(conn):
    assert channel_error(conn, lambda c: c.exchange_delete("")) == (403, DEFAULT_EXCHANGE, 40, 20)


def test_xivo_cti_is_direct_and_durable(conn):
    def redeclare(**kwargs):
        return channel_error(conn, lambda c: c.exchange_declare("xivo-cti", **kwargs))

    expected = (406, inequivalent("exchange", "xivo-cti", "type", "'fanout'", "'direct'"), 40, 10)
    assert redeclare(exchange_type="fanout", durable=True) == expected
    expected = (406, inequivalent("exchange", "xivo-cti", "durable", "'false'", "'true'"), 40, 10)
    assert redeclare(exchange_type="direct", durable=False) == expected


def test_predeclared_exchange_inequivalent(conn):
    expected = (406, inequivalent("exchange", "amq.topic", "durable", "'false'", "'true'"), 40, 10)
    assert channel_error(conn, lambda c: c.exchange_declare("amq.topic", "topic")) == expected


@pytest.mark.parametrize(
    ("first", "second", "arg", "received", "current"),
    [
        ({"exchange_type": "direct"}, {"exchange_type": "fanout"}, "type", "fanout", "direct"),
        ({"durable": False}, {"durable": True}, "durable", "true", "false"),
        ({"durable": True}, {"durable": False}, "durable", "false", "true"),
        ({"auto_delete": False}, {"auto_delete": True}, "auto_delete", "true", "false"),
        ({"internal": False}, {"internal": True}, "internal", "true", "false"),
        ({"internal": True}, {"internal": False}, "internal", "false", "true"),
    ],
    ids=["type", "durable", "not-durable", "auto_delete", "internal", "not-internal"],
)
def test_exchange_redeclare_inequivalent(conn, ch, name, first, second, arg, received, current):
    ch.exchange_declare(name, **{"exchange_type": "direct", **first})
    second = {"exchange_type": "direct", **second}
    expected = (406, inequivalent("exchange", name, arg, f"'{received}'", f"'{current}'"), 40, 10)
    assert channel_error(conn, lambda c: c.exchange_declare(name, **second)) == expected
    ch.exchange_delete(name)


@pytest.mark.parametrize(
    ("first", "second", "received", "current"),
    [
        ("ae1", "ae2", "'ae2'", "'ae1'"),
        (None, "ae2", "the value 'ae2' of type 'longstr'", "none"),
        ("ae1", None, "none", "the value 'ae1' of type 'longstr'"),
    ],
    ids=["changed", "added", "removed"],
)
def test_exchange_redeclare_alternate_exchange(conn, ch, name, first, second, received, current):
    def arguments(value):
        return None if value is None else {"alternate-exchange": value}

    ch.exchange_declare(name, "direct", arguments=arguments(first))
    expected = (
        406,
        inequivalent("exchange", name, "alternate-exchange", received, current),
        40,
        10,
    )
    assert (
        channel_error(conn, lambda c: c.exchange_declare(name, arguments=arguments(second)))
        == expected
    )
    ch.exchange_delete(name)


def test_exchange_unknown_type_closes_connection(conn, name):
    expected = (503, "COMMAND_INVALID - invalid exchange type 'foo'", 40, 10)
    assert connection_error(conn, lambda c: c.exchange_declare(name, "foo")) == expected


def test_exchange_unknown_x_type_closes_connection(conn, name):
    expected = (503, "COMMAND_INVALID - unknown exchange type 'x-foo'", 40, 10)
    assert connection_error(conn, lambda c: c.exchange_declare(name, "x-foo")) == expected


def test_exchange_delete_if_unused_when_bound(conn, ch, name):
    ch.exchange_declare(name, "fanout")
    ch.queue_bind(new_queue(ch), name)
    expected = (406, f"PRECONDITION_FAILED - exchange '{name}' in vhost '/' in use", 40, 20)
    assert channel_error(conn, lambda c: c.exchange_delete(name, if_unused=True)) == expected
    assert exists(conn, "exchange", name)
    ch.exchange_delete(name)


def test_publish_to_internal_exchange(conn, ch, name):
    ch.exchange_declare(name, "fanout", internal=True)
    expected = (
        403,
        f"ACCESS_REFUSED - cannot publish to internal exchange '{name}' in vhost '/'",
        60,
        40,
    )
    assert channel_error(conn, lambda c: publish(c, "k", exchange=name)) == expected
    ch.exchange_delete(name)


def test_publish_to_missing_exchange(conn, name):
    expected = (404, f"NOT_FOUND - no exchange '{name}' in vhost '/'", 60, 40)
    assert channel_error(conn, lambda c: publish(c, "k", exchange=name)) == expected
