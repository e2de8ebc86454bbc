"""Acknowledgements: ack, nack, reject, recover, multiple, requeue order, what closing a
channel or connection gives back, and unknown delivery tags."""

from __future__ import annotations

import pytest
from pika_helpers import (
    channel_error,
    connection,
    consume,
    counts,
    drain,
    fill,
    get_n,
    new_queue,
    publish,
    pump,
    unknown_tag,
)


def test_ack_multiple(conn, ch):
    queue = fill(ch, 4)
    tags = get_n(ch, queue, 3)
    ch.basic_ack(tags[1], multiple=True)
    ch.close()
    assert drain(conn.channel(), queue) == [(b"2", True), (b"3", False)]


def test_ack_multiple_zero_acks_everything(conn, ch):
    queue = fill(ch, 3)
    get_n(ch, queue, 3)
    ch.basic_ack(0, multiple=True)
    ch.close()
    assert drain(conn.channel(), queue) == []


def test_nack_multiple_requeue_in_original_order(ch):
    queue = fill(ch, 4)
    tags = get_n(ch, queue, 3)
    ch.basic_nack(tags[1], multiple=True, requeue=True)
    assert drain(ch, queue) == [(b"0", True), (b"1", True), (b"3", False)]
    ch.basic_nack(tags[2], requeue=True)
    assert drain(ch, queue) == [(b"2", True)]


def test_nack_and_reject_without_requeue_drop(ch):
    queue = fill(ch, 3)
    tags = get_n(ch, queue, 2)
    ch.basic_reject(tags[0], requeue=False)
    ch.basic_nack(tags[1], requeue=False)
    assert drain(ch, queue) == [(b"2", False)]


def test_reject_requeue_goes_back_to_the_head(ch):
    queue = fill(ch, 3)
    (tag,) = get_n(ch, queue, 1)
    ch.basic_reject(tag, requeue=True)
    assert drain(ch, queue) == [(b"0", True), (b"1", False), (b"2", False)]


def test_recover_requeue_redelivers(conn, ch):
    queue = new_queue(ch)
    got = consume(ch, queue)
    publish(ch, queue, b"0")
    publish(ch, queue, b"1")
    pump(conn, lambda: len(got) == 2)
    ch.basic_recover(requeue=True)
    pump(conn, lambda: len(got) == 4)
    seen = [(m.delivery_tag, m.redelivered, body) for m, _, body in got]
    assert seen == [(1, False, b"0"), (2, False, b"1"), (3, True, b"0"), (4, True, b"1")]


def test_unacked_requeued_in_order_when_channel_closes(conn, ch):
    queue = fill(ch, 5)
    other = conn.channel()
    tags = get_n(other, queue, 3)
    other.basic_ack(tags[1])
    other.close()
    assert drain(ch, queue) == [(b"0", True), (b"2", True), (b"3", False), (b"4", False)]


def test_unacked_consumer_deliveries_requeued_when_connection_closes(broker, ch, name):
    ch.queue_declare(name, auto_delete=False)
    try:
        for i in range(5):
            publish(ch, name, b"%d" % i)
        with connection(broker) as other:
            got = consume(other.channel(), name)
            pump(other, lambda: len(got) == 5)
        pump(ch.connection, lambda: counts(ch, name) == (5, 0))
        assert drain(ch, name) == [(b"%d" % i, True) for i in range(5)]
    finally:
        ch.queue_delete(name)


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        (lambda c: c.basic_ack(42), unknown_tag(42, 80)),
        (lambda c: c.basic_ack(5, multiple=True), unknown_tag(5, 80)),
        (lambda c: c.basic_nack(7), unknown_tag(7, 120)),
        (lambda c: c.basic_reject(7), unknown_tag(7, 90)),
    ],
    ids=["ack", "ack-multiple", "nack", "reject"],
)
def test_settling_unknown_delivery_tag(conn, action, expected):
    assert channel_error(conn, action) == expected


def test_ack_twice(conn):
    def action(channel):
        queue = new_queue(channel)
        publish(channel, queue)
        tag = channel.basic_get(queue)[0].delivery_tag
        channel.basic_ack(tag)
        channel.basic_ack(tag)

    assert channel_error(conn, action) == unknown_tag(1, 80)


def test_ack_of_auto_acked_delivery(conn):
    def action(channel):
        queue = new_queue(channel)
        publish(channel, queue)
        channel.basic_ack(channel.basic_get(queue, auto_ack=True)[0].delivery_tag)

    assert channel_error(conn, action) == unknown_tag(1, 80)


def test_ack_multiple_zero_with_nothing_outstanding_is_fine(ch):
    ch.basic_ack(0, multiple=True)
    ch.basic_nack(0, multiple=True)
    assert new_queue(ch)


def test_ack_closing_channel_requeues_the_rest(conn, ch):
    queue = new_queue(ch)
    for body in (b"0", b"1"):
        publish(ch, queue, body)

    def action(channel):
        channel.basic_get(queue)
        channel.basic_ack(99)

    channel_error(conn, action)
    method, _, body = ch.basic_get(queue, auto_ack=True)
    assert (body, method.redelivered) == (b"0", True)
