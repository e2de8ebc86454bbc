"""Configurable limits of `xivo-bus serve`."""

from __future__ import annotations

import pika
import pytest
from amqp_raw import RawClient
from conftest import start_broker
from pamqp import body as pamqp_body
from pamqp import commands, frame, header


def test_max_message_size(name):
    broker = start_broker("--in-memory", "--max-message-size", "1000")
    try:
        connection = pika.BlockingConnection(pika.ConnectionParameters(broker.host, broker.port))
        channel = connection.channel()
        channel.confirm_delivery()
        channel.queue_declare(name)
        channel.basic_publish("", name, b"x" * 1000)  # at the limit: accepted
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
            channel.basic_publish("", name, b"x" * 1001)
        assert (closed.value.reply_code, closed.value.reply_text) == (
            406,
            "PRECONDITION_FAILED - message size 1001 is larger than configured max size 1000",
        )
        other = connection.channel()
        assert other.queue_declare(name, passive=True).method.message_count == 1
        connection.close()
    finally:
        broker.stop()


def test_a_body_announced_too_large_is_refused_before_it_arrives(name):
    """The content header says 2^40 bytes: the channel is closed (406) at once, the body
    frames that keep coming are read and dropped (not kept), and the connection goes on."""
    broker = start_broker("--in-memory", "--max-message-size", "1000")
    client = RawClient(broker.host, broker.port)
    try:
        client.handshake()
        client.open_channel(1)
        client.send(1, commands.Basic.Publish(exchange="", routing_key=name))
        client.send_raw(frame.marshal(header.ContentHeader(0, 2**40), 1))
        closed = client.expect(commands.Channel.Close, 1)  # nothing of the body sent yet
        assert (closed.reply_code, closed.class_id, closed.method_id) == (406, 60, 40)
        assert closed.reply_text == (
            "PRECONDITION_FAILED - message size 1099511627776 is larger than configured "
            "max size 1000"
        )
        chunk = frame.marshal(pamqp_body.ContentBody(b"z" * 100_000), 1)
        for _ in range(100):  # 10 MB more of it
            client.send_raw(chunk)
        client.send(1, commands.Channel.CloseOk())
        client.open_channel(2)
        client.send(2, commands.Queue.Declare(queue=name))
        client.expect(commands.Queue.DeclareOk, 2)
        client.publish(2, "", name, b"fine")
        client.send(2, commands.Basic.Get(queue=name, no_ack=True))
        got = client.expect(commands.Basic.GetOk, 2)
        assert got.routing_key == name
    finally:
        client.close()
        broker.stop()
