"""Settling deliveries: ack/nack/reject (multiple, requeue), recover, qos per consumer and
global, and where unacked messages go back when their channel or connection closes."""

from __future__ import annotations

from pamqp import commands

from ..harness import (
    Collector,
    channel_closed,
    connect,
    connection_closed,
    delivery,
    get_all,
    pika_channel,
    pika_scenario,
    publish_all,
    raw,
    scenario,
    sync,
)


def unknown_tag(tag: int) -> dict:
    return channel_closed(406, f"PRECONDITION_FAILED - unknown delivery tag {tag}")


def _with_unacked(ch, p, count: int, extra: int = 0) -> None:
    """``count`` messages got and left unacked (tags 1..count), ``extra`` more ready."""
    ch.queue_declare(p, exclusive=True)
    publish_all(ch, "", p, [b"m%d" % i for i in range(count + extra)])
    for _ in range(count):
        ch.basic_get(p)


def left(*names: str) -> dict:
    """Expect the messages still in the queue afterwards to be ``names``, in order."""
    return {"ok": {"left": lambda seen: [m["body"] for m in seen] == list(names)}}


def _settle(count, action, extra=0):
    def body(ch, p):
        _with_unacked(ch, p, count, extra)
        action(ch)
        sync(ch)
        return {"left": get_all(ch, p)}

    return body


SETTLE = {
    "ack_unknown_tag": (0, lambda ch: ch.basic_ack(42), unknown_tag(42)),
    "ack_twice": (1, lambda ch: (ch.basic_ack(1), ch.basic_ack(1)), unknown_tag(1)),
    "ack_multiple_zero_nothing_outstanding": (
        0,
        lambda ch: ch.basic_ack(0, multiple=True),
        left("m0"),
    ),
    "ack_multiple_zero_acks_all": (3, lambda ch: ch.basic_ack(0, multiple=True), left("m3")),
    "ack_zero_not_multiple": (1, lambda ch: ch.basic_ack(0), unknown_tag(0)),
    "ack_multiple_beyond_outstanding": (
        2,
        lambda ch: ch.basic_ack(5, multiple=True),
        unknown_tag(5),
    ),
    "ack_multiple_on_acked_tag": (
        3,
        lambda ch: (ch.basic_ack(2), ch.basic_ack(2, multiple=True)),
        unknown_tag(2),
    ),
    "ack_multiple_up_to_tag": (
        3,
        lambda ch: (ch.basic_ack(2, multiple=True), ch.basic_recover(requeue=True)),
        None,
    ),
    "nack_unknown_tag": (0, lambda ch: ch.basic_nack(7), unknown_tag(7)),
    "reject_unknown_tag": (0, lambda ch: ch.basic_reject(7), unknown_tag(7)),
    "nack_multiple_zero_nothing_outstanding": (
        0,
        lambda ch: ch.basic_nack(0, multiple=True),
        left("m0"),
    ),
    "reject_requeue_goes_to_head": (1, lambda ch: ch.basic_reject(1, requeue=True), None),
    "reject_without_requeue_drops": (1, lambda ch: ch.basic_reject(1, requeue=False), None),
    "nack_multiple_requeue_keeps_order": (
        3,
        lambda ch: ch.basic_nack(3, multiple=True, requeue=True),
        None,
    ),
    "nack_without_requeue_drops": (
        2,
        lambda ch: ch.basic_nack(2, multiple=True, requeue=False),
        None,
    ),
    "nack_single_requeue_middle": (3, lambda ch: ch.basic_nack(2, requeue=True), None),
    "recover_requeues_all_unacked": (2, lambda ch: ch.basic_recover(requeue=True), None),
}
for _name, (_count, _action, _expect) in SETTLE.items():
    pika_scenario(
        "basic.ack", "basic.nack", "basic.reject", "basic.recover", name=_name, expect=_expect
    )(_settle(_count, _action, extra=1))


@pika_scenario("basic.ack", expect=unknown_tag(1))
def ack_tag_of_no_ack_get(ch, p):
    ch.queue_declare(p, exclusive=True)
    ch.basic_publish("", p, b"x")
    ch.basic_get(p, auto_ack=True)
    ch.basic_ack(1)
    return sync(ch)


@scenario("basic.recover", "basic.recover-ok", "basic.deliver")
def recover_ok_comes_before_redeliveries(url, prefix):
    with raw(url) as session:
        session.call(commands.Queue.Declare(queue=prefix, exclusive=True))
        session.publish(1, "", prefix, b"a")
        session.publish(1, "", prefix, b"b")
        consume_ok = session.call(commands.Basic.Consume(queue=prefix, consumer_tag="c"))
        first = [session.next() for _ in range(6)]
        session.send(1, commands.Basic.Recover(requeue=True))
        return {
            "consume": consume_ok,
            "first": first,
            "after_recover": [session.next() for _ in range(7)],
        }


for _name, _method, _reply in (
    ("recover_without_requeue", commands.Basic.Recover(requeue=False), (60, 110)),
    ("recover_async_without_requeue", commands.Basic.RecoverAsync(requeue=False), (60, 100)),
):
    scenario(
        "basic.recover",
        "basic.recover-async",
        name=_name,
        expect={
            "reply": {
                "reply_code": 540,
                "reply_text": "NOT_IMPLEMENTED - requeue=false",
                "class_id": _reply[0],
                "method_id": _reply[1],
            }
        },
    )(lambda url, prefix, m=_method: _raw_reply(url, m))


def _raw_reply(url, method):
    with raw(url) as session:
        return {"reply": session.call(method)}


@scenario("basic.recover-async", "basic.get")
def recover_async_requeues_without_reply(url, prefix):
    with raw(url) as session:
        session.call(commands.Queue.Declare(queue=prefix, exclusive=True))
        session.publish(1, "", prefix, b"a")
        session.send(1, commands.Basic.Get(queue=prefix))
        got = [*session.until("Basic.GetOk"), session.next(), session.next()]
        session.send(1, commands.Basic.RecoverAsync(requeue=True))
        between = session.barrier()
        session.send(1, commands.Basic.Get(queue=prefix))
        return {"got": got, "between": between, "again": session.until("Basic.GetOk")}


@scenario("basic.consume", "channel.close", "basic.deliver")
def requeue_on_channel_close_keeps_order(url, prefix):
    with pika_channel(url) as (connection, channel):
        channel.queue_declare(prefix, exclusive=True)
        publish_all(channel, "", prefix, [b"m%d" % i for i in range(5)])
        first = connection.channel()
        collector = Collector(connection)
        first.basic_consume(prefix, collector.callback())
        collector.wait(5)
        first.basic_ack(3)
        first.close()
        return {"first": collector.seen, "after": get_all(channel, prefix)}


@scenario("basic.consume", "channel.close", "basic.deliver")
def requeue_with_another_consumer_active(url, prefix):
    with pika_channel(url) as (connection, channel):
        channel.queue_declare(prefix, exclusive=True)
        first = connection.channel()
        first.basic_qos(prefetch_count=3)
        seen_first = Collector(connection)
        first.basic_consume(prefix, seen_first.callback())
        publish_all(channel, "", prefix, [b"m%d" % i for i in range(6)])
        seen_first.wait(3)
        seen_second = Collector(connection)
        second = connection.channel()
        # the second takes what is ready before the first acks: otherwise which of the two
        # gets the message the ack makes room for is a race, on both brokers
        second.basic_consume(prefix, seen_second.callback(), auto_ack=True)
        seen_second.wait(3)
        first.basic_ack(2)
        first.close()
        seen_second.wait(4)
        return {
            "first": seen_first.seen,
            "second": [(m["body"], m["redelivered"]) for m in seen_second.seen],
        }


@scenario("basic.get", "connection.close")
def requeue_on_connection_close(url, prefix):
    with pika_channel(url) as (_connection, channel):
        channel.queue_declare(prefix, auto_delete=False)
        publish_all(channel, "", prefix, [b"a", b"b"])
        other = connect(url)
        taken = delivery(*other.channel().basic_get(prefix))
        other.close()
        left = get_all(channel, prefix)
        channel.queue_delete(prefix)
        return {"taken": taken, "left": left}


@pika_scenario(
    "basic.qos", expect=connection_closed(540, "NOT_IMPLEMENTED - prefetch_size!=0 (1000)")
)
def qos_prefetch_size(ch, p):
    return ch.basic_qos(prefetch_size=1000)


@scenario("basic.qos", "basic.qos-ok", expect=[{"method": "Basic.QosOk"}] * 3)
def qos_values_accepted(url, prefix):
    with raw(url) as session:
        settings = ((0, True), (65535, False), (1, False))
        return [session.call(commands.Basic.Qos(prefetch_count=n, global_=g)) for n, g in settings]


def _qos(settings, consumers=2, messages=10):
    def run(url, prefix):
        with pika_channel(url) as (connection, channel):
            channel.queue_declare(prefix, exclusive=True)
            publish_all(channel, "", prefix, [b"%d" % i for i in range(messages)])
            consumer = connection.channel()
            for count, is_global in settings:
                consumer.basic_qos(prefetch_count=count, global_qos=is_global)
            collector = Collector(connection)
            for label in "ab"[:consumers]:
                consumer.basic_consume(prefix, collector.callback(label), consumer_tag=label)
            collector.wait(messages, timeout=0.5)
            held = sorted(m["consumer"] for m in collector.seen)
            consumer.basic_ack(collector.seen[0]["delivery_tag"])
            collector.wait(len(held) + 1, timeout=2)
            return {
                "held": held,
                "after_one_ack": len(collector.seen),
                "ready": channel.queue_declare(prefix, passive=True),
            }

    return run


QOS = {
    "qos_per_consumer": [(2, False)],
    "qos_global": [(2, True)],
    "qos_per_consumer_and_global": [(3, False), (4, True)],
    "qos_unlimited": [(0, False)],
}
for _name, _settings in QOS.items():
    scenario("basic.qos", "basic.consume", "basic.ack", name=_name)(_qos(_settings))


@scenario("basic.qos", "basic.consume")
def qos_changed_after_consume(url, prefix):
    with pika_channel(url) as (connection, channel):
        channel.queue_declare(prefix, exclusive=True)
        channel.basic_qos(prefetch_count=1)
        collector = Collector(connection)
        channel.basic_consume(prefix, collector.callback())
        publish_all(channel, "", prefix, [b"%d" % i for i in range(5)])
        collector.wait(5, timeout=0.5)
        before = len(collector.seen)
        channel.basic_qos(prefetch_count=3)
        collector.wait(5, timeout=0.5)
        return {"before": before, "after": len(collector.seen)}


@pika_scenario("basic.reject", "basic.get")
def reject_requeue_then_redelivered_flag(ch, p):
    _with_unacked(ch, p, 1)
    ch.basic_reject(1, requeue=True)
    again = delivery(*ch.basic_get(p))
    ch.basic_ack(again["delivery_tag"])
    sync(ch)
    return again
