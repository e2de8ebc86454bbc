"""Publishing: publisher confirms, mandatory returns, transactions, user_id and immediate
checks."""

from __future__ import annotations

import pika
import pytest
from pika import spec
from pika.exceptions import (
    UnroutableError,
)
from pika_helpers import (
    acked,
    channel_error,
    connection_error,
    counts,
    drain,
    fill,
    get_n,
    new_queue,
    publish,
    pump,
    rpc,
    select_confirms,
    send,
    unknown_tag,
)


def test_confirm_sequence_starts_at_one_and_covers_every_publish(conn, ch):
    frames: list = []
    select_confirms(conn, ch, frames.append)
    queue = new_queue(ch)
    for i in range(50):
        publish(ch, queue if i % 2 else "no-such-queue-anywhere", b"%d" % i)
    pump(conn, lambda: acked(frames) == set(range(1, 51)))
    assert counts(ch, queue) == (25, 0)


def test_confirm_blocking_publish(ch):
    ch.confirm_delivery()
    queue = new_queue(ch)
    publish(ch, queue, b"1")
    publish(ch, "no-such-queue-anywhere", b"2")  # unroutable, not mandatory: acked
    assert drain(ch, queue) == [(b"1", False)]


def test_mandatory_unroutable_returned_then_confirmed(ch, name):
    ch.confirm_delivery()
    props = pika.BasicProperties(message_id="back")
    with pytest.raises(UnroutableError) as info:
        publish(ch, name, b"lost", exchange="amq.direct", properties=props, mandatory=True)
    (returned,) = info.value.messages
    method = returned.method
    assert (method.reply_code, method.reply_text) == (312, "NO_ROUTE")
    assert (method.exchange, method.routing_key, returned.body) == ("amq.direct", name, b"lost")
    assert returned.properties.message_id == "back"
    publish(ch, new_queue(ch), b"fine", mandatory=True)


def test_return_precedes_its_confirm(conn, ch, name):
    events = []
    select_confirms(conn, ch, lambda frame: events.append(("ack", frame.method.delivery_tag)))
    ch._impl.add_on_return_callback(lambda _c, _m, _p, body: events.append(("return", body)))
    publish(ch, name, b"lost", mandatory=True)
    pump(conn, lambda: len(events) == 2)
    assert events == [("return", b"lost"), ("ack", 1)]


def test_mandatory_return_without_confirms(conn, ch, name):
    returned = []
    ch.add_on_return_callback(lambda _c, m, p, body: returned.append((m, body)))
    publish(ch, name, b"nowhere", mandatory=True)
    publish(ch, name, b"nowhere", exchange="amq.fanout", mandatory=True)
    pump(conn, lambda: len(returned) == 2)
    seen = [(m.reply_code, m.reply_text, m.exchange, m.routing_key, b) for m, b in returned]
    assert seen == [
        (312, "NO_ROUTE", "", name, b"nowhere"),
        (312, "NO_ROUTE", "amq.fanout", name, b"nowhere"),
    ]


def test_tx_publish_visible_only_after_commit(conn, ch):
    queue = new_queue(ch)
    observer = conn.channel()
    ch.tx_select()
    publish(ch, queue, b"1")
    publish(ch, queue, b"2")
    assert counts(observer, queue) == (0, 0)
    ch.tx_commit()
    assert counts(observer, queue) == (2, 0)
    publish(ch, queue, b"3")
    ch.tx_rollback()
    ch.tx_commit()
    assert drain(observer, queue) == [(b"1", False), (b"2", False)]


def test_tx_ack_applies_at_commit(conn, ch):
    queue = fill(ch, 2)
    tags = get_n(ch, queue, 2)
    ch.tx_select()
    ch.basic_ack(tags[0])
    ch.tx_rollback()  # the ack is forgotten: the message stays unacked
    ch.basic_ack(tags[1])
    ch.tx_commit()
    ch.close()
    assert drain(conn.channel(), queue) == [(b"0", True)]


def test_tx_select_twice_and_mandatory_return_at_commit(conn, ch, name):
    returned = []
    ch.add_on_return_callback(lambda _c, m, _p, body: returned.append(body))
    ch.tx_select()
    ch.tx_select()
    publish(ch, name, b"tx-lost", mandatory=True)
    ch.tx_commit()
    pump(conn, lambda: returned)
    assert returned == [b"tx-lost"]


def test_confirm_select_twice(ch):
    ch.confirm_delivery()
    assert rpc(ch.connection, ch, spec.Confirm.Select(), spec.Confirm.SelectOk)
    publish(ch, new_queue(ch))


def test_user_id_must_be_the_login(conn, ch):
    queue = new_queue(ch)
    properties = pika.BasicProperties(user_id="x")
    expected = (
        406,
        "PRECONDITION_FAILED - user_id property set to 'x' but authenticated user was 'guest'",
        60,
        40,
    )
    assert channel_error(conn, lambda c: publish(c, queue, properties=properties)) == expected
    assert ch.queue_declare(queue, passive=True).method.message_count == 0


def test_immediate_closes_connection(conn):
    def action(channel):
        queue = new_queue(channel)
        publish_method = spec.Basic.Publish(exchange="", routing_key=queue, immediate=True)
        send(channel, publish_method, (spec.BasicProperties(), b"now"))

    assert connection_error(conn, action) == (540, "NOT_IMPLEMENTED - immediate=true", 60, 40)


def test_confirm_then_tx(conn):
    def action(channel):
        channel.confirm_delivery()
        channel.tx_select()

    expected = (406, "PRECONDITION_FAILED - cannot switch from confirm to tx mode", 90, 10)
    assert channel_error(conn, action) == expected


def test_tx_then_confirm(conn):
    def action(channel):
        channel.tx_select()
        channel.confirm_delivery()

    expected = (406, "PRECONDITION_FAILED - cannot switch from tx to confirm mode", 85, 10)
    assert channel_error(conn, action) == expected


@pytest.mark.parametrize(
    ("action", "method_id"),
    [(lambda c: c.tx_commit(), 20), (lambda c: c.tx_rollback(), 30)],
    ids=["commit", "rollback"],
)
def test_tx_end_without_select(conn, action, method_id):
    expected = (406, "PRECONDITION_FAILED - channel is not transactional", 90, method_id)
    assert channel_error(conn, action) == expected


def test_tx_unknown_ack_fails_at_once(conn):
    def action(channel):
        channel.tx_select()
        channel.basic_ack(99)

    assert channel_error(conn, action) == unknown_tag(99, 80)


def test_tx_uncommitted_publishes_dropped_with_the_channel(conn, ch):
    queue = new_queue(ch)

    def action(channel):
        channel.tx_select()
        publish(channel, queue)
        channel.queue_declare(f"amq.{queue}")

    channel_error(conn, action)
    assert ch.queue_declare(queue, passive=True).method.message_count == 0
