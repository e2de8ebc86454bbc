"""Queues: declare, redeclare, bind, purge, delete, exclusive and auto-delete queues,
server-named queues, and every refusal in RabbitMQ's words."""

from __future__ import annotations

import re

import pytest
from pika import spec
from pika_helpers import (
    DEFAULT_EXCHANGE,
    GENERATED,
    LOCKED,
    NO_PREVIOUS_QUEUE,
    channel_error,
    connection,
    consume,
    counts,
    cut,
    drain,
    exists,
    inequivalent,
    new_queue,
    publish,
    pump,
    settle,
)


def test_server_named_queue(ch):
    ok = ch.queue_declare("", exclusive=True).method
    assert re.fullmatch(rf"amq\.gen-{GENERATED}", ok.queue)
    assert (ok.message_count, ok.consumer_count) == (0, 0)
    assert new_queue(ch) != ok.queue


def test_named_queue_declare_passive_and_durable(conn, ch, name):
    ch.confirm_delivery()  # a confirmed message is in its queue
    ok = ch.queue_declare(name, durable=True).method
    assert (ok.queue, ok.message_count, ok.consumer_count) == (name, 0, 0)
    publish(ch, name)
    ok = ch.queue_declare(name, durable=True).method
    assert (ok.queue, ok.message_count, ok.consumer_count) == (name, 1, 0)
    ok = ch.queue_declare(name, passive=True, durable=False, auto_delete=True).method
    assert (ok.queue, ok.message_count) == (name, 1)
    assert ch.queue_delete(name).method.message_count == 1
    assert not exists(conn, "queue", name)


def test_declare_ok_counts_ready_messages_and_consumers(ch, name):
    ch.confirm_delivery()
    queue = new_queue(ch, name)
    for i in range(5):
        publish(ch, queue, b"%d" % i)
    assert counts(ch, queue) == (5, 0)
    ch.basic_get(queue)
    ch.basic_get(queue)
    assert counts(ch, queue) == (3, 0)  # unacked messages are not counted
    ch.basic_qos(prefetch_count=1)
    got = consume(ch, queue)
    pump(ch.connection, lambda: got)
    assert counts(ch, queue) == (2, 1)
    assert ch.queue_declare(queue, exclusive=True).method.message_count == 2


def test_empty_queue_name_means_last_declared_queue(ch):
    queue = new_queue(ch)
    ch.queue_bind("", "amq.direct", "last-declared-" + queue)
    publish(ch, "last-declared-" + queue, b"1", exchange="amq.direct")
    publish(ch, queue, b"2")
    method, _, body = ch.basic_get("")
    assert (method.routing_key, body, method.message_count) == ("last-declared-" + queue, b"1", 1)
    ch.basic_ack(method.delivery_tag)
    assert ch.queue_purge("").method.message_count == 1
    publish(ch, queue, b"3")
    got = consume(ch, "")
    pump(ch.connection, lambda: got)
    assert got[0][2] == b"3"
    ch.basic_ack(got[0][0].delivery_tag)
    publish(ch, queue, b"4")
    ch.queue_unbind("", "amq.direct", "last-declared-" + queue)
    publish(ch, "last-declared-" + queue, b"5", exchange="amq.direct")
    ch.basic_cancel(got[0][0].consumer_tag)
    assert ch.queue_delete("").method.message_count == 1


def test_bind_unbind(ch, name):
    queue = new_queue(ch)
    ch.queue_bind(queue, "amq.direct", name)
    publish(ch, name, b"bound", exchange="amq.direct")
    ch.queue_unbind(queue, "amq.direct", name)
    publish(ch, name, b"unbound", exchange="amq.direct")
    assert drain(ch, queue) == [(b"bound", False)]


def test_unbind_of_missing_binding_queue_or_exchange_is_ok(ch, name):
    queue = new_queue(ch)
    ch.queue_unbind(queue, "amq.direct", "never-bound")
    ch.queue_unbind(name, "amq.direct", "k")
    ch.queue_unbind(queue, name, "k")


def test_purge_returns_ready_count(ch):
    queue = new_queue(ch)
    for _ in range(3):
        publish(ch, queue)
    ch.basic_get(queue)  # unacked: not purged
    assert ch.queue_purge(queue).method.message_count == 2
    assert ch.queue_purge(queue).method.message_count == 0
    ch.basic_recover(requeue=True)
    assert counts(ch, queue) == (1, 0)


def test_delete_returns_ready_count_and_is_idempotent(ch, name):
    ch.queue_declare(name)
    for _ in range(3):
        publish(ch, name)
    ch.basic_get(name)
    assert ch.queue_delete(name).method.message_count == 2
    assert ch.queue_delete(name).method.message_count == 0
    assert ch.queue_delete(name, if_empty=True, if_unused=True).method.message_count == 0


def test_delete_if_empty_counts_only_ready_messages(ch):
    queue = new_queue(ch)
    publish(ch, queue)
    ch.basic_get(queue)
    assert ch.queue_delete(queue, if_empty=True).method.message_count == 0


def test_delete_cancels_consumers_with_notification(ch):
    queue = new_queue(ch)
    cancelled = []
    ch.basic_consume(queue, lambda *a: None)
    ch.add_on_cancel_callback(lambda frame: cancelled.append(frame.method))
    ch.connection.channel().queue_delete(queue)
    pump(ch.connection, lambda: cancelled)
    assert isinstance(cancelled[0], spec.Basic.Cancel)
    assert ch.consumer_tags == []


def test_exclusive_queue_usable_by_all_channels_of_its_connection(conn, ch):
    queue = new_queue(ch)
    other = conn.channel()
    publish(other, queue, b"x")
    pump(conn, lambda: counts(ch, queue) == (1, 0))
    assert drain(other, queue) == [(b"x", False)]


def test_exclusive_queue_deleted_with_its_connection(broker, conn):
    with connection(broker) as owner:
        queue = new_queue(owner.channel())
        assert counts(owner.channel(), queue) == (0, 0)
    pump(conn, lambda: not exists(conn, "queue", queue))


def test_others_may_publish_to_an_exclusive_queue(broker, ch):
    queue = new_queue(ch)
    with connection(broker) as other:
        publish(other.channel(), queue, b"from-elsewhere")
    pump(ch.connection, lambda: counts(ch, queue)[0] == 1)
    assert drain(ch, queue) == [(b"from-elsewhere", False)]


def test_auto_delete_queue_goes_with_last_consumer(conn, ch, name):
    ch.queue_declare(name, auto_delete=True)
    first = ch.basic_consume(name, lambda *a: None)
    second = ch.basic_consume(name, lambda *a: None)
    ch.basic_cancel(first)
    assert counts(conn.channel(), name) == (0, 1)
    ch.basic_cancel(second)
    pump(conn, lambda: not exists(conn, "queue", name))


def test_auto_delete_queue_stays_until_first_consumer(conn, ch, name):
    ch.queue_declare(name, auto_delete=True)
    settle(conn)
    assert exists(conn, "queue", name)
    ch.queue_delete(name)


def test_queue_passive_missing(conn, name):
    expected = (404, f"NOT_FOUND - no queue '{name}' in vhost '/'", 50, 10)
    assert channel_error(conn, lambda c: c.queue_declare(name, passive=True)) == expected


def test_queue_passive_empty_name_is_not_the_last_queue(conn):
    def action(channel):
        new_queue(channel)
        channel.queue_declare("", passive=True)

    assert channel_error(conn, action) == (404, "NOT_FOUND - no queue '' in vhost '/'", 50, 10)


def test_queue_reserved_prefix(conn, name):
    expected = (
        403,
        f"ACCESS_REFUSED - queue name 'amq.{name}' contains reserved prefix 'amq.*'",
        50,
        10,
    )
    assert channel_error(conn, lambda c: c.queue_declare(f"amq.{name}")) == expected
    expected = (404, f"NOT_FOUND - no queue 'amq.{name}' in vhost '/'", 50, 10)
    assert channel_error(conn, lambda c: c.queue_declare(f"amq.{name}", passive=True)) == expected


def test_server_named_queue_cannot_be_redeclared(conn, ch):
    queue = new_queue(ch)
    expected = (
        403,
        f"ACCESS_REFUSED - queue name '{queue}' contains reserved prefix 'amq.*'",
        50,
        10,
    )
    assert channel_error(conn, lambda c: c.queue_declare(queue, exclusive=True)) == expected


@pytest.mark.parametrize(
    ("first", "second", "arg", "received", "current"),
    [
        ({"durable": False}, {"durable": True}, "durable", "true", "false"),
        ({"durable": True}, {"durable": False}, "durable", "false", "true"),
        ({"auto_delete": False}, {"auto_delete": True}, "auto_delete", "true", "false"),
        ({"auto_delete": True}, {"auto_delete": False}, "auto_delete", "false", "true"),
    ],
    ids=["durable", "not-durable", "auto_delete", "not-auto_delete"],
)
def test_queue_redeclare_inequivalent(conn, ch, name, first, second, arg, received, current):
    ch.queue_declare(name, **first)
    expected = (406, inequivalent("queue", name, arg, f"'{received}'", f"'{current}'"), 50, 10)
    assert channel_error(conn, lambda c: c.queue_declare(name, **second)) == expected
    ch.queue_delete(name)


@pytest.mark.parametrize(
    ("first", "second", "received", "current"),
    [
        (1000, 2000, "'2000'", "'1000'"),
        (None, 2000, "the value '2000' of type 'signedint'", "none"),
        (1000, None, "none", "the value '1000' of type 'signedint'"),
    ],
    ids=["changed", "added", "removed"],
)
def test_queue_redeclare_message_ttl(conn, ch, name, first, second, received, current):
    def arguments(value):
        return None if value is None else {"x-message-ttl": value}

    ch.queue_declare(name, arguments=arguments(first))
    expected = (406, inequivalent("queue", name, "x-message-ttl", received, current), 50, 10)
    assert (
        channel_error(conn, lambda c: c.queue_declare(name, arguments=arguments(second)))
        == expected
    )
    ch.queue_delete(name)


def test_queue_redeclare_ignores_unknown_arguments(ch, name):
    ch.queue_declare(name, arguments={"x-foo": 1, "foo": "a"})
    ok = ch.queue_declare(name, arguments={"x-foo": 2}).method
    assert (ok.queue, ok.message_count, ok.consumer_count) == (name, 0, 0)
    ch.queue_delete(name)


def test_queue_redeclare_exclusive_mismatch_on_same_connection(conn, ch, name):
    ch.queue_declare(name)
    expected = (405, cut(LOCKED.format(name)), 50, 10)
    assert channel_error(conn, lambda c: c.queue_declare(name, exclusive=True)) == expected
    ch.queue_delete(name)


EXCLUSIVE_ACTIONS = {
    "declare": (lambda c, q: c.queue_declare(q, exclusive=True), 50, 10),
    "declare-shared": (lambda c, q: c.queue_declare(q), 50, 10),
    "passive": (lambda c, q: c.queue_declare(q, passive=True), 50, 10),
    "bind": (lambda c, q: c.queue_bind(q, "amq.direct", "k"), 50, 20),
    "purge": (lambda c, q: c.queue_purge(q), 50, 30),
    "delete": (lambda c, q: c.queue_delete(q), 50, 40),
    "consume": (lambda c, q: c.basic_consume(q, lambda *a: None), 60, 20),
    "get": (lambda c, q: c.basic_get(q), 60, 70),
}


@pytest.mark.parametrize("operation", list(EXCLUSIVE_ACTIONS))
def test_exclusive_queue_locked_for_other_connections(broker, conn, ch, operation):
    queue = new_queue(ch, f"excl-{operation}-{id(ch)}")
    ch.queue_bind(queue, "amq.direct", queue)
    action, class_id, method_id = EXCLUSIVE_ACTIONS[operation]
    with connection(broker) as other:
        expected = (405, LOCKED.format(queue), class_id, method_id)
        assert channel_error(other, lambda c: action(c, queue)) == expected
    assert exists(conn, "queue", queue)


def test_exclusive_queue_unbind_by_other_connections(broker, ch, name):
    """Unbinding what is bound is locked; unbinding what is not bound is a no-op."""
    queue = new_queue(ch, f"excl-unbind-{id(ch)}")
    ch.queue_bind(queue, "amq.direct", queue)
    with connection(broker) as other:
        other.channel().queue_unbind(queue, "amq.direct", name)
        expected = (405, LOCKED.format(queue), 50, 50)
        assert (
            channel_error(other, lambda c: c.queue_unbind(queue, "amq.direct", queue)) == expected
        )
    publish(ch, queue, exchange="amq.direct")
    assert ch.basic_get(queue, auto_ack=True)[2] == b"m"


def test_long_reply_text_is_cut_like_rabbitmq(conn):
    queue = "q" * 250
    expected = (404, f"NOT_FOUND - no queue '{queue}' in vhost '/'"[:252] + "...", 50, 10)
    assert channel_error(conn, lambda c: c.queue_declare(queue, passive=True)) == expected


def test_bind_missing_exchange_or_queue(conn, ch, name):
    queue = new_queue(ch)
    no_exchange = (404, f"NOT_FOUND - no exchange '{name}' in vhost '/'", 50, 20)
    assert channel_error(conn, lambda c: c.queue_bind(queue, name)) == no_exchange
    assert channel_error(conn, lambda c: c.queue_bind(name, name)) == no_exchange
    expected = (404, f"NOT_FOUND - no queue '{name}' in vhost '/'", 50, 20)
    assert channel_error(conn, lambda c: c.queue_bind(name, "amq.direct")) == expected


def test_bind_and_unbind_default_exchange_refused(conn, ch):
    queue = new_queue(ch)
    expected = (403, DEFAULT_EXCHANGE, 50, 20)
    assert channel_error(conn, lambda c: c.queue_bind(queue, "", queue)) == expected
    expected = (403, DEFAULT_EXCHANGE, 50, 50)
    assert channel_error(conn, lambda c: c.queue_unbind(queue, "", queue)) == expected


@pytest.mark.parametrize(
    ("operation", "action", "class_id", "method_id"),
    [
        ("bind", lambda c: c.queue_bind("", "amq.direct"), 50, 20),
        ("purge", lambda c: c.queue_purge(""), 50, 30),
        ("delete", lambda c: c.queue_delete(""), 50, 40),
        ("consume", lambda c: c.basic_consume("", lambda *a: None), 60, 20),
        ("get", lambda c: c.basic_get(""), 60, 70),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_empty_queue_name_without_declared_queue(conn, operation, action, class_id, method_id):
    assert channel_error(conn, action) == (404, NO_PREVIOUS_QUEUE, class_id, method_id)


def test_purge_missing_queue(conn, name):
    expected = (404, f"NOT_FOUND - no queue '{name}' in vhost '/'", 50, 30)
    assert channel_error(conn, lambda c: c.queue_purge(name)) == expected


def test_delete_missing_queue_is_ok(ch, name):
    assert ch.queue_delete(name, if_unused=True, if_empty=True).method.message_count == 0


def test_delete_if_unused_with_consumer(conn, ch):
    queue = new_queue(ch)
    ch.basic_consume(queue, lambda *a: None)
    expected = (406, f"PRECONDITION_FAILED - queue '{queue}' in vhost '/' in use", 50, 40)
    assert channel_error(conn, lambda c: c.queue_delete(queue, if_unused=True)) == expected
    assert exists(conn, "queue", queue)


def test_delete_if_empty_with_messages(conn, ch):
    queue = new_queue(ch)
    publish(ch, queue)
    expected = (406, f"PRECONDITION_FAILED - queue '{queue}' in vhost '/' not empty", 50, 40)
    assert channel_error(conn, lambda c: c.queue_delete(queue, if_empty=True)) == expected
    assert exists(conn, "queue", queue)
