"""Back-pressure: a consumer that stops reading is not flooded; nothing is lost."""

from __future__ import annotations

import pika
from amqp_raw import RawClient
from pamqp import body as pamqp_body
from pamqp import commands, header

BODY = b"x" * 16_384
COUNT = 3_000  # about 48 MiB: far more than socket buffers and the broker's output limit


def test_stalled_no_ack_consumer_keeps_messages_queued(broker, name):
    with RawClient(broker.host, broker.port) as consumer:
        consumer.handshake()
        consumer.open_channel(1)
        consumer.send(1, commands.Queue.Declare(queue=name))
        consumer.expect(commands.Queue.DeclareOk, 1)
        consumer.send(1, commands.Basic.Consume(queue=name, consumer_tag="stalled", no_ack=True))
        consumer.expect(commands.Basic.ConsumeOk, 1)

        connection = pika.BlockingConnection(pika.ConnectionParameters(broker.host, broker.port))
        channel = connection.channel()
        channel.confirm_delivery()
        for i in range(COUNT):
            channel.basic_publish("", name, BODY, pika.BasicProperties(message_id=str(i)))
        # The consumer reads nothing: most messages must still wait in the queue rather
        # than pile up in the broker's output buffers.
        ready = channel.queue_declare(queue=name, passive=True).method.message_count
        assert ready > COUNT // 2

        # Now it reads: every message arrives once, in order.
        consumer.sock.settimeout(10)
        seen = []
        while len(seen) < COUNT:
            _, frame = consumer.recv_frame()
            if isinstance(frame, header.ContentHeader):
                seen.append(int(frame.properties.message_id))
            else:
                assert isinstance(frame, (commands.Basic.Deliver, pamqp_body.ContentBody))
        assert seen == list(range(COUNT))
        channel.queue_delete(name)
        connection.close()
