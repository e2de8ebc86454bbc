#!/usr/bin/env python3
"""The spec's example client (message-bus.rst, "Example"), in Python 3 and pika 1.x form.

Listens for call_form_result CTI events. Usage::

    spec_example_client.py [PORT [MAX_MESSAGES]]

PORT defaults to $XIVO_BUS_PORT, else 5672 as in the spec; MAX_MESSAGES defaults to
$XIVO_BUS_EXIT_AFTER, else 0 (run forever, as in the spec). With MAX_MESSAGES the client
stops after that many messages, closes its channel and reports, from a second channel,
how many messages its queue still holds (0 when every ack reached the broker).
Progress lines ("ready", "acked", "left") are for the test suite; the rest is the spec.
"""

import os
import sys

import pika


def main(argv: list[str]) -> int:
    port = int(argv[1]) if len(argv) > 1 else int(os.environ.get("XIVO_BUS_PORT", "5672"))
    limit = int(argv[2]) if len(argv) > 2 else int(os.environ.get("XIVO_BUS_EXIT_AFTER", "0"))

    connection = pika.BlockingConnection(pika.ConnectionParameters("localhost", port))
    channel = connection.channel()

    result = channel.queue_declare("", exclusive=True)
    queue_name = result.method.queue

    channel.queue_bind(exchange="xivo-cti", queue=queue_name, routing_key="call_form_result")
    print("ready", queue_name, flush=True)

    received = 0

    def callback(ch, method, props, body):
        nonlocal received
        print("Received:", body.decode("utf-8"), flush=True)
        ch.basic_ack(delivery_tag=method.delivery_tag)
        print("acked", method.delivery_tag, flush=True)
        received += 1
        if limit and received >= limit:
            ch.stop_consuming()

    channel.basic_consume(queue=queue_name, on_message_callback=callback)
    channel.start_consuming()

    # Unacked deliveries go back to the queue when their channel closes: count what is left.
    channel.close()
    left = connection.channel().queue_declare(queue_name, passive=True).method.message_count
    print("left", left, flush=True)
    connection.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
