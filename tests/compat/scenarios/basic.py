"""Basic class, publishing and consuming: publish/return, consume/cancel/get, properties
and header field types, bodies small and large."""

from __future__ import annotations

import datetime
import decimal
import struct

import pika
from pamqp import commands
from pamqp import header as pamqp_header

from ..harness import (
    Collector,
    channel_closed,
    close_frame,
    delivery,
    get_all,
    outcome,
    pika_channel,
    pika_scenario,
    poll,
    raw,
    scenario,
    sync,
)


def _returns(ch):
    returned = []
    ch.add_on_return_callback(
        lambda _c, method, props, body: returned.append(delivery(method, props, body))
    )
    return returned


@pika_scenario("basic.publish", expect={"channel_closed": [404, lambda t: "no exchange" in t]})
def publish_to_missing_exchange(ch, p):
    ch.basic_publish(p, "k", b"x")
    return sync(ch)


@scenario(
    "basic.publish",
    expect={"reply": close_frame(540, "NOT_IMPLEMENTED - immediate=true", 60, 40)},
)
def publish_immediate(url, prefix):
    with raw(url) as session:
        session.send(
            1, commands.Basic.Publish(exchange="amq.direct", routing_key="k", immediate=True)
        )
        session.send(1, pamqp_header.ContentHeader(0, 0, commands.Basic.Properties()))
        return {"reply": session.next()}


RETURNS = {
    "direct": ("amq.direct", "nowhere"),
    "fanout_without_bindings": ("amq.fanout", "k"),
    "default_exchange_missing_queue": ("", "no-such-queue"),
}
for _name, (_exchange, _key) in RETURNS.items():
    pika_scenario(
        "basic.publish",
        "basic.return",
        name=f"mandatory_unroutable_{_name}",
        expect={"ok": [{"method": "Basic.Return", "reply_code": 312, "reply_text": "NO_ROUTE"}]},
    )(
        lambda ch, p, x=_exchange, k=_key: (
            returned := _returns(ch),
            ch.basic_publish(
                x,
                k,
                b"back",
                pika.BasicProperties(content_type="text/plain", headers={"h": 1}),
                mandatory=True,
            ),
            sync(ch),
            ch.connection.process_data_events(time_limit=0.1),
            returned,
        )[-1]
    )


@pika_scenario("basic.publish", expect={"ok": []})
def unroutable_not_mandatory_is_dropped(ch, p):
    returned = _returns(ch)
    ch.basic_publish("amq.direct", p, b"dropped")
    sync(ch)
    ch.connection.process_data_events(time_limit=0.1)
    return returned


@pika_scenario("basic.publish", "basic.get", "basic.get-ok")
def get_ok_fields(ch, p):
    ch.queue_declare(p, exclusive=True)
    ch.queue_bind(p, "amq.topic", "a.b")
    ch.basic_publish("amq.topic", "a.b", b"one")
    ch.basic_publish("", p, b"two")
    return [
        delivery(*ch.basic_get(p)),
        delivery(*ch.basic_get(p, auto_ack=True)),
        delivery(*ch.basic_get(p)),
    ]


@pika_scenario("basic.get", "basic.get-empty", expect={"ok": {"empty": True}})
def get_empty(ch, p):
    ch.queue_declare(p, exclusive=True)
    return delivery(*ch.basic_get(p))


@scenario(
    "basic.get", "basic.get-empty", expect={"reply": {"method": "Basic.GetEmpty", "cluster_id": ""}}
)
def get_empty_raw(url, prefix):
    with raw(url) as session:
        session.call(commands.Queue.Declare(queue=prefix, exclusive=True))
        return {"reply": session.call(commands.Basic.Get(queue=prefix))}


@pika_scenario("basic.get", expect={"channel_closed": [404, lambda t: "no queue" in t]})
def get_missing_queue(ch, p):
    return ch.basic_get(p)


@pika_scenario("basic.consume", expect={"channel_closed": [404, lambda t: "no queue" in t]})
def consume_missing_queue(ch, p):
    return ch.basic_consume(p, lambda *a: None)


@scenario(
    "basic.consume",
    expect={"reply": close_frame(530, "NOT_ALLOWED - attempt to reuse consumer tag 'dup'", 60, 20)},
)
def consume_duplicate_tag(url, prefix):
    with raw(url) as session:
        session.call(commands.Queue.Declare(queue=prefix, exclusive=True))
        session.call(commands.Basic.Consume(queue=prefix, consumer_tag="dup"))
        return {"reply": session.call(commands.Basic.Consume(queue=prefix, consumer_tag="dup"))}


@scenario("basic.consume", "basic.consume-ok")
def consume_same_tag_on_two_channels(url, prefix):
    with pika_channel(url) as (connection, channel):
        channel.queue_declare(prefix, exclusive=True)
        other = connection.channel()
        return [
            outcome(channel.basic_consume, prefix, lambda *a: None, consumer_tag="same"),
            outcome(other.basic_consume, prefix, lambda *a: None, consumer_tag="same"),
        ]


EXCLUSIVE_USE = {"channel_closed": [403, lambda t: t.endswith("in exclusive use")]}
for _name, _first, _second in (
    ("exclusive_after_consumer", False, True),
    ("after_exclusive_consumer", True, False),
):
    pika_scenario("basic.consume", name=f"consume_{_name}", expect=EXCLUSIVE_USE)(
        lambda ch, p, a=_first, b=_second: (
            ch.queue_declare(p, exclusive=True),
            ch.basic_consume(p, lambda *x: None, exclusive=a),
            ch.connection.channel().basic_consume(p, lambda *x: None, exclusive=b),
        )[-1]
    )


@pika_scenario("basic.get", "basic.consume", expect={"ok": {"empty": True}})
def get_beside_exclusive_consumer(ch, p):
    ch.queue_declare(p, exclusive=True)
    ch.basic_consume(p, lambda *x: None, exclusive=True)
    return delivery(*ch.connection.channel().basic_get(p))


@scenario(
    "basic.cancel",
    "basic.cancel-ok",
    expect={"reply": {"method": "Basic.CancelOk", "consumer_tag": "nope"}},
)
def cancel_unknown_tag(url, prefix):
    with raw(url) as session:
        return {"reply": session.call(commands.Basic.Cancel(consumer_tag="nope"))}


@scenario(
    "basic.consume",
    "basic.consume-ok",
    expect={"consumer_tag": lambda t: t.startswith("amq.ctag-") and len(t) == 31},
)
def consume_server_generated_tag(url, prefix):
    with raw(url) as session:
        session.call(commands.Queue.Declare(queue=prefix, exclusive=True))
        return session.call(commands.Basic.Consume(queue=prefix, consumer_tag=""))


@scenario("basic.consume", expect={"between": []})
def consume_nowait(url, prefix):
    with raw(url) as session:
        session.call(commands.Queue.Declare(queue=prefix, exclusive=True))
        session.send(1, commands.Basic.Consume(queue=prefix, consumer_tag="", nowait=True))
        return {"between": session.barrier()}


@scenario("basic.consume", "basic.deliver", "basic.get")
def delivery_tags_shared_by_get_and_deliver(url, prefix):
    with pika_channel(url) as (connection, channel):
        channel.queue_declare(prefix, exclusive=True)
        for index in range(4):
            channel.basic_publish("", prefix, b"%d" % index)
        got = delivery(*channel.basic_get(prefix))
        collector = Collector(connection)
        channel.basic_consume(prefix, collector.callback())
        return {"get": got, "delivered": collector.wait(3)}


@scenario("basic.consume", "basic.deliver")
def consumers_served_round_robin(url, prefix):
    with pika_channel(url) as (connection, channel):
        channel.queue_declare(prefix, exclusive=True)
        collector = Collector(connection)
        channel.basic_consume(prefix, collector.callback("a"), consumer_tag="a", auto_ack=True)
        channel.basic_consume(prefix, collector.callback("b"), consumer_tag="b", auto_ack=True)
        for index in range(6):
            channel.basic_publish("", prefix, b"%d" % index)
        return [(m["consumer"], m["body"]) for m in collector.wait(6)]


@scenario("basic.cancel", "basic.consume", "basic.deliver")
def cancel_stops_deliveries_and_keeps_unacked(url, prefix):
    with pika_channel(url) as (connection, channel):
        channel.queue_declare(prefix, exclusive=True)
        collector = Collector(connection)
        channel.basic_consume(prefix, collector.callback(), consumer_tag="c")
        channel.basic_publish("", prefix, b"first")
        collector.wait(1)
        cancelled = outcome(channel.basic_cancel, "c")
        channel.basic_publish("", prefix, b"second")
        acked = outcome(channel.basic_ack, 1)
        sync(channel)
        left = poll(lambda: get_all(channel, prefix))
        return {"cancel": cancelled, "seen": collector.seen, "left": left, "ack": acked}


def _properties_roundtrip(properties):
    def body(ch, p):
        ch.queue_declare(p, exclusive=True)
        ch.basic_publish("", p, b"props", properties=properties)
        return get_all(ch, p)

    return body


HEADER_VALUES = {
    "str": "text é",
    "int": 42,
    "negative": -7,
    "big": 2**40,
    "bool": True,
    "false": False,
    "float": 1.5,
    "decimal": decimal.Decimal("3.14"),
    "datetime": datetime.datetime(2024, 1, 2, 3, 4, 5),
    "none": None,
    "table": {"nested": {"deep": [1, "two"]}},
    "array": [1, "a", {"t": 1}, [2]],
    "bytes": b"\x00\xffraw",
    "empty": "",
}
PROPERTIES = {
    "all_basic_properties": pika.BasicProperties(
        content_type="application/json",
        content_encoding="utf-8",
        headers={"name": "call_form_result"},
        delivery_mode=2,
        priority=3,
        correlation_id="corr",
        reply_to="reply",
        expiration="60000",
        message_id="id-1",
        timestamp=1700000000,
        type="call_form_result",
        user_id="guest",
        app_id="xivo-cti",
        cluster_id="cluster",
    ),
    "header_field_types": pika.BasicProperties(headers=HEADER_VALUES),
    "no_properties": None,
    "empty_headers": pika.BasicProperties(headers={}),
    "transient": pika.BasicProperties(delivery_mode=1),
}
for _name, _properties in PROPERTIES.items():
    pika_scenario("basic.publish", "basic.get-ok", name=f"properties_{_name}")(
        _properties_roundtrip(_properties)
    )


def _user_id(user_id):
    def body(ch, p):
        ch.queue_declare(p, exclusive=True)
        ch.basic_publish("", p, b"u", pika.BasicProperties(user_id=user_id))
        sync(ch)
        return [m["properties"] for m in get_all(ch, p)]

    return body


pika_scenario("basic.publish", name="user_id_matching", expect={"ok": [{"user_id": "guest"}]})(
    _user_id("guest")
)
pika_scenario(
    "basic.publish",
    name="user_id_mismatch",
    expect=channel_closed(
        406,
        "PRECONDITION_FAILED - user_id property set to 'someone' but authenticated user "
        "was 'guest'",
    ),
)(_user_id("someone"))


# Every field type RabbitMQ knows, encoded by hand: the broker must pass them on unchanged.
RAW_FIELDS = {
    "bool": b"t\x01",
    "signed_8": b"b" + struct.pack(">b", -5),
    "unsigned_8": b"B" + struct.pack(">B", 250),
    "signed_16": b"s" + struct.pack(">h", -300),
    "unsigned_16": b"u" + struct.pack(">H", 65000),
    "signed_32": b"I" + struct.pack(">i", -70000),
    "unsigned_32": b"i" + struct.pack(">I", 4000000000),
    "signed_64": b"l" + struct.pack(">q", -(2**40)),
    "float": b"f" + struct.pack(">f", 1.5),
    "double": b"d" + struct.pack(">d", 2.25),
    "decimal": b"D\x02" + struct.pack(">I", 314),
    "long_string": b"S" + struct.pack(">I", 3) + b"abc",
    "byte_array": b"x" + struct.pack(">I", 2) + b"\x00\x01",
    "timestamp": b"T" + struct.pack(">Q", 1700000000),
    "void": b"V",
    "array": b"A" + struct.pack(">I", 2) + b"b\x01",
    "table": b"F" + struct.pack(">I", 4) + b"\x01kt\x01",
}


def _typed_header(field: bytes):
    def run(url, prefix):
        table = b"\x01k" + field
        properties = b"\x20\x00" + struct.pack(">I", len(table)) + table  # flags: headers
        payload = struct.pack(">HHQ", 60, 0, 5) + properties
        with raw(url) as session:
            session.call(commands.Queue.Declare(queue=prefix, exclusive=True))
            session.send(1, commands.Basic.Publish(exchange="", routing_key=prefix))
            session.send_frame(2, 1, payload)
            session.send_frame(3, 1, b"typed")
            reply = session.call(commands.Basic.Get(queue=prefix, no_ack=True))
            if not isinstance(reply, dict) or reply.get("method") != "Basic.GetOk":
                return {"reply": reply}
            frame = session.next_raw()
            return {"same_bytes": frame is not None and frame[2] == payload}

    return run


for _name, _field in RAW_FIELDS.items():
    scenario(
        "basic.publish",
        "basic.get-ok",
        name=f"header_field_{_name}_passes_unchanged",
        expect={"same_bytes": True},
    )(_typed_header(_field))


BODY_SIZES = {
    "empty_body": 0,
    "body_at_frame_max": 131064,
    "body_over_frame_max": 131065,
    "large_body_1mb": 1 << 20,
}
for _name, _size in BODY_SIZES.items():
    pika_scenario("basic.publish", "basic.deliver", name=_name)(
        lambda ch, p, n=_size: (
            ch.queue_declare(p, exclusive=True),
            ch.basic_publish("", p, bytes(range(256)) * (n // 256) + b"z" * (n % 256)),
            [(len(m["body"]), m["body"][-3:]) for m in get_all(ch, p)],
        )[-1]
    )


@pika_scenario("basic.publish", "basic.get", expect={"ok": [f"m{i}" for i in range(50)]})
def queue_order_is_fifo(ch, p):
    ch.queue_declare(p, exclusive=True)
    for index in range(50):
        ch.basic_publish("", p, b"m%d" % index)
    return [m["body"] for m in get_all(ch, p)]
