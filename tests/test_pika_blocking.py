"""The broker as pika's BlockingConnection sees it: handshake, channels, exchanges,
routing, queues, basic, confirms and tx, all over real TCP, with RabbitMQ's results.

The small helpers here are shared with test_pika_errors.py and test_pika_select.py.
"""

from __future__ import annotations

import datetime
import decimal
import re
import time
from contextlib import contextmanager

import pika
import pytest
from amqp_raw import RawClient
from pamqp import commands
from pika import spec
from pika.exceptions import ChannelClosedByBroker, UnroutableError

CAPABILITIES = {
    "publisher_confirms": True,
    "exchange_exchange_bindings": True,
    "basic.nack": True,
    "consumer_cancel_notify": True,
    "connection.blocked": True,
    "consumer_priorities": True,
    "authentication_failure_close": True,
    "per_consumer_qos": True,
    "direct_reply_to": True,
}
GENERATED = r"[A-Za-z0-9_-]{22}"  # 16 random bytes, url-safe base64 without padding


# -- helpers ------------------------------------------------------------------------------


def parameters(broker, user: str = "guest", password: str = "guest", **kwargs):
    return pika.ConnectionParameters(
        host=broker.host,
        port=broker.port,
        credentials=pika.PlainCredentials(user, password),
        **kwargs,
    )


@contextmanager
def connection(broker, **kwargs):
    conn = pika.BlockingConnection(parameters(broker, **kwargs))
    try:
        yield conn
    finally:
        if conn.is_open:
            conn.close()


@pytest.fixture
def plain_name(name):
    """The test's unique name, reduced to letters, digits, '_', '.' and '-'."""
    return re.sub(r"[^\w.-]", "_", name)


def pump(conn, done, timeout: float = 10.0) -> None:
    """Process I/O until ``done()``; the timeout only guards against a hang."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "gave up waiting"
        conn.process_data_events(time_limit=0.02)


def settle(conn) -> None:
    """Give the broker a moment to send anything more it (wrongly) would."""
    conn.process_data_events(time_limit=0.3)


def new_queue(ch, name: str = "", **kwargs) -> str:
    """Declare an exclusive queue (server-named by default); return its name."""
    kwargs.setdefault("exclusive", True)
    return ch.queue_declare(name, **kwargs).method.queue


def publish(ch, routing_key: str, body: bytes = b"m", exchange: str = "", **kwargs) -> None:
    ch.basic_publish(exchange, routing_key, body, **kwargs)


def counts(ch, queue: str) -> tuple[int, int]:
    """(message_count, consumer_count) from a passive declare."""
    ok = ch.queue_declare(queue, passive=True).method
    return ok.message_count, ok.consumer_count


def drain(ch, queue: str) -> list[tuple[bytes, bool]]:
    """Every ready message of ``queue`` as (body, redelivered), by basic.get (auto-ack)."""
    got = []
    while True:
        method, _props, body = ch.basic_get(queue, auto_ack=True)
        if method is None:
            return got
        got.append((body, method.redelivered))


def exists(conn, kind: str, name: str) -> bool:
    """Whether an exchange or queue exists, by a passive declare on a channel of its own."""
    probe = conn.channel()
    try:
        if kind == "queue":
            probe.queue_declare(name, passive=True)
        else:
            probe.exchange_declare(name, passive=True)
    except ChannelClosedByBroker as error:
        assert error.reply_code == 404
        return False
    probe.close()
    return True


def consume(ch, queue: str, **kwargs) -> list:
    """Start a consumer; returns the list its deliveries (method, properties, body) go to."""
    got: list = []
    ch.basic_consume(queue, lambda _ch, m, p, b: got.append((m, p, b)), **kwargs)
    return got


def rpc(conn, ch, method, *replies):
    """Send a synchronous method through pika's channel internals (for what
    BlockingChannel does not offer) and return the reply method."""
    answer: list = []
    ch._impl._rpc(method, lambda frame: answer.append(frame.method), list(replies))
    pump(conn, lambda: answer)
    return answer[0]


def acked(frames) -> set[int]:
    """The publish sequence numbers a list of Basic.Ack frames confirms (RabbitMQ may
    confirm out of order: a multiple ack covers every earlier number)."""
    tags: set[int] = set()
    for frame in frames:
        ack = frame.method
        assert isinstance(ack, spec.Basic.Ack)
        if ack.multiple:
            tags |= set(range(1, ack.delivery_tag + 1))
        else:
            assert ack.delivery_tag not in tags
            tags.add(ack.delivery_tag)
    return tags


def select_confirms(conn, ch, on_confirm) -> None:
    """confirm.select through pika's internals, so that each basic.ack/nack frame the
    broker sends is passed to ``on_confirm`` as it comes."""
    selected: list = []
    ch._impl.confirm_delivery(ack_nack_callback=on_confirm, callback=selected.append)
    pump(conn, lambda: selected)


# -- handshake ----------------------------------------------------------------------------


def test_plain_login_and_server_capabilities(conn):
    assert conn.is_open
    assert conn._impl.server_capabilities == CAPABILITIES
    assert conn._impl.server_properties["capabilities"] == CAPABILITIES


def test_tune_defaults_are_rabbitmq_values(conn):
    params = conn._impl.params
    assert (params.channel_max, params.frame_max, params.heartbeat) == (2047, 131072, 60)


@pytest.mark.parametrize("heartbeat", [0, 7])
def test_client_heartbeat_wins_negotiation(broker, heartbeat):
    with connection(broker, heartbeat=heartbeat, channel_max=10, frame_max=4096) as conn:
        params = conn._impl.params
        assert (params.channel_max, params.frame_max, params.heartbeat) == (10, 4096, heartbeat)
        conn.channel().queue_declare("", exclusive=True)


# -- channels -----------------------------------------------------------------------------


def test_many_channels_on_one_connection(conn):
    channels = [conn.channel() for _ in range(200)]
    assert len({c.channel_number for c in channels}) == 200
    queues = [new_queue(c) for c in channels]
    assert len(set(queues)) == 200
    for c in channels:
        c.close()
    assert new_queue(conn.channel())


def test_channel_open_close_cycles(conn):
    numbers = set()
    for _ in range(50):
        channel = conn.channel()
        numbers.add(channel.channel_number)
        new_queue(channel)
        channel.close()
    assert numbers == {1}  # pika reuses the freed number; the broker accepts it again


def test_channel_flow_active_true(ch):
    assert ch.flow(True) is True


# -- exchanges ----------------------------------------------------------------------------


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


# -- routing ------------------------------------------------------------------------------


def routed(ch, exchange: str, bindings: dict, keys: list[str], **publish_kwargs) -> dict:
    """Bind one queue per binding name, publish one message per routing key (the key is
    the body), and return {binding name: [keys that reached its queue]}."""
    queues = {}
    for label, (routing_key, arguments) in bindings.items():
        queues[label] = new_queue(ch)
        ch.queue_bind(queues[label], exchange, routing_key, arguments=arguments)
    for key in keys:
        publish(ch, key, key.encode(), exchange=exchange, **publish_kwargs)
    return {label: [body.decode() for body, _ in drain(ch, q)] for label, q in queues.items()}


def test_direct_routing(ch, name):
    ch.exchange_declare(name, "direct")
    got = routed(ch, name, {"one": ("k1", None), "two": ("k2", None)}, ["k1", "k2", "k3", ""])
    assert got == {"one": ["k1"], "two": ["k2"]}
    ch.exchange_delete(name)


def test_direct_queue_bound_twice_gets_one_copy(ch, name):
    ch.exchange_declare(name, "direct")
    queue = new_queue(ch)
    ch.queue_bind(queue, name, "k")
    ch.queue_bind(queue, name, "k")
    ch.queue_bind(queue, name, "k", arguments={"x": 1})
    publish(ch, "k", exchange=name)
    assert len(drain(ch, queue)) == 1
    ch.queue_unbind(queue, name, "k")
    publish(ch, "k", exchange=name)
    assert len(drain(ch, queue)) == 1  # still bound with the arguments
    ch.exchange_delete(name)


def test_fanout_routing_ignores_keys(ch, name):
    ch.exchange_declare(name, "fanout")
    got = routed(ch, name, {"a": ("x", None), "b": ("y", None)}, ["x", "z"])
    assert got == {"a": ["x", "z"], "b": ["x", "z"]}
    ch.exchange_delete(name)


def test_amq_fanout_and_xivo_cti_route(ch, name):
    assert routed(ch, "amq.fanout", {"f": ("", None)}, [name]) == {"f": [name]}
    assert routed(ch, "xivo-cti", {"x": (name, None)}, [name, name + "-other"]) == {"x": [name]}


TOPIC_KEYS = [
    "",
    "a",
    "b",
    "ab",
    "a.b",
    "b.a",
    "a.c",
    "a.b.c",
    "a..c",
    "a.",
    ".a",
    "a.b.b.c",
    "x.y.b",
    "a.bc",
]


@pytest.mark.parametrize(
    ("pattern", "matching"),
    [
        ("#", TOPIC_KEYS),
        ("a.#", ["a", "a.b", "a.c", "a.b.c", "a..c", "a.", "a.b.b.c", "a.bc"]),
        ("#.b", ["b", "a.b", "x.y.b"]),
        ("a.*.c", ["a.b.c", "a..c"]),
        ("*", ["a", "b", "ab"]),
        ("a.*", ["a.b", "a.c", "a.", "a.bc"]),
        ("*.#", [k for k in TOPIC_KEYS if k]),
        ("a.#.c", ["a.c", "a.b.c", "a..c", "a.b.b.c"]),
        ("#.a.#", ["a", "a.b", "b.a", "a.c", "a.b.c", "a..c", "a.", ".a", "a.b.b.c", "a.bc"]),
        ("a.b", ["a.b"]),
        ("", [""]),
        ("a..c", ["a..c"]),
    ],
    ids=[
        "hash",
        "a.hash",
        "hash.b",
        "a.star.c",
        "star",
        "a.star",
        "star.hash",
        "a.hash.c",
        "hash.a.hash",
        "a.b",
        "empty",
        "a..c",
    ],
)
def test_topic_routing(ch, plain_name, pattern, matching):
    ch.exchange_declare(plain_name, "topic")
    assert routed(ch, plain_name, {"q": (pattern, None)}, TOPIC_KEYS) == {"q": matching}
    ch.exchange_delete(plain_name)


def test_topic_message_reaches_queue_once_with_overlapping_bindings(ch):
    got = routed(ch, "amq.topic", {"q": ("#", None)}, ["one.two"])
    queue = new_queue(ch)
    for pattern in ("#", "one.*", "*.two", "one.two"):
        ch.queue_bind(queue, "amq.topic", pattern)
    publish(ch, "one.two", exchange="amq.topic")
    assert len(drain(ch, queue)) == 1
    assert got == {"q": ["one.two"]}


HEADERS = {
    "all": {"x-match": "all", "a": 1, "b": "x"},
    "any": {"x-match": "any", "a": 1, "b": "x"},
    "default": {"a": 1, "b": "x"},
    "present": {"a": None},
    "any-present": {"x-match": "any", "a": None, "c": None},
}


@pytest.mark.parametrize(
    ("headers", "matching"),
    [
        ({"a": 1, "b": "x", "c": True}, ["all", "any", "default", "present", "any-present"]),
        ({"a": 1}, ["any", "present", "any-present"]),
        ({"a": 2, "b": "x"}, ["any", "present", "any-present"]),
        ({"b": "x"}, ["any"]),
        ({"c": "anything"}, ["any-present"]),
        ({}, []),
        (None, []),
    ],
    ids=["all-match", "only-a", "b-differs", "only-b", "only-c", "no-headers", "none"],
)
def test_headers_routing(ch, plain_name, headers, matching):
    ch.exchange_declare(plain_name, "headers")
    bindings = {label: ("", args) for label, args in HEADERS.items()}
    properties = pika.BasicProperties(headers=headers)
    got = routed(ch, plain_name, bindings, ["m"], properties=properties)
    assert sorted(label for label, keys in got.items() if keys) == sorted(matching)
    ch.exchange_delete(plain_name)


ODD_NAME = "a b/c#*$%é[x]{y}"


def test_any_exchange_name_is_carried_back(conn, ch, name):
    """RabbitMQ accepts any UTF-8 exchange name and sends it back in deliver, get-ok and
    return alike."""
    exchange = f"{ODD_NAME}-{name}"
    ch.exchange_declare(exchange, "direct")
    queue = new_queue(ch)
    ch.queue_bind(queue, exchange, ODD_NAME)
    publish(ch, ODD_NAME, b"1", exchange=exchange)
    method, _, _ = ch.basic_get(queue, auto_ack=True)
    assert (method.exchange, method.routing_key) == (exchange, ODD_NAME)
    got = consume(ch, queue, auto_ack=True)
    publish(ch, ODD_NAME, b"2", exchange=exchange)
    pump(conn, lambda: got)
    assert (got[0][0].exchange, got[0][0].routing_key) == (exchange, ODD_NAME)
    returned = []
    ch.add_on_return_callback(lambda _c, m, _p, _b: returned.append(m))
    publish(ch, "unbound " + ODD_NAME, b"3", exchange=exchange, mandatory=True)
    pump(conn, lambda: returned)
    assert (returned[0].exchange, returned[0].routing_key) == (exchange, "unbound " + ODD_NAME)
    ch.exchange_delete(exchange)


def test_headers_routing_ignores_routing_key_on_amq_match(ch):
    got = routed(
        ch,
        "amq.match",
        {"q": ("some-key", {"h": "v"})},
        ["other-key"],
        properties=pika.BasicProperties(headers={"h": "v"}),
    )
    assert got == {"q": ["other-key"]}


# -- queues -------------------------------------------------------------------------------


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


# -- basic: publish and consume -----------------------------------------------------------


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


# -- basic: acknowledgements --------------------------------------------------------------


def fill(ch, count: int) -> str:
    """A new queue holding messages b"0" .. b"<count-1>"."""
    queue = new_queue(ch)
    for i in range(count):
        publish(ch, queue, b"%d" % i)
    return queue


def get_n(ch, queue: str, count: int) -> list[int]:
    """basic.get ``count`` messages without acking them; return their delivery tags."""
    return [ch.basic_get(queue)[0].delivery_tag for _ in range(count)]


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


# -- basic: qos ---------------------------------------------------------------------------


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


# -- publisher confirms -------------------------------------------------------------------


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


# -- transactions -------------------------------------------------------------------------


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
