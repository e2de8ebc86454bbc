"""The memory alarm: publishers are blocked above the limit, consumers make room."""

from __future__ import annotations

import pika
from amqp_raw import RawClient
from conftest import start_broker
from pamqp import commands

BODY = b"m" * 120_000  # one body frame


def test_memory_alarm_blocks_publishers_until_consumers_make_room(name):
    broker = start_broker("--in-memory", "--memory-limit", str(120 * 2**20))
    publisher = RawClient(broker.host, broker.port)
    try:
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
        broker.stop()
