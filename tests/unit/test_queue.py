"""Queues and their vhost, in-process: a real ``VHost`` and real ``Queue``s, with a clock
that moves when told and consumer channels that record what they are given."""

import pytest

from xivo_bus.amqp import errors

from .roles_for_tests import Owner, RecordingChannel, declare, message, subscribe, vhost


def publish(host, queue_name: str, *bodies: bytes, **props) -> list:
    return [host.queues[queue_name].enqueue(message(body, queue_name, **props)) for body in bodies]


def test_round_robin_and_per_consumer_prefetch():
    host, _ = vhost()
    queue = declare(host, "q")
    one, two = RecordingChannel(), RecordingChannel()
    subscribe(queue, one, "one", prefetch=1)
    subscribe(queue, two, "two")
    publish(host, "q", b"1", b"2", b"3", b"4")
    assert one.bodies() == [b"1"]  # prefetch 1: no more until it acks
    assert two.bodies() == [b"2", b"3", b"4"]
    assert queue.unacked == 4 and queue.message_count == 0


def test_ack_frees_prefetch_and_counts():
    host, _ = vhost()
    queue = declare(host, "q")
    channel = RecordingChannel()
    consumer = subscribe(queue, channel, prefetch=1)
    publish(host, "q", b"1", b"2")
    [(_, _, _, delivery)] = channel.delivered
    assert consumer.unacked == 1 and queue.message_count == 1
    queue.ack([delivery])
    assert channel.bodies() == [b"1", b"2"] and consumer.unacked == 1 and queue.unacked == 1


def test_no_ack_deliveries_keep_no_record():
    host, _ = vhost()
    queue = declare(host, "q")
    channel = RecordingChannel()
    subscribe(queue, channel, no_ack=True)
    publish(host, "q", b"1")
    assert channel.delivered == [("c", b"1", False, None)] and queue.unacked == 0


def test_requeue_restores_order_and_flags_redelivered():
    host, _ = vhost()
    queue = declare(host, "q")
    channel = RecordingChannel(room=2)
    subscribe(queue, channel)
    publish(host, "q", b"1", b"2", b"3")
    held = [record for *_, record in channel.delivered]
    channel.delivered.clear()
    channel.room = 0  # nobody can take while we look
    queue.requeue(list(reversed(held)))
    assert [e.message.body for e in queue.ready] == [b"1", b"2", b"3"]
    assert [e.redelivered for e in queue.ready] == [True, True, False]
    channel.room = 10
    queue.dispatch()
    assert [(body, again) for _, body, again, _ in channel.delivered] == [
        (b"1", True),
        (b"2", True),
        (b"3", False),
    ]


def test_basic_get_and_empty():
    host, _ = vhost()
    queue = declare(host, "q")
    assert queue.get(no_ack=False) is None
    publish(host, "q", b"1", b"2")
    entry, delivery = queue.get(no_ack=False)
    assert entry.message.body == b"1" and delivery.consumer is None
    assert queue.unacked == 1 and queue.message_count == 1
    entry, delivery = queue.get(no_ack=True)
    assert entry.message.body == b"2" and delivery is None and queue.unacked == 1


def test_reject_dead_letters_with_the_vhost():
    host, _ = vhost()
    declare(host, "dead")
    host.bind(host.exchange("amq.fanout"), host.queues["dead"], "", {})
    queue = declare(host, "q", **{"x-dead-letter-exchange": "amq.fanout"})
    channel = RecordingChannel()
    subscribe(queue, channel)
    publish(host, "q", b"1")
    [(*_, delivery)] = channel.delivered
    queue.reject([delivery])
    [entry] = host.queues["dead"].ready
    assert entry.message.body == b"1" and entry.message.exchange == "amq.fanout"
    assert entry.message.headers["x-death"][0]["reason"] in ("rejected", b"rejected")
    assert queue.unacked == 0


def test_message_ttl_expires_from_the_head_on_the_clock():
    host, clock = vhost()
    declare(host, "dead")
    queue = declare(
        host,
        "q",
        **{
            "x-message-ttl": 1000,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": "dead",
        },
    )
    publish(host, "q", b"1")
    clock.advance(0.5)
    publish(host, "q", b"2")
    clock.advance(0.6)  # the first is past its TTL, the second not yet
    assert [e.message.body for e in queue.ready] == [b"2"]
    assert [e.message.body for e in host.queues["dead"].ready] == [b"1"]
    clock.advance(0.5)
    assert not queue.ready and len(host.queues["dead"].ready) == 2


def test_per_message_ttl_behind_a_longer_head_waits_for_it():
    host, clock = vhost()
    queue = declare(host, "q")
    publish(host, "q", b"long", expiration="5000")
    publish(host, "q", b"short", expiration="100")
    clock.advance(1)
    assert [e.message.body for e in queue.ready] == [b"long", b"short"]
    clock.advance(5)
    assert not queue.ready


def test_unused_queue_expires_and_its_owner_is_told():
    host, clock = vhost()
    owner = Owner()
    queue = host.declare_queue("q", False, True, False, {"x-expires": 2000}, owner)
    assert owner.queues == [queue]
    clock.advance(1.5)
    queue.used()  # redeclared: the lease starts again
    clock.advance(1.5)
    assert "q" in host.queues
    clock.advance(1)
    assert "q" not in host.queues and queue.deleted and owner.queues == []


def test_consumers_keep_an_expiring_queue_alive():
    host, clock = vhost()
    queue = declare(host, "q", **{"x-expires": 1000})
    consumer = subscribe(queue, RecordingChannel())
    clock.advance(5)
    assert "q" in host.queues
    queue.remove_consumer(consumer)
    clock.advance(1.1)
    assert "q" not in host.queues


@pytest.mark.parametrize(
    ("overflow", "kept", "results"),
    [
        ("drop-head", [b"2", b"3"], [0, 0, 0]),
        ("reject-publish", [b"1", b"2"], [0, 0, None]),
    ],
)
def test_max_length_overflow(overflow, kept, results):
    host, _ = vhost()
    queue = declare(host, "q", **{"x-max-length": 2, "x-overflow": overflow})
    assert publish(host, "q", b"1", b"2", b"3") == results  # None: refused, nacked
    assert [e.message.body for e in queue.ready] == kept


def test_priority_queue_and_consumer_priorities():
    host, _ = vhost()
    queue = declare(host, "q", **{"x-max-priority": 9})
    busy = RecordingChannel(room=0)
    subscribe(queue, busy, "busy")  # takes nothing: messages wait, by priority
    publish(host, "q", b"low", priority=1)
    publish(host, "q", b"high", priority=8)
    publish(host, "q", b"middle", priority=5)
    assert [e.message.body for e in queue.ready] == [b"high", b"middle", b"low"]
    low, high = RecordingChannel(), RecordingChannel(room=2)
    subscribe(queue, low, "low", priority=1)
    subscribe(queue, high, "high", priority=5)  # the highest that can take is served first
    assert low.bodies() == [b"high", b"middle", b"low"]  # it was alone when it came
    publish(host, "q", b"a", b"b", b"c")
    assert high.bodies() == [b"a", b"b"] and low.bodies()[3:] == [b"c"]


def test_single_active_consumer_passes_on_when_it_leaves():
    host, _ = vhost()
    queue = declare(host, "q", **{"x-single-active-consumer": True})
    first, second = RecordingChannel(), RecordingChannel()
    active = subscribe(queue, first, "first")
    subscribe(queue, second, "second")
    publish(host, "q", b"1", b"2")
    assert first.bodies() == [b"1", b"2"] and second.bodies() == []
    queue.remove_consumer(active)
    publish(host, "q", b"3")
    assert second.bodies() == [b"3"]


def test_delete_cancels_consumers_and_drops_messages():
    host, _ = vhost()
    queue = declare(host, "q")
    host.bind(host.exchange("amq.direct"), queue, "k", {})
    channel = RecordingChannel(room=0)
    subscribe(queue, channel)
    publish(host, "q", b"1", b"2")
    assert host.delete_queue(queue) == 2
    assert channel.cancelled == ["c"] and queue.deleted
    assert host.route(host.exchange("amq.direct"), message(routing_key="k")) == []
    assert host.delete_queue(queue) == 0  # once only


def test_auto_delete_queue_goes_with_its_last_consumer():
    host, _ = vhost()
    queue = host.declare_queue("q", False, False, True, {}, Owner())
    consumer = subscribe(queue, RecordingChannel())
    queue.remove_consumer(consumer)
    assert "q" not in host.queues


def test_exclusive_queue_is_locked_to_its_owner():
    host, _ = vhost()
    mine, theirs = Owner(), Owner()
    host.declare_queue("q", False, True, False, {}, mine)
    assert host.queue("q", mine).name == "q"
    with pytest.raises(errors.ChannelError) as raised:
        host.queue("q", theirs)
    assert raised.value.reply_code == errors.RESOURCE_LOCKED


def test_dead_letter_cycle_is_dropped_unless_rejected():
    host, clock = vhost()
    # two queues dead-lettering into each other by TTL: the message dies in a, then b,
    # and is dropped when it would come back to a
    for name, other in (("a", "b"), ("b", "a")):
        declare(
            host,
            name,
            **{
                "x-message-ttl": 100,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": other,
            },
        )
    publish(host, "a", b"1")
    clock.advance(0.15)
    assert [e.message.body for e in host.queues["b"].ready] == [b"1"]
    clock.advance(0.15)
    assert not host.queues["a"].ready and not host.queues["b"].ready


def test_alternate_exchange_and_exchange_to_exchange_routing():
    host, _ = vhost()
    declare(host, "fallback")
    declare(host, "inner")
    host.declare_exchange("alt", "fanout", False, False, False, {})
    host.bind(host.exchange("alt"), host.queues["fallback"], "", {})
    host.declare_exchange("main", "direct", False, False, False, {"alternate-exchange": "alt"})
    host.declare_exchange("next", "fanout", False, False, False, {})
    host.bind(host.exchange("main"), host.exchange("next"), "k", {})
    host.bind(host.exchange("next"), host.queues["inner"], "", {})
    main = host.exchange("main")
    assert [q.name for q in host.route(main, message(routing_key="k"))] == ["inner"]
    assert [q.name for q in host.route(main, message(routing_key="x"))] == ["fallback"]
