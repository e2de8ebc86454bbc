"""The memory alarm: publishers are blocked above the limit, consumers make room."""

from __future__ import annotations

import pika
from amqp_raw import RawClient
from conftest import start_broker
from pamqp import body as pamqp_body
from pamqp import commands, frame, header

BODY = b"m" * 120_000  # one body frame


def test_memory_alarm_blocks_publishers_until_consumers_make_room(name):
    broker = start_broker("--in-memory", "--memory-limit", str(120 * 2**20))
    publisher = RawClient(broker.host, broker.port)
    # a client whose capabilities are not a table: it must not keep the alarm up
    bystander = RawClient(broker.host, broker.port)
    try:
        bystander.handshake(capabilities="not a table")
        publisher.handshake(capabilities={"connection.blocked": True})
        publisher.open_channel(1)
        publisher.send(1, commands.Queue.Declare(queue=name))
        publisher.expect(commands.Queue.DeclareOk, 1)
        published, blocked = 0, None
        while blocked is None:  # about 800 messages of 120 kB pass the limit
            assert published < 5000, "no memory alarm"
            publisher.sock.settimeout(5)  # sends fit the socket buffers even once blocked
            for _ in range(5):
                publisher.publish(1, "", name, BODY)
            published += 5
            publisher.sock.settimeout(0.02)
            try:
                _, frame = publisher.recv_frame()
                if isinstance(frame, commands.Connection.Blocked):
                    blocked = frame.reason
            except TimeoutError:
                pass
        assert blocked.startswith("low on memory: ")

        consumer = pika.BlockingConnection(pika.ConnectionParameters(broker.host, broker.port))
        channel = consumer.channel()
        got, unblocked = 0, False
        publisher.sock.settimeout(0.05)
        while not unblocked:  # a consumer (it does not publish) is served: it makes room
            method, _, body = channel.basic_get(name, auto_ack=True)
            if method is not None:
                assert body == BODY
                got += 1
            try:
                _, frame = publisher.recv_frame()
                unblocked = isinstance(frame, commands.Connection.Unblocked)
            except TimeoutError:
                pass
            assert got <= published
        publisher.publish(1, "", name, b"after")  # the publisher is read again
        published += 1
        while got < published:
            method, _, body = channel.basic_get(name, auto_ack=True)
            if method is not None:
                got += 1
        assert body == b"after"  # nothing lost, in order
        consumer.close()
    finally:
        publisher.close()
        bystander.close()
        broker.stop()


def test_capabilities_that_are_not_a_table_are_none(name):
    """As RabbitMQ: ignored, not an error that hurts other clients (a queue.delete that
    cancels such a client's consumer used to fail with 541)."""
    broker = start_broker("--in-memory")
    odd = RawClient(broker.host, broker.port)
    try:
        odd.handshake(capabilities="not a table")
        odd.open_channel(1)
        odd.send(1, commands.Queue.Declare(queue=name))
        odd.expect(commands.Queue.DeclareOk, 1)
        odd.send(1, commands.Basic.Consume(queue=name, consumer_tag="odd"))
        odd.expect(commands.Basic.ConsumeOk, 1)
        innocent = pika.BlockingConnection(pika.ConnectionParameters(broker.host, broker.port))
        channel = innocent.channel()
        assert channel.queue_delete(name).method.message_count == 0
        assert channel.is_open and innocent.is_open
        innocent.close()
        odd.send(1, commands.Queue.Declare(queue=name + "-2"))
        odd.expect(commands.Queue.DeclareOk, 1)  # no basic.cancel came first: no capability
    finally:
        odd.close()
        broker.stop()


def test_a_message_still_arriving_blocks_its_own_sender(name):
    """Its body is what fills memory: under the alarm, the connection sending it is the
    one that stops being read (told with connection.blocked), though it never finished a
    publish."""
    broker = start_broker(
        "--in-memory", "--memory-limit", str(120 * 2**20), "--max-message-size", str(2**30)
    )
    streamer = RawClient(broker.host, broker.port)
    try:
        streamer.handshake(capabilities={"connection.blocked": True})
        streamer.open_channel(1)
        streamer.send(1, commands.Basic.Publish(exchange="", routing_key=name))
        streamer.send_raw(frame.marshal(header.ContentHeader(0, 2**30 - 1), 1))
        chunk = frame.marshal(pamqp_body.ContentBody(b"s" * 120_000), 1)
        blocked, sent = None, 0
        while blocked is None:
            assert sent < 2**30, "never blocked"
            streamer.sock.settimeout(5)
            for _ in range(10):
                streamer.send_raw(chunk)
            sent += 10 * 120_000
            streamer.sock.settimeout(0.02)
            try:
                _, got = streamer.recv_frame()
                if isinstance(got, commands.Connection.Blocked):
                    blocked = got.reason
            except TimeoutError:
                pass
        assert blocked.startswith("low on memory: ")
        # everyone else still gets served
        other = pika.BlockingConnection(pika.ConnectionParameters(broker.host, broker.port))
        other.channel().queue_declare(name)
        other.close()
    finally:
        streamer.close()
        broker.stop()
