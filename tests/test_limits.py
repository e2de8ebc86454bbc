"""Configurable limits of `xivo-bus serve`."""

from __future__ import annotations

import pika
import pytest
from conftest import start_broker


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
