"""The same protocol through the other client libraries people use: aio-pika (aiormq),
kombu and py-amqp."""

from __future__ import annotations

import asyncio
import contextlib
import time

import aio_pika
import aiormq
import amqp
import kombu

from ..harness import host_port, scenario


def _aio(coroutine_function):
    def run(url, prefix):
        return asyncio.run(coroutine_function(url, prefix))

    run.__name__ = coroutine_function.__name__
    return run


async def _aio_roundtrip(url, prefix):
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()  # publisher confirms on, as aio-pika does
        queue = await channel.declare_queue(prefix, exclusive=True)
        exchange = await channel.declare_exchange(prefix, aio_pika.ExchangeType.TOPIC)
        await queue.bind(exchange, "calls.#")
        confirm = await exchange.publish(
            aio_pika.Message(b'{"name": "x"}', content_type="application/json", headers={"a": 1}),
            routing_key="calls.call.created",
        )
        message = await queue.get(timeout=5)
        await message.ack()
        await exchange.delete()
        return {
            "confirm": type(confirm).__name__,
            "body": message.body.decode(),
            "routing_key": message.routing_key,
            "headers": message.headers,
            "content_type": message.content_type,
            "redelivered": message.redelivered,
        }


async def _aio_errors(url, prefix):
    connection = await aio_pika.connect(url)
    seen = {}
    async with connection:
        channel = await connection.channel()
        try:
            await channel.declare_queue(prefix, passive=True)
        except aio_pika.exceptions.AMQPError as exc:
            seen["passive"] = [type(exc).__name__, str(exc)]
        channel = await connection.channel()
        try:
            await channel.get_exchange("amq." + prefix)
        except aio_pika.exceptions.AMQPError as exc:
            seen["exchange"] = [type(exc).__name__, str(exc)]
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True)
        seen["server_named"] = queue.name
        seen["declare"] = (
            await channel.declare_queue(queue.name, passive=True)
        ).declaration_result.message_count
    return seen


async def _aio_consume(url, prefix):
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=2)
        queue = await channel.declare_queue(prefix, exclusive=True)
        for index in range(5):
            await channel.default_exchange.publish(
                aio_pika.Message(b"%d" % index), routing_key=prefix
            )
        seen = []
        async with queue.iterator() as messages:
            async for message in messages:
                async with message.process(requeue=True):
                    seen.append((message.body.decode(), message.delivery_tag, message.redelivered))
                if len(seen) == 5:
                    break
        return seen


async def _aio_mandatory(url, prefix):
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(on_return_raises=True)
        try:
            await channel.default_exchange.publish(
                aio_pika.Message(b"x"), routing_key=prefix, mandatory=True
            )
        except aio_pika.exceptions.DeliveryError as exc:
            return {"returned": exc.message.body.decode(), "frame": type(exc.frame).__name__}
        return "confirmed"


for _func in (_aio_roundtrip, _aio_errors, _aio_consume, _aio_mandatory):
    scenario(
        "basic.publish",
        "basic.get",
        "basic.consume",
        "confirm.select",
        name="aio_pika" + _func.__name__[4:],
    )(_aio(_func))


@scenario("basic.publish", "basic.consume", "basic.ack", "queue.declare", "exchange.declare")
def kombu_producer_consumer(url, prefix):
    exchange = kombu.Exchange(prefix, "direct")
    queue = kombu.Queue(prefix, exchange, routing_key="call_form_result", exclusive=True)
    seen = []
    with kombu.Connection(url.replace("amqp://", "pyamqp://")) as connection:
        producer = connection.Producer()
        with connection.Consumer(
            queue, callbacks=[lambda body, message: (seen.append(body), message.ack())]
        ):
            producer.publish(
                {"user_id": 40},
                exchange=exchange,
                routing_key="call_form_result",
                serializer="json",
                declare=[queue],
            )
            producer.publish(
                {"user_id": 41}, exchange=exchange, routing_key="other", serializer="json"
            )
            deadline = time.monotonic() + 10
            while not seen and time.monotonic() < deadline:
                with contextlib.suppress(TimeoutError):
                    connection.drain_events(timeout=1)
        exchange(connection.default_channel).delete()
        return seen


@scenario("basic.get", "queue.declare", "queue.purge")
def kombu_simple_queue(url, prefix):
    with kombu.Connection(url.replace("amqp://", "pyamqp://")) as connection:
        simple = connection.SimpleQueue(prefix, queue_opts={"auto_delete": True})
        simple.put({"n": 1})
        simple.put("text")
        first = simple.get(timeout=5)
        first.ack()
        second = simple.get(timeout=5)
        second.reject(requeue=True)
        again = simple.get(timeout=5)
        seen = [first.payload, second.payload, again.payload, again.delivery_info["redelivered"]]
        again.ack()
        simple.clear()
        simple.close()
        return seen


@scenario("connection.start", "queue.declare", "basic.publish", "basic.get")
def py_amqp_basic(url, prefix):
    host, port = host_port(url)
    connection = amqp.Connection(f"{host}:{port}", userid="guest", password="guest")
    connection.connect()
    try:
        channel = connection.channel()
        declared = channel.queue_declare(prefix, exclusive=True)
        channel.basic_publish(
            amqp.Message("hi", application_headers={"k": "v"}, priority=1), routing_key=prefix
        )
        message = channel.basic_get(prefix, no_ack=True)
        seen = {
            "declared": list(declared),
            "body": message.body,
            "props": message.properties,
            "caps": sorted(connection.server_capabilities),
        }
        try:
            channel.queue_declare(prefix + "-missing", passive=True)
        except amqp.exceptions.NotFound as exc:
            seen["error"] = [exc.reply_code, exc.reply_text]
        return seen
    finally:
        connection.close()


async def _aio_update_secret(url, prefix):
    """aiormq renews its credentials on an open connection (connection.update-secret)."""
    connection = await aiormq.connect(url)
    try:
        renewed = await connection.update_secret("guest", reason="rotation")
        other = await connection.update_secret("not-the-password", reason="rotation")
        channel = await connection.channel()
        declared = await channel.queue_declare(prefix, exclusive=True)
        return {
            "renewed": type(renewed).__name__,
            "other secret": type(other).__name__,
            "then usable": declared.queue == prefix,
        }
    finally:
        await connection.close()


scenario(
    "connection.update-secret",
    "connection.update-secret-ok",
    name="aiormq_update_secret",
    expect={"renewed": "UpdateSecretOk", "then usable": True},
)(_aio(_aio_update_secret))
