"""kombu over its py-amqp transport, the way Celery-era Python services talk to the bus."""

from __future__ import annotations

import socket

import amqp.exceptions
import pytest
from kombu import Connection, Consumer, Exchange, Producer, Queue


@pytest.fixture
def url(broker) -> str:
    return f"amqp://guest:guest@{broker.host}:{broker.port}//"


@pytest.fixture
def connection(url):
    with Connection(url, transport_options={"confirm_publish": True}) as connection:
        connection.connect()
        yield connection


def drain(connection, received: list, count: int, timeout: float = 5) -> None:
    """drain_events until ``received`` holds ``count`` messages."""
    while len(received) < count:
        connection.drain_events(timeout=timeout)


def test_connection_handshake(connection):
    assert connection.transport.driver_type == "amqp"
    server = connection.connection.server_properties
    assert server["capabilities"]["publisher_confirms"] is True
    assert connection.connection.heartbeat == 0  # kombu's default, as XiVO ran it
    assert connection.connection.frame_max == 131072


def test_producer_consumer_with_confirms(connection, name):
    exchange = Exchange("xivo-cti", type="direct", durable=True)
    queue = Queue(name, exchange, routing_key="call_form_result", auto_delete=True)
    received = []

    def on_message(body, message):
        received.append((body, message))
        message.ack()

    with Consumer(connection, queues=[queue], callbacks=[on_message], accept=["json"]):
        producer = Producer(connection)
        event = {"name": "call_form_result", "data": {"user_id": 40, "variables": {}}}
        producer.publish(
            event,
            exchange=exchange,
            routing_key="call_form_result",
            serializer="json",
            declare=[exchange],
            retry=False,
        )
        producer.publish({"name": "other"}, exchange=exchange, routing_key="other")
        drain(connection, received, 1)
        with pytest.raises(socket.timeout):
            connection.drain_events(timeout=0.3)

    assert [body for body, _ in received] == [event]
    message = received[0][1]
    assert message.content_type == "application/json"
    assert message.delivery_info["exchange"] == "xivo-cti"
    assert message.delivery_info["routing_key"] == "call_form_result"
    assert message.delivery_info["redelivered"] is False
    assert message.acknowledged


def test_publish_confirmed_by_broker(connection, name):
    channel = connection.default_channel
    queue = Queue(name, auto_delete=False, channel=channel)
    queue.declare()
    try:
        producer = Producer(channel)
        for index in range(3):  # each publish waits for the broker's basic.ack
            producer.publish({"n": index}, routing_key=name, serializer="json")
        assert channel._confirm_selected  # py-amqp switched the channel to confirm mode
        assert queue.queue_declare(passive=True).message_count == 3
    finally:
        queue.delete()


def test_simple_queue_put_get_ack_and_requeue(connection, name):
    simple = connection.SimpleQueue(name, queue_opts={"auto_delete": False})
    try:
        simple.put({"n": 1})
        simple.put({"n": 2})
        assert simple.qsize() == 2

        first = simple.get(block=True, timeout=5)
        assert first.payload == {"n": 1}
        assert first.delivery_info["redelivered"] is False
        first.requeue()  # basic.reject requeue=true: comes back, flagged redelivered
        # the consumer may hold n=2 already: the two arrive in either order
        rest = [simple.get(block=True, timeout=5) for _ in range(2)]
        flags = {m.payload["n"]: m.delivery_info["redelivered"] for m in rest}
        assert flags == {1: True, 2: False}
        for message in rest:
            message.ack()
        with pytest.raises(simple.Empty):
            simple.get(block=True, timeout=0.3)
    finally:
        simple.close()
        Queue(name)(connection.channel()).delete()


def test_consumer_reject_without_requeue_drops(connection, name):
    queue = Queue(name, auto_delete=False)
    received = []
    try:
        with Consumer(connection, queues=[queue], callbacks=[lambda b, m: received.append(m)]):
            Producer(connection).publish(b"drop me", routing_key=name)
            drain(connection, received, 1)
            received[0].reject(requeue=False)
        bound = queue(connection.default_channel)
        assert bound.queue_declare(passive=True).message_count == 0
    finally:
        queue(connection.default_channel).delete()


def test_passive_declare_of_missing_queue_is_not_found(connection, name):
    channel = connection.channel()
    with pytest.raises(amqp.exceptions.NotFound) as raised:
        channel.queue_declare(name, passive=True)
    assert raised.value.reply_code == 404
    assert raised.value.reply_text == f"NOT_FOUND - no queue '{name}' in vhost '/'"
    assert raised.value.method_name == "Queue.declare"
    # kombu recognises it as a channel error, not a connection one
    assert isinstance(raised.value, connection.channel_errors)
    assert connection.connected


def test_passive_declare_of_missing_exchange_is_not_found(connection, name):
    exchange = Exchange(name, type="direct", passive=True)
    with pytest.raises(amqp.exceptions.NotFound) as raised:
        exchange(connection.channel()).declare()
    assert raised.value.reply_text == f"NOT_FOUND - no exchange '{name}' in vhost '/'"


def test_inequivalent_redeclare_is_precondition_failed(connection, name):
    Queue(name, auto_delete=True, durable=False)(connection.channel()).declare()
    with pytest.raises(amqp.exceptions.PreconditionFailed) as raised:
        Queue(name, auto_delete=True, durable=True)(connection.channel()).declare()
    assert raised.value.reply_code == 406
    assert raised.value.reply_text == (
        f"PRECONDITION_FAILED - inequivalent arg 'durable' for queue '{name}' in vhost '/': "
        "received 'true' but current is 'false'"
    )


def test_unroutable_mandatory_publish_is_returned(connection, name):
    returned = []
    producer = Producer(connection, on_return=lambda *args: returned.append(args))
    producer.publish(b"nowhere", routing_key=name, mandatory=True)
    with pytest.raises(socket.timeout):  # deliver the basic.return to the callback
        connection.drain_events(timeout=0.3)
    assert len(returned) == 1
    exception, exchange, routing_key, message = returned[0]
    assert (exchange, routing_key) == ("", name)
    assert exception.reply_code == 312
    assert message.body == b"nowhere"
