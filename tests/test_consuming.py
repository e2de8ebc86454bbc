"""Consuming: basic.consume, deliveries and their fields, basic.get, round-robin,
properties and bodies carried exactly, prefetch (basic.qos), exclusive consumers."""

from __future__ import annotations

import datetime
import decimal
import re

import pika
import pytest
from amqp_raw import RawClient
from pamqp import commands
from pika import spec
from pika_helpers import (
    GENERATED,
    IN_EXCLUSIVE_USE,
    channel_error,
    connection,
    connection_error,
    consume,
    counts,
    fill,
    new_queue,
    publish,
    pump,
    send,
    settle,
)


def test_consume_with_server_generated_tag(broker):
    """pika always names its consumers, so this one speaks AMQP by hand."""
    with RawClient(broker.host, broker.port) as raw:
        raw.handshake()
        raw.open_channel(1)
        raw.send(1, commands.Queue.Declare(exclusive=True))
        queue = raw.expect(commands.Queue.DeclareOk, 1).queue
        tags = []
        for _ in range(2):
            raw.send(1, commands.Basic.Consume(queue=queue))
            tags.append(raw.expect(commands.Basic.ConsumeOk, 1).consumer_tag)
    assert all(re.fullmatch(rf"amq\.ctag-{GENERATED}", tag) for tag in tags)
    assert tags[0] != tags[1]


def test_consume_deliver_fields_and_ack(ch):
    queue = new_queue(ch)
    got = consume(ch, queue, consumer_tag="my-tag")
    ch.queue_bind(queue, "amq.topic", "k.*")
    publish(ch, "k.one", b"body", exchange="amq.topic")
    pump(ch.connection, lambda: got)
    method, _, body = got[0]
    assert (method.consumer_tag, method.delivery_tag, method.redelivered) == ("my-tag", 1, False)
    assert (method.exchange, method.routing_key, body) == ("amq.topic", "k.one", b"body")
    ch.basic_ack(1)
    ch.basic_cancel("my-tag")
    assert counts(ch, queue) == (0, 0)


def test_cancel_stops_deliveries(ch):
    queue = new_queue(ch)
    got = consume(ch, queue, consumer_tag="c")
    ch.basic_cancel("c")
    publish(ch, queue)
    pump(ch.connection, lambda: counts(ch, queue) == (1, 0))
    settle(ch.connection)
    assert got == []


def test_no_ack_consumer_leaves_nothing_unacked(ch):
    queue = new_queue(ch)
    got = consume(ch, queue, auto_ack=True)
    for i in range(3):
        publish(ch, queue, b"%d" % i)
    pump(ch.connection, lambda: len(got) == 3)
    ch.close()
    channel = ch.connection.channel()
    assert counts(channel, queue) == (0, 0)


def test_get_and_get_empty(ch):
    queue = new_queue(ch)
    assert ch.basic_get(queue) == (None, None, None)
    for i in range(3):
        publish(ch, queue, b"%d" % i)
    method, _, body = ch.basic_get(queue)
    expected = (1, False, 2, b"0")
    assert (method.delivery_tag, method.redelivered, method.message_count, body) == expected
    assert (method.exchange, method.routing_key) == ("", queue)
    method, _, body = ch.basic_get(queue, auto_ack=True)
    assert (method.delivery_tag, method.message_count, body) == (2, 1, b"1")


def test_round_robin_across_consumers(conn, ch):
    queue = new_queue(ch)
    order = []
    tags = ["a", "b", "c"]
    for tag in tags:
        ch.basic_consume(
            queue, lambda _c, m, _p, _b: order.append(m.consumer_tag), True, False, tag
        )
    for i in range(9):
        publish(ch, queue, b"%d" % i)
    pump(conn, lambda: len(order) == 9)
    assert sorted(order[:3]) == tags
    assert order == order[:3] * 3


def test_round_robin_across_channels(conn, ch):
    queue = new_queue(ch)
    first, second = conn.channel(), conn.channel()
    got_first, got_second = (
        consume(first, queue, auto_ack=True),
        consume(second, queue, auto_ack=True),
    )
    for i in range(6):
        publish(ch, queue, b"%d" % i)
    pump(conn, lambda: len(got_first) + len(got_second) == 6)
    bodies = sorted([b for *_, b in got_first]), sorted([b for *_, b in got_second])
    assert sorted(bodies) == [[b"0", b"2", b"4"], [b"1", b"3", b"5"]]


ALL_PROPERTIES = pika.BasicProperties(
    content_type="application/json",
    content_encoding="utf-8",
    headers={
        "str": "text",
        "bytes": b"\x00\xffraw",
        "int": -7,
        "long": 2**40,
        "bool": True,
        "false": False,
        "void": None,
        "decimal": decimal.Decimal("3.14"),
        "timestamp": datetime.datetime(2024, 5, 6, 7, 8, 9, tzinfo=datetime.UTC),
        "array": [1, "two", [3], {"four": 4}, None, False],
        "table": {"nested": {"deeper": ["x", 1]}, "empty": {}},
        "empty-array": [],
    },
    delivery_mode=2,
    priority=5,
    correlation_id="corr-1",
    reply_to="reply-queue",
    expiration="60000",
    message_id="msg-1",
    timestamp=1700000000,
    type="event.kind",
    user_id="guest",
    app_id="xivo-tests",
)


PROPERTY_NAMES = [
    "content_type",
    "content_encoding",
    "headers",
    "delivery_mode",
    "priority",
    "correlation_id",
    "reply_to",
    "expiration",
    "message_id",
    "timestamp",
    "type",
    "user_id",
    "app_id",
]


def test_all_properties_carried_exactly(ch):
    queue = new_queue(ch)
    got = consume(ch, queue, auto_ack=True)
    publish(ch, queue, b"{}", properties=ALL_PROPERTIES)
    pump(ch.connection, lambda: got)
    properties = got[0][1]
    for prop in PROPERTY_NAMES:
        assert getattr(properties, prop) == getattr(ALL_PROPERTIES, prop), prop


def test_all_properties_carried_exactly_by_get(ch):
    queue = new_queue(ch)
    publish(ch, queue, b"", properties=ALL_PROPERTIES)
    _, properties, body = ch.basic_get(queue, auto_ack=True)
    assert body == b""
    assert {p: getattr(properties, p) for p in PROPERTY_NAMES} == {
        p: getattr(ALL_PROPERTIES, p) for p in PROPERTY_NAMES
    }


def test_absent_properties_stay_absent(ch):
    queue = new_queue(ch)
    publish(ch, queue, b"x")
    _, properties, _ = ch.basic_get(queue, auto_ack=True)
    assert all(getattr(properties, p) is None for p in PROPERTY_NAMES)
    assert properties.cluster_id is None


@pytest.mark.parametrize("size", [0, 1, 131064, 131065, 1 << 20, 5 << 20])
def test_bodies_of_any_size_reassembled(ch, size):
    queue = new_queue(ch)
    body = bytes(i % 251 for i in range(size))
    publish(ch, queue, body)
    assert ch.basic_get(queue, auto_ack=True)[2] == body
    got = consume(ch, queue, auto_ack=True)
    publish(ch, queue, body)
    pump(ch.connection, lambda: got)
    assert got[0][2] == body


def test_small_frame_max_splits_bodies(broker):
    body = bytes(range(256)) * 100
    with connection(broker, frame_max=4096) as conn:
        ch = conn.channel()
        queue = new_queue(ch)
        publish(ch, queue, body)
        assert ch.basic_get(queue, auto_ack=True)[2] == body


def consumers_holding(conn, ch, queues: list[str], expected: list[int]) -> list[list]:
    """Consume each queue on ``ch``; wait for ``expected`` deliveries per consumer and
    check that no more arrive."""
    got = [consume(ch, queue) for queue in queues]
    pump(conn, lambda: [len(g) for g in got] >= expected)
    settle(conn)
    assert [len(g) for g in got] == expected
    return got


def test_qos_per_consumer(conn, ch):
    queues = [fill(ch, 5), fill(ch, 5)]
    ch.basic_qos(prefetch_count=2)
    got = consumers_holding(conn, ch, queues, [2, 2])
    ch.basic_ack(got[0][0][0].delivery_tag)
    pump(conn, lambda: len(got[0]) == 3)
    settle(conn)
    assert [len(g) for g in got] == [3, 2]


def test_qos_global_is_shared_by_the_channel(conn, ch):
    queues = [fill(ch, 5), fill(ch, 5)]
    ch.basic_qos(prefetch_count=3, global_qos=True)
    got = consumers_holding(conn, ch, queues, [3, 0])
    ch.basic_ack(got[0][0][0].delivery_tag)
    pump(conn, lambda: len(got[0]) + len(got[1]) == 4)
    settle(conn)
    assert len(got[0]) + len(got[1]) == 4


def test_qos_per_consumer_and_global_together(conn, ch):
    queues = [fill(ch, 5), fill(ch, 5)]
    ch.basic_qos(prefetch_count=3)
    ch.basic_qos(prefetch_count=4, global_qos=True)
    consumers_holding(conn, ch, queues, [3, 1])


def test_qos_per_consumer_applies_to_later_consumers_only(conn, ch):
    queues = [fill(ch, 5), fill(ch, 5)]
    early = consume(ch, queues[0])
    pump(conn, lambda: len(early) == 5)
    ch.basic_qos(prefetch_count=1)
    consumers_holding(conn, ch, queues[1:], [1])
    publish(ch, queues[0])
    pump(conn, lambda: len(early) == 6)


def test_qos_zero_means_unlimited(conn, ch):
    queue = fill(ch, 20)
    ch.basic_qos(prefetch_count=0)
    consumers_holding(conn, ch, [queue], [20])


def test_consume_missing_queue(conn, name):
    expected = (404, f"NOT_FOUND - no queue '{name}' in vhost '/'", 60, 20)
    assert channel_error(conn, lambda c: c.basic_consume(name, lambda *a: None)) == expected


@pytest.mark.parametrize("first_exclusive", [True, False])
def test_exclusive_consumer_conflicts(conn, ch, first_exclusive):
    queue = new_queue(ch)
    ch.basic_consume(queue, lambda *a: None, exclusive=first_exclusive)

    def action(channel):
        channel.basic_consume(queue, lambda *a: None, exclusive=not first_exclusive)

    assert channel_error(conn, action) == (403, IN_EXCLUSIVE_USE.format(queue), 60, 20)
    assert ch.queue_declare(queue, passive=True).method.consumer_count == 1


def test_exclusive_consumer_gets_everything_and_get_sees_nothing(conn, ch):
    queue = new_queue(ch)
    got = consume(ch, queue, auto_ack=True, exclusive=True)
    publish(ch, queue)
    pump(conn, lambda: got)
    publish(ch, queue)
    pump(conn, lambda: len(got) == 2)
    assert conn.channel().basic_get(queue) == (None, None, None)


def test_duplicate_consumer_tag_closes_connection(conn):
    def action(channel):
        queue = new_queue(channel)
        channel.basic_consume(queue, lambda *a: None, consumer_tag="dup")
        send(channel, spec.Basic.Consume(queue=queue, consumer_tag="dup"))

    expected = (530, "NOT_ALLOWED - attempt to reuse consumer tag 'dup'", 60, 20)
    assert connection_error(conn, action) == expected


def test_same_consumer_tag_on_two_channels_is_fine(conn, ch):
    queue = new_queue(ch)
    ch.basic_consume(queue, lambda *a: None, consumer_tag="same")
    conn.channel().basic_consume(queue, lambda *a: None, consumer_tag="same")
    assert ch.queue_declare(queue, passive=True).method.consumer_count == 2


def test_qos_prefetch_size_closes_connection(conn):
    expected = (540, "NOT_IMPLEMENTED - prefetch_size!=0 (1000)", 60, 10)
    assert connection_error(conn, lambda c: c.basic_qos(prefetch_size=1000)) == expected


def test_recover_without_requeue_closes_connection(conn):
    expected = (540, "NOT_IMPLEMENTED - requeue=false", 60, 110)
    assert connection_error(conn, lambda c: c.basic_recover(requeue=False)) == expected
