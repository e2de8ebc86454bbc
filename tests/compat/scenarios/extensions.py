"""RabbitMQ's extensions to AMQP 0-9-1: exchange-to-exchange bindings, alternate
exchanges, CC/BCC, TTLs, queue expiry, dead-lettering, length limits, priorities, single
active consumer, consumer priorities, direct reply-to, broker nacks, cancel notification
and argument validation. Time-based ones poll with generous limits; none measures speed."""

from __future__ import annotations

import pika
from pamqp import commands

from .. import harness as h
from .transactions import read_confirms

E2E = "ext:exchange-to-exchange-bindings"
AE = "ext:alternate-exchange"
CC = "ext:cc-bcc"
QTTL = "ext:per-queue-ttl"
MTTL = "ext:per-message-ttl"
EXPIRY = "ext:queue-expiry"
DLX = "ext:dead-lettering"
MAXLEN = "ext:max-length"
PRIORITY = "ext:priority-queues"
SAC = "ext:single-active-consumer"
CPRIO = "ext:consumer-priorities"
REPLY_TO = "ext:direct-reply-to"
NACK = "ext:broker-nack"
CANCEL = "ext:consumer-cancel-notify"
ARGS = "ext:argument-validation"
DEFAULT_REFUSED = h.channel_closed(
    403, "ACCESS_REFUSED - operation not permitted on the default exchange"
)


def _queue(ch, name, **arguments):
    ch.queue_declare(name, exclusive=True, arguments=arguments or None)
    return name


# -- exchange-to-exchange bindings --------------------------------------------------------


@h.pika_scenario("exchange.bind", "exchange.bind-ok", "exchange.unbind", "exchange.unbind-ok", E2E)
def e2e_bind_routes_and_unbind_stops(ch, p):
    ch.exchange_declare(p + "-src", "topic", auto_delete=True)
    ch.exchange_declare(p + "-dst", "fanout", auto_delete=True)
    queue = _queue(ch, p)
    ch.queue_bind(queue, p + "-dst")
    bound = ch.exchange_bind(p + "-dst", p + "-src", "a.*")
    h.publish_all(ch, p + "-src", "a.b", [b"routed"])
    ch.basic_publish(p + "-src", "b.b", b"not routed")
    unbound = ch.exchange_unbind(p + "-dst", p + "-src", "a.*")
    ch.basic_publish(p + "-src", "a.b", b"after unbind")
    h.sync(ch)
    return {"bind": bound, "unbind": unbound, "got": h.bodies(ch, queue)}


@h.pika_scenario("exchange.bind", E2E)
def e2e_cycle_delivers_once(ch, p):
    ch.exchange_declare(p + "-a", "fanout", auto_delete=True)
    ch.exchange_declare(p + "-b", "fanout", auto_delete=True)
    ch.exchange_bind(p + "-b", p + "-a")
    ch.exchange_bind(p + "-a", p + "-b")
    queue = _queue(ch, p)
    ch.queue_bind(queue, p + "-a")
    ch.queue_bind(queue, p + "-b")
    ch.basic_publish(p + "-a", "", b"once")
    h.sync(ch)
    return h.bodies(ch, queue)


E2E_ERRORS = {
    "missing_source": (
        lambda p: (p, p + "-missing"),
        {"channel_closed": [404, lambda t: "-missing'" in t]},
    ),
    "missing_destination": (
        lambda p: (p + "-missing", p),
        {"channel_closed": [404, lambda t: "-missing'" in t]},
    ),
    "default_source": (lambda p: (p, ""), DEFAULT_REFUSED),
    "default_destination": (lambda p: ("", p), DEFAULT_REFUSED),
}
for _name, (_names, _expect) in E2E_ERRORS.items():
    h.pika_scenario("exchange.bind", E2E, name=f"e2e_bind_{_name}", expect=_expect)(
        lambda ch, p, n=_names: (
            ch.exchange_declare(p, "direct", auto_delete=True),
            ch.exchange_bind(*n(p), "k"),
        )[1]
    )


@h.pika_scenario("exchange.unbind", E2E, expect={"ok": [{"method": "Exchange.UnbindOk"}] * 2})
def e2e_unbind_missing(ch, p):
    return [
        ch.exchange_unbind(p + "-a", "amq.direct", "k"),
        ch.exchange_unbind(p + "-a", p + "-b", "k"),
    ]


@h.pika_scenario("exchange.delete", "exchange.bind", E2E)
def e2e_delete_if_unused_counts_source_bindings_only(ch, p):
    ch.exchange_declare(p + "-src", "direct", auto_delete=False)
    ch.exchange_declare(p + "-dst", "direct", auto_delete=False)
    ch.exchange_bind(p + "-dst", p + "-src", "k")
    destination = h.outcome(ch.exchange_delete, p + "-dst", if_unused=True)
    source = h.outcome(ch.exchange_delete, p + "-src", if_unused=True)
    cleanup = ch.connection.channel()
    cleanup.exchange_delete(p + "-src")
    return {"destination": destination, "source": source}


# -- alternate exchange -------------------------------------------------------------------


def _with_ae(ch, p, ae_exists=True):
    if ae_exists:
        ch.exchange_declare(p + "-ae", "fanout", auto_delete=True)
    ch.exchange_declare(p, "direct", auto_delete=True, arguments={"alternate-exchange": p + "-ae"})
    routed, unrouted = _queue(ch, p + "-routed"), _queue(ch, p + "-unrouted")
    ch.queue_bind(routed, p, "known")
    if ae_exists:
        ch.queue_bind(unrouted, p + "-ae")
    return routed, unrouted


@h.pika_scenario("basic.publish", "basic.return", AE)
def alternate_exchange_takes_unroutable(ch, p):
    routed, unrouted = _with_ae(ch, p)
    returned = []
    ch.add_on_return_callback(lambda *a: returned.append(h.delivery(*a[1:])))
    ch.basic_publish(p, "known", b"routed", mandatory=True)
    ch.basic_publish(p, "unknown", b"to ae", mandatory=True)
    h.sync(ch)
    ch.connection.process_data_events(time_limit=0.1)
    return {
        "routed": h.get_all(ch, routed),
        "unrouted": h.get_all(ch, unrouted),
        "returned": returned,
    }


@h.pika_scenario("basic.publish", "basic.return", AE)
def alternate_exchange_missing_returns(ch, p):
    _routed, unrouted = _with_ae(ch, p, ae_exists=False)
    returned = []
    ch.add_on_return_callback(lambda *a: returned.append(h.delivery(*a[1:])))
    ch.basic_publish(p, "unknown", b"lost", mandatory=True)
    h.sync(ch)
    ch.connection.process_data_events(time_limit=0.1)
    return {"returned": returned}


# -- CC / BCC -----------------------------------------------------------------------------


@h.pika_scenario("basic.publish", CC)
def cc_and_bcc_route_to_more_keys(ch, p):
    queues = [_queue(ch, f"{p}-{i}") for i in range(4)]
    for queue in queues:
        ch.queue_bind(queue, "amq.direct", queue)
    headers = {"CC": [queues[1]], "BCC": [queues[2]]}
    ch.basic_publish("amq.direct", queues[0], b"copied", pika.BasicProperties(headers=headers))
    h.sync(ch)
    return [h.get_all(ch, q) for q in queues]


@h.pika_scenario("basic.publish", CC)
def cc_single_string_value(ch, p):
    queue = _queue(ch, p)
    ch.basic_publish("", "nowhere", b"cc", pika.BasicProperties(headers={"CC": queue}))
    h.sync(ch)
    return h.get_all(ch, queue)


# -- TTL and expiry -----------------------------------------------------------------------


def _gone(ch, queue, expected_left: int):
    h.sync(ch)  # the publishes are in before counting
    return h.poll(
        lambda: ch.queue_declare(queue, passive=True).method.message_count == expected_left
    )


@h.pika_scenario("queue.declare", "basic.get", QTTL)
def per_queue_ttl_expires_messages(ch, p):
    queue = _queue(ch, p, **{"x-message-ttl": 100})
    ch.basic_publish("", queue, b"short-lived")
    expired = _gone(ch, queue, 0)
    return {"expired": expired, "left": h.get_all(ch, queue)}


@h.pika_scenario("queue.declare", "basic.get", QTTL)
def per_queue_ttl_zero_without_consumer(ch, p):
    queue = _queue(ch, p, **{"x-message-ttl": 0})
    ch.basic_publish("", queue, b"now or never")
    h.sync(ch)
    return h.get_all(ch, queue)


@h.pika_scenario("basic.publish", "basic.get", MTTL)
def per_message_ttl_expires(ch, p):
    queue = _queue(ch, p)
    ch.basic_publish("", queue, b"short", pika.BasicProperties(expiration="100"))
    ch.basic_publish("", queue, b"long", pika.BasicProperties(expiration="600000"))
    expired = _gone(ch, queue, 1)
    return {"expired": expired, "left": h.get_all(ch, queue)}


@h.pika_scenario("basic.publish", "basic.get", MTTL)
def per_message_ttl_lower_of_queue_and_message(ch, p):
    queue = _queue(ch, p, **{"x-message-ttl": 600000})
    ch.basic_publish("", queue, b"short", pika.BasicProperties(expiration="50"))
    return {"expired": _gone(ch, queue, 0)}


@h.pika_scenario(
    "basic.publish", MTTL, expect={"channel_closed": [406, lambda t: "expiration" in t]}
)
def per_message_ttl_invalid(ch, p):
    queue = _queue(ch, p)
    ch.basic_publish("", queue, b"bad", pika.BasicProperties(expiration="soon"))
    return h.sync(ch)


@h.scenario("queue.declare", EXPIRY)
def queue_expires_when_unused(url, prefix):
    with h.pika_channel(url) as (_connection, channel):
        channel.queue_declare(prefix, arguments={"x-expires": 200})
        first = h.outcome(channel.queue_declare, prefix, passive=True)

    def gone():
        with h.pika_channel(url) as (_connection, probe):
            return "no queue" in str(h.outcome(probe.queue_declare, prefix, passive=True))

    # A passive declare renews the lease (on both brokers): probes further apart than
    # x-expires leave the queue time to expire between them, however fast they are made.
    return {"first": first, "gone": h.poll(gone, interval=0.5)}


# -- dead-lettering -----------------------------------------------------------------------


def _dlx(ch, p, **arguments):
    ch.exchange_declare(p + "-dlx", "fanout", auto_delete=True)
    dead = _queue(ch, p + "-dead")
    ch.queue_bind(dead, p + "-dlx")
    source = _queue(ch, p, **{"x-dead-letter-exchange": p + "-dlx", **arguments})
    return source, dead


def _dead(ch, dead, count=1):
    h.poll(lambda: ch.queue_declare(dead, passive=True).method.message_count >= count)
    return h.get_all(ch, dead)


@h.pika_scenario("basic.reject", "basic.nack", DLX)
def dead_letter_on_reject_and_nack(ch, p):
    source, dead = _dlx(ch, p)
    h.publish_all(
        ch,
        "",
        source,
        [b"rejected", b"nacked"],
        properties=pika.BasicProperties(headers={"keep": 1}),
    )
    ch.basic_reject(ch.basic_get(source)[0].delivery_tag, requeue=False)
    ch.basic_nack(ch.basic_get(source)[0].delivery_tag, requeue=False)
    return _dead(ch, dead, 2)


@h.pika_scenario("basic.reject", DLX)
def dead_letter_routing_key_override(ch, p):
    ch.exchange_declare(p + "-dlx", "direct", auto_delete=True)
    dead = _queue(ch, p + "-dead")
    ch.queue_bind(dead, p + "-dlx", "dead-key")
    source = _queue(
        ch, p, **{"x-dead-letter-exchange": p + "-dlx", "x-dead-letter-routing-key": "dead-key"}
    )
    ch.basic_publish("", source, b"x")
    ch.basic_reject(ch.basic_get(source)[0].delivery_tag, requeue=False)
    return _dead(ch, dead)


@h.pika_scenario("basic.reject", DLX, CC)
def dead_letter_keeps_cc_and_bcc_routes(ch, p):
    """The dead-lettered copy is routed with the original key, CC and BCC keys."""
    ch.exchange_declare(p + "-dlx", "direct", auto_delete=True)
    targets = [_queue(ch, f"{p}-dead-{name}") for name in ("a", "b", "c")]
    for name, target in zip(("a", "b", "c"), targets, strict=True):
        ch.queue_bind(target, p + "-dlx", f"{p}-{name}")
    source = _queue(ch, p + "-a", **{"x-dead-letter-exchange": p + "-dlx"})
    headers = {"CC": [p + "-b"], "BCC": [p + "-c"]}
    ch.basic_publish("", source, b"x", pika.BasicProperties(headers=headers))
    ch.basic_reject(ch.basic_get(source)[0].delivery_tag, requeue=False)
    h.sync(ch)
    return [_dead(ch, target) for target in targets]


@h.pika_scenario("basic.publish", DLX, QTTL)
def dead_letter_on_expiry(ch, p):
    source, dead = _dlx(ch, p, **{"x-message-ttl": 50})
    ch.basic_publish("", source, b"expired")
    return _dead(ch, dead)


@h.pika_scenario("basic.publish", DLX, MAXLEN)
def dead_letter_on_max_length(ch, p):
    source, dead = _dlx(ch, p, **{"x-max-length": 1})
    h.publish_all(ch, "", source, [b"first", b"second"])
    return {"dead": _dead(ch, dead), "left": h.bodies(ch, source)}


@h.pika_scenario("basic.reject", DLX)
def dead_letter_twice_counts_deaths(ch, p):
    source, dead = _dlx(ch, p)
    ch.basic_publish("", source, b"again")
    ch.basic_reject(ch.basic_get(source)[0].delivery_tag, requeue=False)
    first = _dead(ch, dead)
    ch.basic_publish(
        "", source, b"again", pika.BasicProperties(headers=first[0]["properties"]["headers"])
    )
    ch.basic_reject(ch.basic_get(source)[0].delivery_tag, requeue=False)
    return _dead(ch, dead)


@h.pika_scenario("basic.reject", DLX)
def dead_letter_to_missing_exchange_drops(ch, p):
    source = _queue(ch, p, **{"x-dead-letter-exchange": p + "-missing"})
    ch.basic_publish("", source, b"x")
    ch.basic_reject(ch.basic_get(source)[0].delivery_tag, requeue=False)
    h.sync(ch)
    return h.get_all(ch, source)


# -- length limits ------------------------------------------------------------------------


@h.pika_scenario("queue.declare", MAXLEN)
def max_length_drops_head(ch, p):
    queue = _queue(ch, p, **{"x-max-length": 2})
    h.publish_all(ch, "", queue, [b"1", b"2", b"3", b"4"])
    return {"count": h.ready_count(ch, queue, 2), "left": h.bodies(ch, queue)}


@h.pika_scenario("queue.declare", MAXLEN)
def max_length_bytes_drops_head(ch, p):
    queue = _queue(ch, p, **{"x-max-length-bytes": 10})
    h.publish_all(ch, "", queue, [b"12345", b"67890", b"abcde"])
    return h.bodies(ch, queue)


for _name, _overflow in (
    ("reject_publish", "reject-publish"),
    ("reject_publish_dlx", "reject-publish-dlx"),
):
    h.scenario("basic.nack", "confirm.select", MAXLEN, NACK, name=f"max_length_{_name}")(
        lambda url, prefix, o=_overflow: _overflow_nacks(url, prefix, o)
    )


def _overflow_nacks(url, prefix, overflow):
    with h.pika_channel(url) as (_connection, channel):
        arguments = {"x-max-length": 1, "x-overflow": overflow}
        channel.queue_declare(prefix, auto_delete=True, arguments=arguments)
        with h.raw(url) as session:
            session.call(commands.Confirm.Select())
            for index in range(3):
                session.publish(1, "", prefix, b"%d" % index)
            confirms = read_confirms(session, 3)
        seen = {"confirms": confirms, "left": h.bodies(channel, prefix)}
        channel.queue_delete(prefix)
        return seen


# -- priorities -----------------------------------------------------------------------------


@h.pika_scenario("basic.publish", PRIORITY)
def priority_queue_orders_by_priority(ch, p):
    queue = _queue(ch, p, **{"x-max-priority": 5})
    for body, priority in ((b"low", 1), (b"none", None), (b"high", 5), (b"over", 9), (b"mid", 3)):
        ch.basic_publish("", queue, body, pika.BasicProperties(priority=priority))
    h.sync(ch)
    return h.bodies(ch, queue)


@h.scenario("basic.consume", SAC)
def single_active_consumer(url, prefix):
    with h.pika_channel(url) as (connection, channel):
        channel.queue_declare(prefix, exclusive=True, arguments={"x-single-active-consumer": True})
        collector = h.Collector(connection)
        channel.basic_consume(prefix, collector.callback("a"), consumer_tag="a", auto_ack=True)
        channel.basic_consume(prefix, collector.callback("b"), consumer_tag="b", auto_ack=True)
        h.publish_all(channel, "", prefix, [b"1", b"2", b"3"])
        collector.wait(3)
        channel.basic_cancel("a")
        channel.basic_publish("", prefix, b"4")
        collector.wait(4)
        return [(m["consumer"], m["body"]) for m in collector.seen]


@h.scenario("basic.consume", CPRIO)
def consumer_priorities(url, prefix):
    with h.pika_channel(url) as (connection, channel):
        channel.queue_declare(prefix, exclusive=True)
        collector = h.Collector(connection)
        channel.basic_consume(prefix, collector.callback("low"), consumer_tag="low", auto_ack=True)
        channel.basic_consume(
            prefix,
            collector.callback("high"),
            consumer_tag="high",
            auto_ack=True,
            arguments={"x-priority": 10},
        )
        h.publish_all(channel, "", prefix, [b"1", b"2", b"3"])
        return [(m["consumer"], m["body"]) for m in collector.wait(3)]


# -- direct reply-to, cancel notification ---------------------------------------------------


@h.scenario("basic.consume", "basic.publish", REPLY_TO)
def direct_reply_to(url, prefix):
    with h.pika_channel(url) as (connection, channel):
        collector = h.Collector(connection)
        channel.basic_consume("amq.rabbitmq.reply-to", collector.callback(), auto_ack=True)
        channel.basic_publish(
            "", prefix + "-none", b"ask", pika.BasicProperties(reply_to="amq.rabbitmq.reply-to")
        )
        server = connection.channel()
        server.queue_declare(prefix, exclusive=True)
        channel.basic_publish(
            "", prefix, b"request", pika.BasicProperties(reply_to="amq.rabbitmq.reply-to")
        )
        h.sync(channel)
        method, properties, _body = server.basic_get(prefix, auto_ack=True)
        reply_to = properties.reply_to
        server.basic_publish("", reply_to, b"reply")
        return {
            "reply_to_prefix": reply_to.startswith("amq.rabbitmq.reply-to."),
            "replies": collector.wait(1),
        }


@h.pika_scenario(
    "basic.publish", REPLY_TO, expect={"channel_closed": [406, lambda t: "reply" in t]}
)
def direct_reply_to_without_consumer(ch, p):
    ch.basic_publish("", p, b"ask", pika.BasicProperties(reply_to="amq.rabbitmq.reply-to"))
    return h.sync(ch)


@h.scenario("basic.cancel", "queue.delete", CANCEL)
def consumer_cancelled_when_queue_deleted(url, prefix):
    with h.raw(url) as session:
        session.open_channel(2)
        session.call(commands.Queue.Declare(queue=prefix))
        session.call(commands.Basic.Consume(queue=prefix, consumer_tag="c"))
        first = session.call(commands.Queue.Delete(queue=prefix), channel=2)
        # RabbitMQ sends delete-ok and the consumer's basic.cancel from two processes:
        # their order varies there, so only what arrives is compared.
        return {"frames": sorted([first, session.next()], key=lambda frame: frame["method"])}


# -- argument validation ------------------------------------------------------------------

INVALID_ARGUMENTS = {
    "message_ttl_negative": {"x-message-ttl": -1},
    "message_ttl_string": {"x-message-ttl": "abc"},
    "max_length_negative": {"x-max-length": -1},
    "queue_type_unknown": {"x-queue-type": "foo"},
    "overflow_unknown": {"x-overflow": "foo"},
    "expires_zero": {"x-expires": 0},
    "max_priority_too_high": {"x-max-priority": 300},
    "dead_letter_exchange_number": {"x-dead-letter-exchange": 5},
    "single_active_consumer_string": {"x-single-active-consumer": "yes"},
}
for _name, _arguments in INVALID_ARGUMENTS.items():
    h.pika_scenario(
        "queue.declare",
        ARGS,
        name=f"queue_argument_{_name}",
        expect={"channel_closed": [406, lambda t: "invalid" in t]},
    )(lambda ch, p, a=_arguments: ch.queue_declare(p, exclusive=True, arguments=a))

h.pika_scenario(
    "queue.declare",
    ARGS,
    name="quorum_queue_not_durable",
    expect={"channel_closed": [406, lambda t: "non-durable" in t]},
)(lambda ch, p: ch.queue_declare(p, arguments={"x-queue-type": "quorum"}))
h.pika_scenario(
    "basic.consume",
    ARGS,
    CPRIO,
    name="consumer_priority_invalid",
    expect={"channel_closed": [406, lambda t: "x-priority" in t]},
)(
    lambda ch, p: (
        _queue(ch, p),
        ch.basic_consume(p, lambda *a: None, arguments={"x-priority": "high"}),
    )[1]
)
