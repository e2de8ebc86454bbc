"""Unacked deliveries go back to their queue, flagged redelivered, in their original order,
nothing lost and nothing duplicated: when the consumer's process is killed, when its
channel or connection closes, on basic.recover and on nack/reject with requeue."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pika
import pytest
from conftest import ChildLines

TOTAL = 10
PREFETCH = 4
ACKED = 2  # the consumer acks the first two it gets and holds the next PREFETCH

# A consumer of its own process: prefetch PREFETCH, acks the first ACKED messages, then
# holds what it gets until it is killed.
CONSUMER = """
import sys, pika
port, queue, prefetch, acked = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
channel = connection.channel()
channel.basic_qos(prefetch_count=prefetch)
seen = 0
def on_message(ch, method, properties, body):
    global seen
    seen += 1
    print("got", body.decode(), method.redelivered, flush=True)
    if seen <= acked:
        ch.basic_ack(method.delivery_tag)
channel.basic_consume(queue, on_message)
print("consuming", flush=True)
channel.start_consuming()
"""


def bodies(first: int, last: int) -> list[str]:
    return [f"m{i}" for i in range(first, last)]


@pytest.fixture
def queue(conn, name):
    """A queue of the test's own holding m0..m9."""
    channel = conn.channel()
    channel.queue_declare(name)
    channel.confirm_delivery()
    for body in bodies(0, TOTAL):
        channel.basic_publish("", name, body.encode())
    yield name
    if conn.is_open:
        conn.channel().queue_delete(name)


def wait_for_ready(conn, queue: str, count: int, consumers: int = 0, timeout: float = 5) -> None:
    """Poll until the queue holds ``count`` ready messages and ``consumers`` consumers."""
    channel = conn.channel()
    deadline = time.monotonic() + timeout
    while True:
        ok = channel.queue_declare(queue, passive=True).method
        if (ok.message_count, ok.consumer_count) == (count, consumers):
            break
        assert time.monotonic() < deadline, (ok.message_count, ok.consumer_count)
        time.sleep(0.02)
    channel.close()


def drain_all(broker, queue: str) -> list[tuple[str, bool]]:
    """Everything the next consumer (a new connection) gets: (body, redelivered), in order."""
    params = pika.ConnectionParameters(broker.host, broker.port)
    with pika.BlockingConnection(params) as connection:
        channel = connection.channel()
        channel.basic_qos(prefetch_count=3)
        got = []
        for method, _properties, body in channel.consume(queue, inactivity_timeout=0.5):
            if method is None:
                break
            got.append((body.decode(), method.redelivered))
            channel.basic_ack(method.delivery_tag)
        channel.cancel()
    return got


def expected_after_loss() -> list[tuple[str, bool]]:
    """m2..m5 were held unacked: they come first, flagged; then m6..m9, fresh."""
    held = bodies(ACKED, ACKED + PREFETCH)
    fresh = bodies(ACKED + PREFETCH, TOTAL)
    return [(b, True) for b in held] + [(b, False) for b in fresh]


def take_deliveries(channel, queue: str) -> list:
    """Consume on ``channel`` with prefetch PREFETCH: ack the first ACKED, hold the rest."""
    channel.basic_qos(prefetch_count=PREFETCH)
    held = []
    for method, _properties, body in channel.consume(queue, inactivity_timeout=1):
        assert method is not None, "deliveries stopped early"
        assert not method.redelivered
        if len(held) + 1 <= ACKED:
            channel.basic_ack(method.delivery_tag)
        held.append(body.decode())
        if len(held) == ACKED + PREFETCH:
            break
    return held


def test_consumer_process_killed(broker, conn, queue):
    consumer = subprocess.Popen(
        [sys.executable, "-c", CONSUMER, str(broker.port), queue, str(PREFETCH), str(ACKED)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        out = ChildLines(consumer)
        got = [out.wait_for("got ").split()[1:] for _ in range(ACKED + PREFETCH)]
        assert got == [[b, "False"] for b in bodies(0, ACKED + PREFETCH)]
        # two acked, four held: the prefetch window is full, four wait in the queue
        wait_for_ready(conn, queue, TOTAL - ACKED - PREFETCH, consumers=1)
    finally:
        consumer.send_signal(signal.SIGKILL)
        consumer.wait(timeout=10)
    lines = out.rest(timeout=5)
    assert sum(line.startswith("got ") for line in lines) == ACKED + PREFETCH, lines

    wait_for_ready(conn, queue, TOTAL - ACKED)  # the broker noticed, requeued what was held
    assert drain_all(broker, queue) == expected_after_loss()


@pytest.mark.parametrize("how", ["channel_close", "connection_close"])
def test_consumer_closes(broker, conn, queue, how):
    params = pika.ConnectionParameters(broker.host, broker.port)
    consumer_connection = pika.BlockingConnection(params)
    channel = consumer_connection.channel()
    assert take_deliveries(channel, queue) == bodies(0, ACKED + PREFETCH)
    if how == "channel_close":
        channel.close()
        assert consumer_connection.is_open
    consumer_connection.close()

    wait_for_ready(conn, queue, TOTAL - ACKED)
    assert drain_all(broker, queue) == expected_after_loss()


def test_basic_recover_requeue(broker, conn, queue):
    channel = conn.channel()
    channel.basic_qos(prefetch_count=3)
    first = []
    for method, _properties, body in channel.consume(queue, inactivity_timeout=1):
        first.append((body.decode(), method.redelivered, method.delivery_tag))
        if len(first) == 3:
            break
    assert first == [("m0", False, 1), ("m1", False, 2), ("m2", False, 3)]

    channel.basic_recover(requeue=True)
    again = []
    for method, _properties, body in channel.consume(queue, inactivity_timeout=1):
        assert method is not None
        again.append((body.decode(), method.redelivered, method.delivery_tag))
        channel.basic_ack(method.delivery_tag)
        if len(again) == TOTAL:
            break
    # the three come back first, flagged, with new delivery tags; then the rest, fresh
    assert again == [("m0", True, 4), ("m1", True, 5), ("m2", True, 6)] + [
        (f"m{i}", False, i + 4) for i in range(3, TOTAL)
    ]
    channel.cancel()
    assert channel.queue_declare(queue, passive=True).method.message_count == 0


@pytest.mark.parametrize("verb", ["nack", "nack_multiple", "reject"])
def test_requeue_by_nack_or_reject(broker, conn, queue, verb):
    channel = conn.channel()
    gets = [channel.basic_get(queue) for _ in range(3)]
    assert [body for _m, _p, body in gets] == [b"m0", b"m1", b"m2"]
    tags = [method.delivery_tag for method, _p, _b in gets]
    if verb == "nack":
        channel.basic_nack(tags[1], requeue=True)
        channel.basic_nack(tags[0], requeue=True)
    elif verb == "nack_multiple":
        channel.basic_nack(tags[1], multiple=True, requeue=True)
    else:
        channel.basic_reject(tags[1], requeue=True)
        channel.basic_reject(tags[0], requeue=True)
    channel.basic_ack(tags[2])
    # the requeued pair is back at the head, in original order, flagged
    after = [channel.basic_get(queue, auto_ack=True) for _ in range(TOTAL - 1)]
    assert [(m.redelivered, b.decode()) for m, _p, b in after] == [
        (True, "m0"),
        (True, "m1"),
    ] + [(False, f"m{i}") for i in range(3, TOTAL)]
    assert channel.basic_get(queue) == (None, None, None)


def test_nack_without_requeue_drops(broker, conn, queue):
    channel = conn.channel()
    method, _p, body = channel.basic_get(queue)
    assert body == b"m0"
    channel.basic_nack(method.delivery_tag, requeue=False)
    channel.close()
    assert [b for b, _r in drain_all(broker, queue)] == bodies(1, TOTAL)
