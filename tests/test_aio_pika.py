"""aio-pika (and aiormq beneath it) against the broker, as a RabbitMQ-ready app uses it."""

from __future__ import annotations

import asyncio
import datetime

import aio_pika
import aio_pika.exceptions
import aiormq.exceptions
import pytest
from aio_pika import DeliveryMode, ExchangeType, Message
from conftest import start_broker

LOCKED = (
    "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '{}' in vhost '/'. "
    "It could be originally declared on another connection or the exclusive property "
    "value does not match that of the original declaration."
)


def reply_text(text: str) -> str:
    """RabbitMQ's reply_text is a shortstr: longer texts are cut to 252 bytes plus '...'."""
    raw = text.encode()
    return text if len(raw) <= 255 else raw[:252].decode(errors="ignore") + "..."


@pytest.fixture
async def connection(broker):
    connection = await aio_pika.connect(broker.url)
    yield connection
    await connection.close()


@pytest.fixture
async def channel(connection):
    return await connection.channel(publisher_confirms=True)


async def queue_depth(connection, queue_name: str) -> int:
    """Ready messages of a queue, seen from a channel of its own."""
    channel = await connection.channel()
    try:
        queue = await channel.declare_queue(queue_name, passive=True)
        return queue.declaration_result.message_count
    finally:
        await channel.close()


@pytest.mark.parametrize("connect", [aio_pika.connect, aio_pika.connect_robust])
async def test_declare_bind_publish_confirmed_and_consume(broker, name, connect):
    async with await connect(broker.url) as connection:
        capabilities = connection.transport.connection.server_properties["capabilities"]
        assert capabilities["publisher_confirms"] is True
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.declare_exchange(name, ExchangeType.DIRECT, auto_delete=True)
        queue = await channel.declare_queue(name)
        await queue.bind(exchange, routing_key="call_form_result")

        confirmation = await exchange.publish(Message(b"one"), routing_key="call_form_result")
        assert isinstance(confirmation, aiormq.spec.Basic.Ack)
        assert confirmation.delivery_tag == 1  # confirm sequence numbers start at 1
        second = await exchange.publish(Message(b"two"), routing_key="call_form_result")
        assert second.delivery_tag == 2
        await exchange.publish(Message(b"nobody"), routing_key="other", mandatory=False)

        bodies = []
        async with queue.iterator() as messages:
            async for message in messages:
                bodies.append(message.body)
                assert message.exchange == name
                assert message.routing_key == "call_form_result"
                assert message.redelivered is False
                await message.ack()
                if len(bodies) == 2:
                    break
        assert bodies == [b"one", b"two"]
        assert await queue_depth(connection, name) == 0
        assert await queue.delete() is not None


async def test_get_ack_nack_reject(connection, channel, name):
    queue = await channel.declare_queue(name, auto_delete=False)
    try:
        for body in (b"a", b"b", b"c"):
            await channel.default_exchange.publish(Message(body), routing_key=name)

        first = await queue.get(timeout=5)
        assert (first.body, first.redelivered, first.message_count) == (b"a", False, 2)
        await first.ack()

        second = await queue.get(timeout=5)
        assert second.body == b"b"
        await second.nack(requeue=True)  # back at the head, flagged
        again = await queue.get(timeout=5)
        assert (again.body, again.redelivered) == (b"b", True)
        await again.reject(requeue=False)  # dropped: no dead-lettering configured

        third = await queue.get(timeout=5)
        assert (third.body, third.redelivered) == (b"c", False)
        await third.reject(requeue=True)
        third_again = await queue.get(timeout=5)
        assert (third_again.body, third_again.redelivered) == (b"c", True)
        await third_again.ack()

        assert await queue.get(fail=False) is None
        with pytest.raises(aio_pika.exceptions.QueueEmpty):
            await queue.get()
        assert await queue_depth(connection, name) == 0
    finally:
        await queue.delete()


async def test_prefetch_limits_unacked_deliveries(connection, channel, name):
    await channel.set_qos(prefetch_count=2)
    queue = await channel.declare_queue(name, auto_delete=True)
    for index in range(5):
        await channel.default_exchange.publish(Message(str(index).encode()), routing_key=name)

    received: asyncio.Queue = asyncio.Queue()
    await queue.consume(received.put)
    first = await asyncio.wait_for(received.get(), 5)
    second = await asyncio.wait_for(received.get(), 5)
    assert [first.body, second.body] == [b"0", b"1"]
    await asyncio.sleep(0.3)
    assert received.empty()  # two unacked: the broker holds the rest back
    assert await queue_depth(connection, name) == 3

    await first.ack()
    third = await asyncio.wait_for(received.get(), 5)
    assert third.body == b"2"
    await asyncio.sleep(0.3)
    assert received.empty()

    await second.ack()
    await third.ack()
    rest = [await asyncio.wait_for(received.get(), 5) for _ in range(2)]
    assert [m.body for m in rest] == [b"3", b"4"]
    await rest[1].ack(multiple=True)
    assert await queue_depth(connection, name) == 0


async def test_mandatory_unroutable_raises_publish_error(connection, name):
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    with pytest.raises(aio_pika.exceptions.PublishError) as returned:
        await channel.default_exchange.publish(Message(b"lost"), routing_key=name)
    frame = returned.value.message.delivery
    assert (frame.reply_code, frame.reply_text) == (312, "NO_ROUTE")
    assert (frame.exchange, frame.routing_key) == ("", name)
    assert returned.value.message.body == b"lost"
    # the channel stays usable
    queue = await channel.declare_queue(name, auto_delete=True)
    await channel.default_exchange.publish(Message(b"found"), routing_key=name)
    assert (await queue.get(timeout=5, no_ack=True)).body == b"found"


async def test_mandatory_unroutable_goes_to_return_callback(connection, name):
    channel = await connection.channel(publisher_confirms=True, on_return_raises=False)
    returns = []
    channel.return_callbacks.add(lambda _channel, message: returns.append(message))
    result = await channel.default_exchange.publish(
        Message(b"lost", message_id="m1"), routing_key=name
    )
    assert [m.body for m in returns] == [b"lost"]
    assert returns[0].message_id == "m1"
    assert result.delivery.reply_code == 312
    # not mandatory: dropped silently, yet confirmed
    ack = await channel.default_exchange.publish(Message(b"x"), routing_key=name, mandatory=False)
    assert isinstance(ack, aiormq.spec.Basic.Ack)
    assert len(returns) == 1


@pytest.mark.parametrize(
    "declare, error, text",
    [
        (
            lambda ch, n: ch.declare_queue(n, passive=True),
            aiormq.exceptions.ChannelNotFoundEntity,
            "NOT_FOUND - no queue '{}' in vhost '/'",
        ),
        (
            lambda ch, n: ch.get_exchange(n, ensure=True),
            aiormq.exceptions.ChannelNotFoundEntity,
            "NOT_FOUND - no exchange '{}' in vhost '/'",
        ),
        (
            lambda ch, n: ch.declare_queue("amq." + n),
            aiormq.exceptions.ChannelAccessRefused,
            "ACCESS_REFUSED - queue name 'amq.{}' contains reserved prefix 'amq.*'",
        ),
        (
            lambda ch, n: ch.declare_exchange("amq." + n),
            aiormq.exceptions.ChannelAccessRefused,
            "ACCESS_REFUSED - exchange name 'amq.{}' contains reserved prefix 'amq.*'",
        ),
    ],
    ids=["queue-404", "exchange-404", "queue-amq-403", "exchange-amq-403"],
)
async def test_channel_errors(connection, name, declare, error, text):
    channel = await connection.channel()
    with pytest.raises(error) as raised:
        await declare(channel, name)
    assert raised.value.args[0] == text.format(name)
    assert channel.is_closed
    # only the channel closed: the connection still serves a new one
    other = await connection.channel()
    queue = await other.declare_queue(exclusive=True)
    assert queue.name.startswith("amq.gen-")


async def test_inequivalent_redeclare_is_406(connection, channel, name):
    await channel.declare_exchange(name, ExchangeType.DIRECT, auto_delete=True)
    other = await connection.channel()
    with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed) as raised:
        await other.declare_exchange(name, ExchangeType.FANOUT, auto_delete=True)
    assert raised.value.args[0] == (
        f"PRECONDITION_FAILED - inequivalent arg 'type' for exchange '{name}' in vhost '/': "
        "received 'fanout' but current is 'direct'"
    )


@pytest.mark.parametrize("length", ["short", "long"])
async def test_exclusive_queue_is_locked_to_its_connection(
    broker, connection, channel, name, length
):
    # the 405 text grows with the name: a long one outgrows a shortstr
    name = f"excl-{name[-8:]}" if length == "short" else (name + "-" + "q" * 120)[:120]
    expected = reply_text(LOCKED.format(name))
    queue = await channel.declare_queue(name, exclusive=True)
    async with await aio_pika.connect(broker.url) as intruder:
        for attempt in (
            lambda ch: ch.declare_queue(name, exclusive=True),
            lambda ch: ch.declare_queue(name, passive=True),
        ):
            other = await intruder.channel()
            with pytest.raises(aiormq.exceptions.ChannelLockedResource) as raised:
                await attempt(other)
            assert raised.value.args[0] == expected
        # consuming goes through aiormq directly (aio-pika's Queue needs a declared queue)
        raw = await (await intruder.channel()).get_underlay_channel()
        with pytest.raises(aiormq.exceptions.ChannelLockedResource) as raised:
            await raw.basic_consume(name, lambda message: None)
        assert raised.value.args[0] == expected
    # the owner is unaffected
    await channel.default_exchange.publish(Message(b"mine"), routing_key=name)
    assert (await queue.get(timeout=5, no_ack=True)).body == b"mine"


async def test_exclusive_queue_goes_with_its_connection(broker, connection, name):
    async with await aio_pika.connect(broker.url) as owner:
        await (await owner.channel()).declare_queue(name, exclusive=True)
    channel = await connection.channel()
    with pytest.raises(aiormq.exceptions.ChannelNotFoundEntity):
        await channel.declare_queue(name, passive=True)


async def test_transaction_commit_and_rollback(connection, name):
    channel = await connection.channel(publisher_confirms=False)
    queue = await channel.declare_queue(name, auto_delete=False)
    try:
        async with channel.transaction():
            await channel.default_exchange.publish(Message(b"t1"), routing_key=name)
            await channel.default_exchange.publish(Message(b"t2"), routing_key=name)
            assert await queue_depth(connection, name) == 0  # not before commit
        assert await queue_depth(connection, name) == 2

        transaction = channel.transaction()
        await transaction.select()
        await channel.default_exchange.publish(Message(b"never"), routing_key=name)
        await transaction.rollback()
        assert await queue_depth(connection, name) == 2

        # acks are transactional too
        message = await queue.get(timeout=5)
        await message.ack()
        assert await queue_depth(connection, name) == 1  # t2 ready, t1 unacked
        await transaction.rollback()  # the ack is discarded: t1 stays unacked
        await transaction.commit()
        await channel.close()  # t1 goes back to the queue
        assert await queue_depth(connection, name) == 2
    finally:
        cleanup = await connection.channel()
        await cleanup.queue_delete(name)


async def test_all_properties_round_trip(connection, channel, name):
    queue = await channel.declare_queue(name, auto_delete=True)
    timestamp = datetime.datetime(2013, 5, 6, 7, 8, 9, tzinfo=datetime.UTC)
    headers = {
        "name": "call_form_result",
        "origin_uuid": "08c56466-8f29-45c7-9856-92bf1ba89b82",
        "count": 40,
        "big": 2**40,
        "negative": -7,
        "ratio": 0.5,
        "flag": True,
        "off": False,
        "nothing": None,
        "list": [1, "two", [3], {"four": 4}],
        "nested": {"variables": {"firstname": "John", "lastname": "Doe"}, "empty": {}},
        "when": timestamp,
    }
    sent = Message(
        b'{"name": "call_form_result", "data": null}',
        headers=headers,
        content_type="application/json",
        content_encoding="utf-8",
        delivery_mode=DeliveryMode.PERSISTENT,
        priority=7,
        correlation_id="corr-1",
        reply_to="replies.here",
        expiration=60,
        message_id="msg-1",
        timestamp=timestamp,
        type="call_form_result",
        user_id="guest",
        app_id="xivo-ctid",
    )
    await channel.default_exchange.publish(sent, routing_key=name)
    got = await queue.get(timeout=5, no_ack=True)

    assert got.body == sent.body
    assert got.headers == headers
    assert got.content_type == "application/json"
    assert got.content_encoding == "utf-8"
    assert got.delivery_mode == DeliveryMode.PERSISTENT
    assert got.priority == 7
    assert got.correlation_id == "corr-1"
    assert got.reply_to == "replies.here"
    assert got.expiration == 60
    assert got.properties.expiration == "60000"  # on the wire: milliseconds, as a string
    assert got.message_id == "msg-1"
    assert got.timestamp == timestamp
    assert got.type == "call_form_result"
    assert got.user_id == "guest"
    assert got.app_id == "xivo-ctid"


async def test_robust_connection_recovers_after_broker_restart(fresh_broker, name):
    port = fresh_broker.port
    connection = await aio_pika.connect_robust(fresh_broker.url, reconnect_interval=0.2)
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.declare_exchange(name, ExchangeType.DIRECT, durable=True)
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(exchange, routing_key="call_form_result")
        received: asyncio.Queue = asyncio.Queue()
        await queue.consume(received.put, no_ack=True)

        assert fresh_broker.stop() == 0  # a restart forgets everything (nothing persists)
        restarted = start_broker("--port", str(port))
        try:
            await asyncio.wait_for(channel.ready(), 20)
            for _ in range(100):  # recovery redeclares exchange, queue, binding, consumer
                try:
                    await exchange.publish(Message(b"after"), "call_form_result", mandatory=True)
                    break
                except (aio_pika.exceptions.PublishError, aiormq.exceptions.AMQPError):
                    await asyncio.sleep(0.1)
            message = await asyncio.wait_for(received.get(), 10)
            assert message.body == b"after"
        finally:
            await connection.close()
            restarted.stop()
    finally:
        if not connection.is_closed:
            await connection.close()
