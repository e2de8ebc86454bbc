"""Every error a pika client can provoke, with RabbitMQ's exact reply code, text, class
id and method id: channel errors close only their channel, connection errors the whole
connection."""

from __future__ import annotations

import pika
import pytest
from pika import spec
from pika.exceptions import (
    ChannelClosedByBroker,
    ConnectionClosedByBroker,
    ProbableAccessDeniedError,
    ProbableAuthenticationError,
)
from test_pika_blocking import connection, consume, exists, new_queue, parameters, publish, pump

LOCKED = (
    "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '{}' in vhost '/'. It "
    "could be originally declared on another connection or the exclusive property value does "
    "not match that of the original declaration."
)
IN_EXCLUSIVE_USE = "ACCESS_REFUSED - queue '{}' in vhost '/' in exclusive use"
DEFAULT_EXCHANGE = "ACCESS_REFUSED - operation not permitted on the default exchange"
NO_PREVIOUS_QUEUE = "NOT_FOUND - no previously declared queue"


def cut(text: str) -> str:
    """A reply text as RabbitMQ sends it: cut to 252 bytes and '...' when over 255."""
    raw = text.encode()
    return text if len(raw) <= 255 else (raw[:252] + b"...").decode()


def capture(callbacks, prefix: int, method_class) -> list:
    """Collect the methods of one kind pika receives (to see class_id and method_id)."""
    seen: list = []
    callbacks.add(prefix, method_class, lambda frame: seen.append(frame.method), one_shot=False)
    return seen


def channel_error(conn, action) -> tuple[int, str, int, int]:
    """Run ``action(channel)`` on a new channel of ``conn``; the broker must close that
    channel, and only it. Returns the channel.close's code, text, class and method ids."""
    bystander = conn.channel()
    channel = conn.channel()
    closes = capture(channel._impl.callbacks, channel.channel_number, spec.Channel.Close)
    with pytest.raises(ChannelClosedByBroker) as info:
        action(channel)
        channel.basic_qos()  # a round trip, for actions the broker does not answer
    assert channel.is_closed and conn.is_open
    new_queue(bystander)  # the other channels of the connection go on
    bystander.close()
    (close,) = closes
    assert (info.value.reply_code, info.value.reply_text) == (close.reply_code, close.reply_text)
    return close.reply_code, close.reply_text, close.class_id, close.method_id


def connection_error(conn, action) -> tuple[int, str, int, int]:
    """Run ``action(channel)`` on a new channel; the broker must close the connection.
    Returns the connection.close's code, text, class and method ids."""
    closes = capture(conn._impl.callbacks, 0, spec.Connection.Close)
    bystander = conn.channel()
    with pytest.raises(ConnectionClosedByBroker) as info:
        action(conn.channel())
        pump(conn, lambda: False)  # until the close arrives
    assert conn.is_closed and bystander.is_closed
    (close,) = closes
    assert (info.value.reply_code, info.value.reply_text) == (close.reply_code, close.reply_text)
    return close.reply_code, close.reply_text, close.class_id, close.method_id


def send(channel, method, content=None) -> None:
    """Send a method pika's API cannot express, through its channel internals."""
    channel._impl._send_method(method, content)


# -- handshake ----------------------------------------------------------------------------


@pytest.mark.parametrize(("user", "password"), [("guest", "wrong"), ("nobody", "guest")])
def test_bad_credentials_refused(broker, user, password):
    with pytest.raises(ProbableAuthenticationError) as info:
        pika.BlockingConnection(parameters(broker, user, password))
    assert info.value.args == (
        "ConnectionClosedByBroker: (403) 'ACCESS_REFUSED - Login was refused using "
        "authentication mechanism PLAIN. For details see the broker logfile.'",
    )


def test_unknown_vhost_not_allowed(broker):
    with pytest.raises(ProbableAccessDeniedError) as info:
        pika.BlockingConnection(parameters(broker, virtual_host="nope"))
    expected = "ConnectionClosedByBroker: (530) 'NOT_ALLOWED - vhost nope not found'"
    assert info.value.args == (expected,)


def test_broker_serves_others_after_refusals(broker):
    for kwargs in ({"password": "wrong"}, {"virtual_host": "nope"}):
        with pytest.raises(pika.exceptions.AMQPConnectionError):
            pika.BlockingConnection(parameters(broker, **kwargs))
    with connection(broker) as conn:
        assert new_queue(conn.channel())


# -- exchanges ----------------------------------------------------------------------------


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


def inequivalent(kind: str, name: str, arg: str, received: str, current: str) -> str:
    return (
        f"PRECONDITION_FAILED - inequivalent arg '{arg}' for {kind} '{name}' in vhost '/': "
        f"received {received} but current is {current}"
    )


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


# -- queues -------------------------------------------------------------------------------


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


# -- basic --------------------------------------------------------------------------------


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


def unknown_tag(tag: int, method_id: int) -> tuple[int, str, int, int]:
    return 406, f"PRECONDITION_FAILED - unknown delivery tag {tag}", 60, method_id


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


def test_flow_inactive_closes_connection(conn):
    expected = (540, "NOT_IMPLEMENTED - active=false", 20, 20)
    assert connection_error(conn, lambda c: c.flow(False)) == expected


def test_qos_prefetch_size_closes_connection(conn):
    expected = (540, "NOT_IMPLEMENTED - prefetch_size!=0 (1000)", 60, 10)
    assert connection_error(conn, lambda c: c.basic_qos(prefetch_size=1000)) == expected


def test_recover_without_requeue_closes_connection(conn):
    expected = (540, "NOT_IMPLEMENTED - requeue=false", 60, 110)
    assert connection_error(conn, lambda c: c.basic_recover(requeue=False)) == expected


def test_method_on_unopened_channel_closes_connection(conn):
    def action(_channel):
        conn._impl._send_method(1000, spec.Queue.Declare(queue=""))

    expected = (504, "CHANNEL_ERROR - expected 'channel.open'", 50, 10)
    assert connection_error(conn, action) == expected


def test_connection_error_releases_everything(broker, conn, name):
    """After a connection error its exclusive queues are gone, its unacked messages back."""
    with connection(broker) as observer:
        shared = observer.channel()
        shared.queue_declare(name)
        publish(shared, name, b"held")

        def action(channel):
            new_queue(channel, f"{name}-exclusive", exclusive=True)
            channel.basic_get(name)
            channel.exchange_declare(name, "foo")

        connection_error(conn, action)
        pump(observer, lambda: not exists(observer, "queue", f"{name}-exclusive"))
        pump(observer, lambda: shared.queue_declare(name, passive=True).method.message_count)
        method, _, body = shared.basic_get(name, auto_ack=True)
        assert (body, method.redelivered) == (b"held", True)
        shared.queue_delete(name)


# -- confirm and tx -----------------------------------------------------------------------


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
