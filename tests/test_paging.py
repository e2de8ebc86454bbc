"""Queue backlogs paged to disk (``broker/model/paging.py``): past a few thousand
messages a queue keeps only its head and tail in memory, the rest in page files of the
data directory, read back in order as consumers get there."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
import urllib.request
from base64 import b64encode
from pathlib import Path

import pika
import pytest
from conftest import start_broker, start_management_broker

# More than the head (2048) and a page (1024) hold, with room for several pages.
BACKLOG = 9000


def connect(broker) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.ConnectionParameters(broker.host, broker.port))


def pages(broker) -> list[str]:
    return sorted(os.listdir(Path(broker.data_dir) / "pages"))


def properties_of(i: int) -> pika.BasicProperties:
    """Properties that differ from one message to the next."""
    return pika.BasicProperties(
        headers={"i": i, "half": i % 2 == 0},
        content_type="text/plain" if i % 3 else None,
        correlation_id=f"c{i}",
        expiration="600000" if i % 5 == 0 else None,
        delivery_mode=2 if i % 2 else 1,
    )


def publish(channel, count: int, queue: str = "", exchange: str = "", **kwargs) -> None:
    for i in range(count):
        channel.basic_publish(
            exchange, queue, f"message {i} ".encode() + b"x" * (i % 700), **kwargs
        )


def message_count(channel, queue: str) -> int:
    return channel.queue_declare(queue, passive=True).method.message_count


def consume_all(channel, queue: str, count: int, ack: bool = True) -> list:
    """Consume ``count`` messages with a prefetch: (body, redelivered, properties)."""
    channel.basic_qos(prefetch_count=500)
    got = []
    for method, properties, body in channel.consume(queue, inactivity_timeout=30):
        assert method is not None, f"only {len(got)} of {count} delivered"
        got.append((body, method.redelivered, properties))
        if ack:
            channel.basic_ack(method.delivery_tag)
        if len(got) == count:
            break
    channel.cancel()
    return got


def number(body: bytes) -> int:
    return int(body.split()[1])


def test_a_backlog_is_paged_out_and_delivered_in_order_with_every_property(name):
    broker = start_broker()
    try:
        connection = connect(broker)
        channel = connection.channel()
        channel.queue_declare(name)
        for i in range(BACKLOG):
            body = f"message {i} ".encode() + b"x" * (i % 700)
            channel.basic_publish("", name, body, properties_of(i))
        assert message_count(channel, name) == BACKLOG
        paged = pages(broker)
        assert len(paged) >= 4, paged
        for page in paged:
            assert (Path(broker.data_dir) / "pages" / page).stat().st_mode & 0o777 == 0o600

        got = consume_all(channel, name, BACKLOG)
        assert [number(body) for body, _, _ in got] == list(range(BACKLOG))
        for i, (body, redelivered, properties) in enumerate(got):
            expected = properties_of(i)
            assert body == f"message {i} ".encode() + b"x" * (i % 700)
            assert not redelivered
            assert properties.headers == expected.headers
            assert properties.content_type == expected.content_type
            assert properties.correlation_id == expected.correlation_id
            assert properties.expiration == expected.expiration
            assert properties.delivery_mode == expected.delivery_mode
        assert pages(broker) == []
        assert message_count(channel, name) == 0
        connection.close()
    finally:
        broker.stop()


def test_in_memory_keeps_the_backlog_in_memory(name, tmp_path):
    broker = start_broker("--in-memory")
    try:
        connection = connect(broker)
        channel = connection.channel()
        channel.queue_declare(name)
        publish(channel, BACKLOG, name)
        assert message_count(channel, name) == BACKLOG
        assert [number(body) for body, _, _ in consume_all(channel, name, BACKLOG)] == list(
            range(BACKLOG)
        )
        connection.close()
    finally:
        broker.stop()


def test_paged_persistent_messages_survive_a_restart_and_a_crash(tmp_path, name):
    broker = start_broker("--data-dir", str(tmp_path))
    connection = connect(broker)
    channel = connection.channel()
    channel.confirm_delivery()
    channel.queue_declare(name, durable=True)
    publish(channel, BACKLOG, name, properties=pika.BasicProperties(delivery_mode=2))
    assert pages(broker)
    connection.close()
    assert broker.stop() == 0

    # a page left by an earlier run is a cache: wiped at start
    stale = tmp_path / "pages" / "stale.page"
    stale.write_bytes(b"not a page")
    broker = start_broker("--data-dir", str(tmp_path))
    assert "stale.page" not in pages(broker)
    connection = connect(broker)
    channel = connection.channel()
    assert message_count(channel, name) == BACKLOG
    assert pages(broker), "the recovered backlog is paged out too"
    # take the first thousand, acked; then a crash
    got = consume_all(channel, name, 1000)
    assert [number(body) for body, _, _ in got] == list(range(1000))
    connection.close()
    broker.stop(signal.SIGKILL)

    broker = start_broker("--data-dir", str(tmp_path))
    try:
        connection = connect(broker)
        channel = connection.channel()
        rest = consume_all(channel, name, BACKLOG - 1000)
        assert [number(body) for body, _, _ in rest] == list(range(1000, BACKLOG))
        assert all(redelivered for _, redelivered, _ in rest)  # after a crash: may have been
        assert message_count(channel, name) == 0
        connection.close()
    finally:
        broker.stop()


def test_a_message_in_two_durable_queues_stays_on_disk_until_both_let_go(tmp_path, name):
    broker = start_broker("--data-dir", str(tmp_path))
    connection = connect(broker)
    channel = connection.channel()
    channel.confirm_delivery()
    channel.exchange_declare(name, "fanout")
    for queue in ("a", "b"):
        channel.queue_declare(f"{name}-{queue}", durable=True)
        channel.queue_bind(f"{name}-{queue}", name)
    publish(channel, BACKLOG, exchange=name, properties=pika.BasicProperties(delivery_mode=2))
    # both queues page the same messages out; one drains its copy
    got = consume_all(channel, f"{name}-a", BACKLOG)
    assert [number(body) for body, _, _ in got] == list(range(BACKLOG))
    connection.close()
    assert broker.stop() == 0

    broker = start_broker("--data-dir", str(tmp_path))
    connection = connect(broker)
    channel = connection.channel()
    assert message_count(channel, f"{name}-a") == 0
    assert message_count(channel, f"{name}-b") == BACKLOG
    got = consume_all(channel, f"{name}-b", BACKLOG)
    assert [number(body) for body, _, _ in got] == list(range(BACKLOG))
    connection.close()
    assert broker.stop() == 0
    database = sqlite3.connect(tmp_path / "broker.sqlite")
    assert database.execute("SELECT count(*) FROM messages").fetchone() == (0,)
    assert database.execute("SELECT count(*) FROM queue_messages").fetchone() == (0,)
    database.close()


@pytest.mark.parametrize("durable", [False, True])
def test_purge_and_delete_take_the_pages_away(tmp_path, name, durable):
    broker = start_broker("--data-dir", str(tmp_path))
    connection = connect(broker)
    channel = connection.channel()
    channel.confirm_delivery()
    persistent = pika.BasicProperties(delivery_mode=2)
    channel.queue_declare(f"{name}-purged", durable=durable)
    channel.queue_declare(f"{name}-deleted", durable=durable)
    publish(channel, BACKLOG, f"{name}-purged", properties=persistent)
    publish(channel, BACKLOG, f"{name}-deleted", properties=persistent)
    assert pages(broker)
    assert channel.queue_purge(f"{name}-purged").method.message_count == BACKLOG
    assert channel.queue_delete(f"{name}-deleted").method.message_count == BACKLOG
    assert pages(broker) == []
    # the purged queue works on as before, paging again
    publish(channel, BACKLOG, f"{name}-purged")
    got = consume_all(channel, f"{name}-purged", BACKLOG)
    assert [number(body) for body, _, _ in got] == list(range(BACKLOG))
    connection.close()
    assert broker.stop() == 0
    if durable:
        database = sqlite3.connect(tmp_path / "broker.sqlite")
        assert database.execute("SELECT count(*) FROM messages").fetchone() == (0,)
        database.close()


def test_requeued_deliveries_go_back_before_the_paged_backlog(name):
    broker = start_broker()
    try:
        connection = connect(broker)
        channel = connection.channel()
        channel.queue_declare(name)
        publish(channel, BACKLOG, name)
        taken = consume_all(channel, name, 300, ack=False)
        assert [number(body) for body, _, _ in taken] == list(range(300))
        connection.close()  # the unacked go back: the 300 seen and the rest of the prefetch

        connection = connect(broker)
        channel = connection.channel()
        assert message_count(channel, name) == BACKLOG
        got = consume_all(channel, name, BACKLOG)
        assert [number(body) for body, _, _ in got] == list(range(BACKLOG))
        assert [redelivered for _, redelivered, _ in got] == [True] * 500 + [False] * (
            BACKLOG - 500
        )
        connection.close()
    finally:
        broker.stop()


def test_length_limits_and_ttl_hold_on_a_paged_queue(name):
    broker = start_broker()
    try:
        connection = connect(broker)
        channel = connection.channel()
        # drop-head by bytes: the oldest leave, the newest stay
        body = b"b" * 1000
        channel.queue_declare(f"{name}-bytes", arguments={"x-max-length-bytes": 5_000_000})
        for i in range(BACKLOG):
            channel.basic_publish("", f"{name}-bytes", b"%06d" % i + body)
        assert message_count(channel, f"{name}-bytes") == 5_000_000 // 1006
        method, _, first = channel.basic_get(f"{name}-bytes", auto_ack=True)
        assert int(first[:6]) == BACKLOG - 5_000_000 // 1006
        # a TTL still empties a paged queue, as messages reach its head
        channel.queue_declare(f"{name}-ttl", arguments={"x-message-ttl": 300})
        publish(channel, BACKLOG, f"{name}-ttl")
        deadline = time.monotonic() + 30
        while message_count(channel, f"{name}-ttl") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert message_count(channel, f"{name}-ttl") == 0
        connection.close()
    finally:
        broker.stop()


def test_the_management_api_shows_what_is_paged_out(name):
    broker, base = start_management_broker()
    try:
        connection = connect(broker)
        channel = connection.channel()
        channel.queue_declare(name)
        publish(channel, BACKLOG, name)
        request = urllib.request.Request(
            f"{base}/api/queues/%2F/{name}",
            headers={"Authorization": "Basic " + b64encode(b"guest:guest").decode()},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            queue = json.load(response)
        assert queue["messages"] == BACKLOG
        assert 0 < queue["messages_paged_out"] < BACKLOG
        assert queue["messages_ram"] == BACKLOG - queue["messages_paged_out"]
        assert queue["message_bytes_paged_out"] > 0
        connection.close()
    finally:
        broker.stop()
