"""RabbitMQ's queue-side extensions, through real clients: argument validation, message
TTL, queue expiry, dead-lettering, length limits (and the broker's basic.nack), priority
queues, single active consumer, consumer priorities and the consumer timeout.

Expected texts and headers are what RabbitMQ 3.10.8 answered to the same requests.
Time-based tests use short TTLs and poll with generous deadlines; none measures speed.
"""

from __future__ import annotations

import datetime
import time

import pika
import pytest
from amqp_raw import RawClient
from conftest import start_broker
from pamqp import commands
from pika.exceptions import ChannelClosedByBroker

DEADLINE = 10.0


def poll(predicate, deadline: float = DEADLINE):
    end = time.monotonic() + deadline
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < end, "condition not met in time"
        time.sleep(0.02)


def ready(ch, queue: str) -> int:
    return ch.queue_declare(queue, passive=True).method.message_count


def get_all(ch, queue: str) -> list:
    got = []
    while True:
        method, props, body = ch.basic_get(queue, auto_ack=True)
        if method is None:
            return got
        got.append((body, props))


def bodies(ch, queue: str) -> list[bytes]:
    return [body for body, _props in get_all(ch, queue)]


def closed(conn, call) -> tuple[int, str]:
    with pytest.raises(ChannelClosedByBroker) as info:
        call(conn.channel())
    return info.value.reply_code, info.value.reply_text


# -- argument validation ------------------------------------------------------------------

Q = "PRECONDITION_FAILED - invalid arg '{arg}' for queue '{name}' in vhost '/': "
INVALID_QUEUE_ARGUMENTS = [
    ({"x-message-ttl": -1}, Q + "{{value_negative,-1}}", "x-message-ttl"),
    ({"x-message-ttl": "abc"}, Q + '"expected integer, got longstr"', "x-message-ttl"),
    ({"x-message-ttl": True}, Q + '"expected integer, got bool"', "x-message-ttl"),
    ({"x-message-ttl": None}, Q + '"expected integer, got void"', "x-message-ttl"),
    (
        {"x-message-ttl": 315360000001},
        Q + "{{value_too_large,315360000001}}",
        "x-message-ttl",
    ),
    ({"x-expires": 0}, Q + "{{value_zero,0}}", "x-expires"),
    ({"x-expires": -5}, Q + "{{value_negative,-5}}", "x-expires"),
    ({"x-max-length": -1}, Q + "{{value_negative,-1}}", "x-max-length"),
    ({"x-max-length-bytes": "x"}, Q + '"expected integer, got longstr"', "x-max-length-bytes"),
    ({"x-overflow": "foo"}, Q + "invalid_overflow", "x-overflow"),
    ({"x-overflow": 1}, Q + "{{unacceptable_type,signedint}}", "x-overflow"),
    ({"x-max-priority": 300}, Q + "{{max_value_exceeded,300}}", "x-max-priority"),
    ({"x-max-priority": -1}, Q + "{{value_negative,-1}}", "x-max-priority"),
    (
        {"x-single-active-consumer": "yes"},
        Q + "{{unacceptable_type,longstr}}",
        "x-single-active-consumer",
    ),
    ({"x-queue-type": "foo"}, Q + "\"unsupported queue type 'foo'\"", "x-queue-type"),
    ({"x-queue-type": 5}, Q + "{{unacceptable_type,signedint}}", "x-queue-type"),
    ({"x-queue-mode": "foo"}, Q + "\"unsupported queue mode 'foo'\"", "x-queue-mode"),
    (
        {"x-dead-letter-routing-key": "k"},
        Q + "routing_key_but_no_dlx_defined",
        "x-dead-letter-routing-key",
    ),
    (
        {"x-dead-letter-exchange": "amq.direct", "x-dead-letter-routing-key": True},
        Q + "{{unacceptable_type,bool}}",
        "x-dead-letter-routing-key",
    ),
    (
        {"x-dead-letter-exchange": 5, "x-expires": 0},
        "PRECONDITION_FAILED - invalid type 'signedint' for arg 'x-dead-letter-exchange' in "
        "queue '{name}' in vhost '/'",
        "",
    ),
    # RabbitMQ's order: x-expires is checked before x-message-ttl, whatever the table's
    ({"x-message-ttl": -1, "x-expires": 0}, Q + "{{value_zero,0}}", "x-expires"),
    (
        {"x-delivery-limit": 3},
        "PRECONDITION_FAILED - invalid arg 'x-delivery-limit' for queue '{name}' in vhost "
        "'/' of queue type rabbit_classic_queue",
        "",
    ),
]


@pytest.mark.parametrize(("arguments", "text", "arg"), INVALID_QUEUE_ARGUMENTS)
def test_invalid_queue_argument(conn, name, arguments, text, arg):
    code, reply = closed(conn, lambda c: c.queue_declare(name, arguments=arguments))
    assert (code, reply) == (406, text.format(arg=arg, name=name))


@pytest.mark.parametrize(
    ("arguments", "flags", "prop"),
    [
        ({"x-queue-type": "quorum"}, {}, "non-durable"),
        ({"x-queue-type": "quorum"}, {"durable": True, "exclusive": True}, "exclusive-owner"),
        ({"x-queue-type": "stream"}, {"durable": True, "auto_delete": True}, "auto-delete"),
    ],
)
def test_quorum_and_stream_properties_checked_as_rabbitmq(conn, name, arguments, flags, prop):
    code, reply = closed(conn, lambda c: c.queue_declare(name, arguments=arguments, **flags))
    assert (code, reply) == (
        406,
        f"PRECONDITION_FAILED - invalid property '{prop}' for queue '{name}' in vhost '/'",
    )


def test_quorum_queue_refused_as_unsupported(conn, name):
    # Only classic queues here: a valid quorum declaration gets RabbitMQ's answer for a
    # queue type it does not know.
    code, reply = closed(
        conn, lambda c: c.queue_declare(name, durable=True, arguments={"x-queue-type": "quorum"})
    )
    assert (code, reply) == (
        406,
        Q.format(arg="x-queue-type", name=name) + "\"unsupported queue type 'quorum'\"",
    )


def test_valid_arguments_accepted(ch, name):
    arguments = {
        "x-message-ttl": 0,
        "x-expires": 60000,
        "x-max-length": 0,
        "x-max-length-bytes": 0,
        "x-overflow": "reject-publish-dlx",
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "k",
        "x-max-priority": 255,
        "x-single-active-consumer": False,
        "x-queue-type": "classic",
        "x-queue-mode": "lazy",
        "x-consumer-timeout": "ignored by 3.10",
    }
    assert ch.queue_declare(name, exclusive=True, arguments=arguments).method.queue == name


def test_existing_queue_redeclared_without_validation(ch, name):
    # As RabbitMQ: only equivalence is checked for a queue that exists.
    ch.queue_declare(name, exclusive=True, arguments={"x-foo": 1})
    ch.queue_declare(name, exclusive=True, arguments={"x-foo": 2})


@pytest.mark.parametrize(
    ("expiration", "detail"),
    [
        ("abc", "no_integer"),
        ("", "no_integer"),
        ("-1", "{value_negative,-1}"),
        ("1.5", '{leftover_string,".5"}'),
        ("5 ", '{leftover_string," "}'),
        ("315360000001", "{value_too_large,315360000001}"),
        # Erlang's ~p breaks a term that passes column 80
        ("99999999999999999999", "{value_too_large,\n" + " " * 44 + "99999999999999999999}"),
    ],
)
def test_invalid_expiration_property(conn, name, expiration, detail):
    def publish(channel):
        channel.confirm_delivery()
        channel.basic_publish(
            "amq.direct", "nowhere", b"x", pika.BasicProperties(expiration=expiration)
        )

    assert closed(conn, publish) == (
        406,
        f"PRECONDITION_FAILED - invalid expiration '{expiration}': {detail}",
    )


@pytest.mark.parametrize("expiration", ["+5", "00012", "0"])
def test_expirations_erlang_reads_as_integers(ch, name, expiration):
    ch.confirm_delivery()
    ch.basic_publish("amq.direct", "nowhere", b"x", pika.BasicProperties(expiration=expiration))


@pytest.mark.parametrize(
    ("arguments", "detail"),
    [
        (
            {"x-priority": "high"},
            "x-priority' for queue '{name}' in vhost '/': \"expected integer, got longstr\"",
        ),
        (
            {"x-priority": True},
            "x-priority' for queue '{name}' in vhost '/': \"expected integer, got bool\"",
        ),
        (
            {"x-cancel-on-ha-failover": "x"},
            "x-cancel-on-ha-failover' for queue '{name}' in "
            "vhost '/': {{unacceptable_type,longstr}}",
        ),
    ],
)
def test_invalid_consumer_arguments(conn, name, arguments, detail):
    conn.channel().queue_declare(name, auto_delete=True)

    def consume(channel):
        channel.basic_consume(name, lambda *a: None, arguments=arguments)

    assert closed(conn, consume) == (
        406,
        "PRECONDITION_FAILED - invalid arg '" + detail.format(name=name),
    )
    conn.channel().queue_delete(name)


# -- message TTL --------------------------------------------------------------------------


def test_queue_ttl_expires_messages(ch, name):
    ch.queue_declare(name, exclusive=True, arguments={"x-message-ttl": 50})
    ch.basic_publish("", name, b"short-lived")
    poll(lambda: ready(ch, name) == 0)
    assert bodies(ch, name) == []


def test_queue_ttl_zero_without_consumer_is_never_delivered(ch, name):
    ch.queue_declare(name, exclusive=True, arguments={"x-message-ttl": 0})
    ch.confirm_delivery()
    ch.basic_publish("", name, b"now or never")
    assert ch.basic_get(name)[0] is None


def test_lower_of_queue_and_message_ttl_wins(ch, name):
    ch.queue_declare(name, exclusive=True, arguments={"x-message-ttl": 50})
    ch.queue_declare(name + "-2", exclusive=True, arguments={"x-message-ttl": 600000})
    ch.confirm_delivery()
    ch.basic_publish("", name, b"queue wins", pika.BasicProperties(expiration="600000"))
    ch.basic_publish("", name + "-2", b"message wins", pika.BasicProperties(expiration="50"))
    poll(lambda: ready(ch, name) == 0 and ready(ch, name + "-2") == 0)


def test_message_ttl_expires_from_the_head(ch, name):
    # As RabbitMQ: a short-lived message behind a long-lived one waits for it to leave,
    # and is then expired rather than delivered.
    ch.queue_declare(name, exclusive=True)
    ch.confirm_delivery()
    ch.basic_publish("", name, b"long", pika.BasicProperties(expiration="600000"))
    ch.basic_publish("", name, b"short", pika.BasicProperties(expiration="30"))
    time.sleep(0.2)
    assert ready(ch, name) == 2
    assert ch.basic_get(name, auto_ack=True)[2] == b"long"
    assert ch.basic_get(name)[0] is None


def test_expired_message_keeps_original_properties_until_then(ch, name):
    ch.queue_declare(name, exclusive=True)
    ch.confirm_delivery()
    ch.basic_publish("", name, b"m", pika.BasicProperties(expiration="60000"))
    _method, props, _body = ch.basic_get(name, auto_ack=True)
    assert props.expiration == "60000"


def test_requeued_message_keeps_its_expiry(ch, name):
    ch.queue_declare(name, exclusive=True, arguments={"x-message-ttl": 300})
    ch.confirm_delivery()
    ch.basic_publish("", name, b"t")
    method, _props, _body = ch.basic_get(name)
    time.sleep(0.5)
    ch.basic_nack(method.delivery_tag, requeue=True)
    assert ch.basic_get(name)[0] is None
    assert ready(ch, name) == 0


def test_expired_message_not_delivered_to_a_consumer(conn, ch, name):
    ch.queue_declare(name, exclusive=True, arguments={"x-message-ttl": 30})
    ch.confirm_delivery()
    ch.basic_publish("", name, b"expires")
    time.sleep(0.2)
    got = []
    ch.basic_consume(name, lambda c, m, p, b: got.append(b), auto_ack=True)
    ch.basic_publish("", name, b"fresh", pika.BasicProperties(expiration="600000"))
    poll(lambda: conn.process_data_events(time_limit=0.05) or got)
    assert got == [b"fresh"]


# -- queue expiry -------------------------------------------------------------------------


def test_unused_queue_expires_and_passive_declare_renews_it(conn, name):
    channel = conn.channel()
    channel.queue_declare(name, arguments={"x-expires": 300})
    for _ in range(6):  # declared again every 100 ms: kept
        time.sleep(0.1)
        channel.queue_declare(name, passive=True)

    def gone():
        time.sleep(0.4)  # longer than the lease: each look renews it
        try:
            conn.channel().queue_declare(name, passive=True)
        except ChannelClosedByBroker as error:
            return error.reply_code == 404
        return False

    poll(gone)


def test_queue_with_consumer_does_not_expire(conn, ch, name):
    ch.queue_declare(name, arguments={"x-expires": 100})
    ch.basic_consume(name, lambda *a: None)
    conn.process_data_events(time_limit=0.4)
    assert ch.queue_declare(name, passive=True).method.consumer_count == 1
    ch.queue_delete(name)


def test_publishing_does_not_keep_a_queue_alive(ch, name):
    # (a passive declare would renew the lease: a mandatory publish tells instead)
    ch.queue_declare(name, arguments={"x-expires": 150})
    ch.confirm_delivery()
    end = time.monotonic() + DEADLINE
    while True:
        try:
            ch.basic_publish("", name, b"x", mandatory=True)
        except pika.exceptions.UnroutableError:
            return
        assert time.monotonic() < end, "queue did not expire"
        time.sleep(0.03)


# -- dead-lettering -----------------------------------------------------------------------


def _dead_letter_setup(ch, name, **arguments):
    ch.exchange_declare(name + "-dlx", "fanout", auto_delete=True)
    ch.queue_declare(name + "-dead", exclusive=True)
    ch.queue_bind(name + "-dead", name + "-dlx")
    ch.queue_declare(
        name, exclusive=True, arguments={"x-dead-letter-exchange": name + "-dlx", **arguments}
    )
    ch.confirm_delivery()
    return name + "-dead"


def _dead(ch, dead, count=1):
    poll(lambda: ready(ch, dead) >= count)
    return ch.basic_get(dead, auto_ack=True)


def test_rejected_message_is_dead_lettered_with_x_death(ch, name):
    dead = _dead_letter_setup(ch, name)
    ch.queue_bind(name, "amq.direct", "rk1")
    props = pika.BasicProperties(
        headers={"keep": 1, "CC": ["cc1"]},
        expiration="60000",
        delivery_mode=2,
        priority=3,
        timestamp=123,
    )
    ch.basic_publish("amq.direct", "rk1", b"body", props)
    before = int(time.time())
    ch.basic_reject(ch.basic_get(name)[0].delivery_tag, requeue=False)
    method, props, body = _dead(ch, dead)
    assert (method.exchange, method.routing_key, method.redelivered, body) == (
        name + "-dlx",
        "rk1",
        False,
        b"body",
    )
    assert (props.delivery_mode, props.priority, props.timestamp, props.expiration) == (
        2,
        3,
        123,
        None,
    )
    headers = props.headers
    (death,) = headers.pop("x-death")
    stamp = death.pop("time")
    assert isinstance(stamp, datetime.datetime)
    assert before - 1 <= stamp.timestamp() <= time.time() + 1
    assert death == {
        "count": 1,
        "reason": "rejected",
        "queue": name,
        "exchange": "amq.direct",
        "routing-keys": ["rk1", "cc1"],
        "original-expiration": "60000",
    }
    # 3.10 has the x-first-death-* headers, not (yet) x-last-death-*
    assert headers == {
        "keep": 1,
        "CC": ["cc1"],
        "x-first-death-exchange": "amq.direct",
        "x-first-death-queue": name,
        "x-first-death-reason": "rejected",
    }


def test_nack_without_requeue_dead_letters(ch, name):
    dead = _dead_letter_setup(ch, name)
    ch.basic_publish("", name, b"nacked")
    ch.basic_nack(ch.basic_get(name)[0].delivery_tag, requeue=False)
    method, props, body = _dead(ch, dead)
    assert body == b"nacked"
    assert props.headers["x-death"][0]["reason"] == "rejected"
    assert props.headers["x-death"][0]["exchange"] == ""


def test_second_death_in_same_queue_increments_count(ch, name):
    dead = _dead_letter_setup(ch, name)
    ch.basic_publish("", name, b"again")
    ch.basic_reject(ch.basic_get(name)[0].delivery_tag, requeue=False)
    _method, first, _body = _dead(ch, dead)
    other = name + "-other"
    ch.queue_declare(other, exclusive=True, arguments={"x-dead-letter-exchange": name + "-dlx"})
    ch.basic_publish("", other, b"again", pika.BasicProperties(headers=first.headers))
    ch.basic_reject(ch.basic_get(other)[0].delivery_tag, requeue=False)
    _method, second, _body = _dead(ch, dead)
    ch.basic_publish("", name, b"again", pika.BasicProperties(headers=second.headers))
    ch.basic_reject(ch.basic_get(name)[0].delivery_tag, requeue=False)
    _method, third, _body = _dead(ch, dead)
    deaths = third.headers["x-death"]
    assert [(d["queue"], d["count"]) for d in deaths] == [(name, 2), (other, 1)]
    # the updated entry keeps its first time and routing keys
    assert deaths[0]["time"] == first.headers["x-death"][0]["time"]
    assert third.headers["x-first-death-queue"] == name


def test_dead_letter_routing_key_replaces_the_keys_and_drops_cc(ch, name):
    ch.exchange_declare(name + "-dlx", "direct", auto_delete=True)
    ch.queue_declare(name + "-dead", exclusive=True)
    ch.queue_bind(name + "-dead", name + "-dlx", "dead-key")
    ch.queue_declare(name + "-cc", exclusive=True)
    ch.queue_bind(name + "-cc", name + "-dlx", "cc-key")
    arguments = {"x-dead-letter-exchange": name + "-dlx", "x-dead-letter-routing-key": "dead-key"}
    ch.queue_declare(name, exclusive=True, arguments=arguments)
    ch.confirm_delivery()
    ch.basic_publish("", name, b"x", pika.BasicProperties(headers={"CC": ["cc-key"]}))
    ch.basic_reject(ch.basic_get(name)[0].delivery_tag, requeue=False)
    method, props, _body = _dead(ch, name + "-dead")
    assert method.routing_key == "dead-key"
    assert "CC" not in props.headers
    assert props.headers["x-death"][0]["routing-keys"] == [name, "cc-key"]
    assert ready(ch, name + "-cc") == 0


def test_dead_lettered_on_expiry(ch, name):
    dead = _dead_letter_setup(ch, name, **{"x-message-ttl": 20})
    ch.basic_publish("", name, b"expired", pika.BasicProperties(expiration="600000"))
    _method, props, body = _dead(ch, dead)
    death = props.headers["x-death"][0]
    assert (body, death["reason"], death["queue"], death["original-expiration"]) == (
        b"expired",
        "expired",
        name,
        "600000",
    )


def test_dead_lettered_on_max_length_drop_head(ch, name):
    dead = _dead_letter_setup(ch, name, **{"x-max-length": 1})
    ch.basic_publish("", name, b"first")
    ch.basic_publish("", name, b"second")
    _method, props, body = _dead(ch, dead)
    assert (body, props.headers["x-death"][0]["reason"]) == (b"first", "maxlen")
    assert props.headers.get("x-death")[0].get("original-expiration") is None
    assert bodies(ch, name) == [b"second"]


def test_dead_letter_exchange_missing_drops(ch, name):
    ch.queue_declare(name, exclusive=True, arguments={"x-dead-letter-exchange": name + "-no"})
    ch.confirm_delivery()
    ch.basic_publish("", name, b"x")
    ch.basic_reject(ch.basic_get(name)[0].delivery_tag, requeue=False)
    assert ready(ch, name) == 0


def test_automatic_dead_letter_cycle_is_dropped(ch, name):
    # expired back into the same queue through the default exchange: a cycle without
    # a rejection, dropped as RabbitMQ does
    arguments = {
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": name,
        "x-message-ttl": 20,
    }
    ch.queue_declare(name, exclusive=True, arguments=arguments)
    ch.confirm_delivery()
    ch.basic_publish("", name, b"loop")
    poll(lambda: ready(ch, name) == 0)
    time.sleep(0.1)
    assert ready(ch, name) == 0


def test_rejection_cycle_is_not_dropped(ch, name):
    arguments = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": name}
    ch.queue_declare(name, exclusive=True, arguments=arguments)
    ch.confirm_delivery()
    ch.basic_publish("", name, b"back")
    ch.basic_reject(ch.basic_get(name)[0].delivery_tag, requeue=False)
    method, props, body = ch.basic_get(name)
    assert (body, props.headers["x-death"][0]["count"]) == (b"back", 1)
    ch.basic_reject(method.delivery_tag, requeue=False)
    _method, props, _body = ch.basic_get(name, auto_ack=True)
    assert props.headers["x-death"][0]["count"] == 2


def test_dead_lettered_persistent_message_survives_restart(tmp_path, name):
    process = start_broker("--data-dir", str(tmp_path))
    try:
        params = pika.ConnectionParameters(process.host, process.port)
        connection = pika.BlockingConnection(params)
        channel = connection.channel()
        channel.queue_declare(name + "-dead", durable=True)
        arguments = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": name + "-dead"}
        channel.queue_declare(name, durable=True, arguments=arguments)
        channel.confirm_delivery()
        channel.basic_publish("", name, b"kept", pika.BasicProperties(delivery_mode=2))
        channel.basic_reject(channel.basic_get(name)[0].delivery_tag, requeue=False)
        poll(lambda: ready(channel, name + "-dead") == 1)
        connection.close()
    finally:
        process.stop()
    process = start_broker("--data-dir", str(tmp_path))
    try:
        connection = pika.BlockingConnection(pika.ConnectionParameters(process.host, process.port))
        _method, props, body = connection.channel().basic_get(name + "-dead", auto_ack=True)
        assert (body, props.headers["x-death"][0]["reason"]) == (b"kept", "rejected")
        connection.close()
    finally:
        process.stop()


# -- length limits and broker nacks --------------------------------------------------------


def test_max_length_drops_head(ch, name):
    ch.queue_declare(name, exclusive=True, arguments={"x-max-length": 2})
    ch.confirm_delivery()
    for body in (b"1", b"2", b"3", b"4"):
        ch.basic_publish("", name, body)
    assert ready(ch, name) == 2
    assert bodies(ch, name) == [b"3", b"4"]


def test_max_length_bytes_drops_head(ch, name):
    ch.queue_declare(name, exclusive=True, arguments={"x-max-length-bytes": 10})
    ch.confirm_delivery()
    for body in (b"12345", b"67890", b"abcde"):
        ch.basic_publish("", name, body)
    assert bodies(ch, name) == [b"67890", b"abcde"]


def test_max_length_counts_ready_messages_only(ch, name):
    ch.queue_declare(name, exclusive=True, arguments={"x-max-length": 1})
    ch.confirm_delivery()
    ch.basic_publish("", name, b"unacked")
    ch.basic_get(name)
    ch.basic_publish("", name, b"ready")
    assert ready(ch, name) == 1


def _confirms(broker, publishes) -> list[tuple[str, int, bool]]:
    """Publish with confirms on a raw connection; the confirms in the order they came."""
    with RawClient(broker.host, broker.port) as client:
        client.handshake()
        client.open_channel(1)
        client.send(1, commands.Confirm.Select())
        client.expect(commands.Confirm.SelectOk)
        for exchange, routing_key in publishes:
            client.publish(1, exchange, routing_key, b"m")
        seen: list[tuple[str, int, bool]] = []
        while len(_covered(seen)) < len(publishes):
            _channel, frame = client.recv_frame()
            seen.append((frame.name, frame.delivery_tag, frame.multiple))
        return seen


def _covered(seen) -> dict[int, str]:
    """Publish sequence number -> the confirm that covers it."""
    outcome: dict[int, str] = {}
    for kind, tag, multiple in seen:
        for seq in range(1, tag + 1) if multiple else (tag,):
            outcome.setdefault(seq, kind)
    return outcome


def test_reject_publish_nacks_refused_messages(broker, ch, name):
    ch.queue_declare(name, arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    ch.queue_declare(name + "-free", exclusive=True)
    publishes = [
        ("", name + "-free"),
        ("", name),
        ("", name + "-free"),
        ("", name),
        ("", name),
        ("", name + "-free"),
        ("", name + "-free"),
        ("", "nowhere"),
        ("", name),
    ]
    seen = _confirms(broker, publishes)
    assert seen == [
        ("Basic.Ack", 3, True),
        ("Basic.Nack", 5, True),
        ("Basic.Ack", 8, True),
        ("Basic.Nack", 9, False),
    ]
    assert ready(ch, name) == 1
    ch.queue_delete(name)


def test_message_to_several_queues_nacked_when_one_refuses(broker, ch, name):
    ch.exchange_declare(name, "fanout", auto_delete=True)
    ch.queue_declare(name + "-full", arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    ch.queue_declare(name + "-free", exclusive=True)
    ch.queue_bind(name + "-full", name)
    ch.queue_bind(name + "-free", name)
    seen = _confirms(broker, [(name, "")] * 3)
    assert _covered(seen) == {1: "Basic.Ack", 2: "Basic.Nack", 3: "Basic.Nack"}
    # refused by one queue, still delivered to the others (as RabbitMQ)
    assert ready(ch, name + "-free") == 3
    ch.queue_delete(name + "-full")


def test_reject_publish_dlx_dead_letters_and_nacks(broker, ch, name):
    ch.exchange_declare(name + "-dlx", "fanout", auto_delete=True)
    ch.queue_declare(name + "-dead", exclusive=True)
    ch.queue_bind(name + "-dead", name + "-dlx")
    arguments = {
        "x-max-length": 1,
        "x-overflow": "reject-publish-dlx",
        "x-dead-letter-exchange": name + "-dlx",
    }
    ch.queue_declare(name, arguments=arguments)
    seen = _confirms(broker, [("", name)] * 3)
    assert seen == [("Basic.Ack", 1, False), ("Basic.Nack", 3, True)]
    dead = get_all(ch, name + "-dead")
    assert [props.headers["x-death"][0]["reason"] for _body, props in dead] == ["maxlen"] * 2
    assert ready(ch, name) == 1
    ch.queue_delete(name)


def test_pika_sees_the_broker_nack(ch, name):
    ch.queue_declare(
        name, exclusive=True, arguments={"x-max-length": 0, "x-overflow": "reject-publish"}
    )
    ch.confirm_delivery()
    with pytest.raises(pika.exceptions.NackError):
        ch.basic_publish("", name, b"refused")


# -- priority queues ----------------------------------------------------------------------


def test_priority_queue_orders_by_priority(ch, name):
    ch.queue_declare(name, exclusive=True, arguments={"x-max-priority": 5})
    ch.confirm_delivery()
    for body, priority in ((b"low", 1), (b"none", None), (b"high", 5), (b"over", 9), (b"mid", 3)):
        ch.basic_publish("", name, body, pika.BasicProperties(priority=priority))
    # above the max counts as the max; FIFO within a priority
    assert bodies(ch, name) == [b"high", b"over", b"mid", b"low", b"none"]


def test_priority_queue_requeue_keeps_place(ch, name):
    ch.queue_declare(name, exclusive=True, arguments={"x-max-priority": 3})
    ch.confirm_delivery()
    for body, priority in ((b"a1", 1), (b"b3", 3), (b"c1", 1), (b"d0", None), (b"e3", 3)):
        ch.basic_publish("", name, body, pika.BasicProperties(priority=priority))
    gets = [ch.basic_get(name) for _ in range(3)]
    assert [g[2] for g in gets] == [b"b3", b"e3", b"a1"]
    ch.basic_nack(gets[2][0].delivery_tag, requeue=True)
    ch.basic_nack(gets[0][0].delivery_tag, requeue=True)
    assert bodies(ch, name) == [b"b3", b"a1", b"c1", b"d0"]


# -- consumers ----------------------------------------------------------------------------


def test_single_active_consumer(conn, ch, name):
    ch.queue_declare(name, exclusive=True, arguments={"x-single-active-consumer": True})
    seen = []
    for tag in ("a", "b"):
        ch.basic_consume(
            name,
            lambda c, m, p, b: seen.append((m.consumer_tag, b)),
            consumer_tag=tag,
            auto_ack=True,
        )
    assert ch.queue_declare(name, passive=True).method.consumer_count == 2
    for body in (b"1", b"2", b"3"):
        ch.basic_publish("", name, body)
    poll(lambda: conn.process_data_events(time_limit=0.02) or len(seen) == 3)
    ch.basic_cancel("a")
    ch.basic_publish("", name, b"4")
    poll(lambda: conn.process_data_events(time_limit=0.02) or len(seen) == 4)
    assert seen == [("a", b"1"), ("a", b"2"), ("a", b"3"), ("b", b"4")]


def test_single_active_consumer_blocked_holds_the_others(conn, ch, name):
    ch.queue_declare(name, exclusive=True, arguments={"x-single-active-consumer": True})
    ch.basic_qos(prefetch_count=1)
    seen = []
    for tag in ("a", "b"):
        ch.basic_consume(name, lambda c, m, p, b: seen.append(m.consumer_tag), consumer_tag=tag)
    for body in (b"1", b"2"):
        ch.basic_publish("", name, body)
    conn.process_data_events(time_limit=0.3)
    assert seen == ["a"]
    assert ready(ch, name) == 1


def test_consumer_priorities(conn, ch, name):
    ch.queue_declare(name, exclusive=True)
    ch.basic_qos(prefetch_count=2)
    seen = []
    ch.basic_consume(name, lambda c, m, p, b: seen.append(m.consumer_tag), consumer_tag="low")
    for tag in ("high1", "high2"):
        ch.basic_consume(
            name,
            lambda c, m, p, b: seen.append(m.consumer_tag),
            consumer_tag=tag,
            arguments={"x-priority": 10},
        )
    for index in range(6):
        ch.basic_publish("", name, b"%d" % index)
    poll(lambda: conn.process_data_events(time_limit=0.02) or len(seen) == 6)
    # round-robin among the highest; the lower one only once they are full
    assert seen[:4] == ["high1", "high2", "high1", "high2"]
    assert seen[4:] == ["low", "low"]


# -- consumer timeout ---------------------------------------------------------------------


def test_consumer_timeout_closes_the_channel(name):
    process = start_broker("--in-memory", "--consumer-timeout", "200")
    try:
        with RawClient(process.host, process.port) as client:
            client.handshake()
            client.open_channel(1)
            client.send(1, commands.Queue.Declare(queue=name))
            client.expect(commands.Queue.DeclareOk)
            client.publish(1, "", name, b"held")
            client.send(1, commands.Basic.Consume(queue=name, consumer_tag="c"))
            client.expect(commands.Basic.ConsumeOk)
            client.expect(commands.Basic.Deliver)
            frames = [client.recv_frame()[1] for _ in range(3)]
            close = frames[-1]
            assert isinstance(close, commands.Channel.Close)
            assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == (
                406,
                "PRECONDITION_FAILED - delivery acknowledgement on channel 1 timed out. "
                "Timeout value used: 200 ms. This timeout value can be configured, see "
                "consumers doc guide to learn more",
                0,
                0,
            )
        # the unacked delivery went back to its queue
        params = pika.ConnectionParameters(process.host, process.port)
        connection = pika.BlockingConnection(params)
        method, _props, body = connection.channel().basic_get(name, auto_ack=True)
        assert (body, method.redelivered) == (b"held", True)
        connection.close()
    finally:
        process.stop()


def test_acked_deliveries_do_not_time_out(name):
    process = start_broker("--in-memory", "--consumer-timeout", "200")
    try:
        connection = pika.BlockingConnection(pika.ConnectionParameters(process.host, process.port))
        channel = connection.channel()
        channel.queue_declare(name)
        channel.basic_consume(name, lambda c, m, p, b: c.basic_ack(m.delivery_tag))
        end = time.monotonic() + 0.8
        while time.monotonic() < end:
            channel.basic_publish("", name, b"acked")
            connection.process_data_events(time_limit=0.05)
        assert channel.is_open
        connection.close()
    finally:
        process.stop()
