"""Durable queues and persistent messages survive restarts and crashes (SIGKILL)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pika
import pytest
from amqp_raw import RawClient
from conftest import serve_argv, start_broker
from durability import crash_cycles
from pamqp import body as pamqp_body
from pamqp import commands, frame, header

PERSISTENT = pika.BasicProperties(delivery_mode=2)


def connect(broker) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.ConnectionParameters(broker.host, broker.port))


def restart(broker, data_dir) -> object:
    assert broker.stop() == 0
    return start_broker("--data-dir", str(data_dir), "--port", str(broker.port))


def get_all(channel, queue: str) -> list[tuple[bytes, bool, pika.BasicProperties]]:
    got = []
    while True:
        method, properties, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            return got
        got.append((body, method.redelivered, properties))


def test_restart_keeps_durable_things_and_drops_transient_ones(tmp_path, name):
    broker = start_broker("--data-dir", str(tmp_path))
    connection = connect(broker)
    channel = connection.channel()
    channel.confirm_delivery()
    channel.exchange_declare(f"{name}-x", "topic", durable=True)
    channel.exchange_declare(f"{name}-tx", "fanout", durable=False)
    channel.queue_declare(f"{name}-q", durable=True, arguments={"x-max-priority": 0})
    channel.queue_declare(f"{name}-tq", durable=False)
    channel.queue_bind(f"{name}-q", f"{name}-x", "a.*")
    channel.queue_bind(f"{name}-tq", f"{name}-x", "a.*")
    properties = pika.BasicProperties(
        delivery_mode=2,
        content_type="text/plain",
        headers={"k": [1, "two", {"x": True}]},
        priority=4,
        correlation_id="c",
        reply_to="r",
        expiration="600000",
        message_id="m",
        timestamp=1700000000,
        type="t",
        user_id="guest",
        app_id="a",
    )
    for i in range(5):
        channel.basic_publish(f"{name}-x", "a.b", f"persistent {i}".encode(), properties)
        channel.basic_publish(f"{name}-x", "a.b", f"transient {i}".encode())
    connection.close()

    broker = restart(broker, tmp_path)
    connection = connect(broker)
    channel = connection.channel()
    channel.exchange_declare(f"{name}-x", "topic", durable=True, passive=True)
    for missing in (
        lambda ch: ch.exchange_declare(f"{name}-tx", passive=True),
        lambda ch: ch.queue_declare(f"{name}-tq", passive=True),
    ):
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
            missing(channel)
        assert closed.value.reply_code == 404
        channel = connection.channel()
    got = get_all(channel, f"{name}-q")
    assert [body for body, _, _ in got] == [f"persistent {i}".encode() for i in range(5)]
    assert all(not redelivered for _, redelivered, _ in got)
    assert got[0][2].headers == {"k": [1, b"two", {"x": True}]} or got[0][2].headers == {
        "k": [1, "two", {"x": True}]
    }
    assert (got[0][2].priority, got[0][2].expiration, got[0][2].user_id) == (4, "600000", "guest")
    # the binding survived: a new publish is routed to the durable queue
    channel.basic_publish(f"{name}-x", "a.z", b"after", PERSISTENT)
    assert [body for body, _, _ in get_all(channel, f"{name}-q")] == [b"after"]
    # arguments survived: redeclaring with others is refused
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
        channel.queue_declare(f"{name}-q", durable=True)
    assert closed.value.reply_code == 406
    connection.close()
    broker.stop()


def test_unacked_before_stop_come_back_redelivered(tmp_path, name):
    broker = start_broker("--data-dir", str(tmp_path))
    connection = connect(broker)
    channel = connection.channel()
    channel.confirm_delivery()
    channel.queue_declare(name, durable=True)
    for i in range(6):
        channel.basic_publish("", name, str(i).encode(), PERSISTENT)
    delivered = [channel.basic_get(name) for _ in range(3)]
    channel.basic_ack(delivered[0][0].delivery_tag)  # 0 acked; 1 and 2 left unacked
    # the broker stops with 1 and 2 unacked (SIGTERM: a clean stop)
    broker = restart(broker, tmp_path)
    connection = connect(broker)
    got = get_all(connection.channel(), name)
    assert [(body, redelivered) for body, redelivered, _ in got] == [
        (b"1", True),
        (b"2", True),
        (b"3", False),
        (b"4", False),
        (b"5", False),
    ]
    connection.close()
    broker.stop()


def test_after_a_crash_every_message_comes_back_flagged(tmp_path, name):
    """Deliveries do not wait for the disk, so after a crash any stored message may have
    gone out: all come back flagged redelivered (AMQP's "may have been delivered"); a
    clean stop leaves the mark that says otherwise."""
    broker = start_broker("--data-dir", str(tmp_path))
    connection = connect(broker)
    channel = connection.channel()
    channel.confirm_delivery()
    channel.queue_declare(name, durable=True)
    for i in range(4):
        channel.basic_publish("", name, str(i).encode(), PERSISTENT)
    method, _, body = channel.basic_get(name)  # 0 delivered, not acked
    assert body == b"0" and not method.redelivered
    broker.proc.kill()  # SIGKILL: no clean stop
    broker.proc.wait(10)
    assert not (tmp_path / "clean-stop").exists()
    broker = start_broker("--data-dir", str(tmp_path))
    connection = connect(broker)
    got = get_all(connection.channel(), name)
    assert [(body, redelivered) for body, redelivered, _ in got] == [
        (b"0", True),
        (b"1", True),
        (b"2", True),
        (b"3", True),
    ]
    connection.close()
    assert broker.stop() == 0
    mark = tmp_path / "clean-stop"
    assert mark.exists() and (mark.stat().st_mode & 0o777) == 0o600


def test_sigkill_loses_nothing_confirmed(tmp_path):
    """The crash test: 3 SIGKILL cycles under load (benchmarks/crash_soak runs 50)."""
    summary = crash_cycles(start_broker, str(tmp_path), cycles=3, seed=7)
    assert summary["confirmed"] > 0 and summary["received"] >= summary["confirmed"]


def test_sigterm_writes_everything_and_exits_quickly(tmp_path, name):
    broker = start_broker("--data-dir", str(tmp_path))
    connection = connect(broker)
    channel = connection.channel()
    channel.queue_declare(name, durable=True)
    for i in range(2000):  # unconfirmed: only SIGTERM's flush can save them
        channel.basic_publish("", name, str(i).encode(), PERSISTENT)
    channel.queue_declare(name, durable=True, passive=True)  # all 2000 received
    broker.proc.send_signal(signal.SIGTERM)
    assert broker.proc.wait(timeout=5) == 0
    broker = start_broker("--data-dir", str(tmp_path))
    connection = connect(broker)
    assert connection.channel().queue_declare(name, passive=True).method.message_count == 2000
    connection.close()
    broker.stop()


def damage(path, how: str) -> None:
    if how == "truncated":
        size = path.stat().st_size
        with open(path, "r+b") as handle:
            handle.truncate(size // 2)
    else:  # overwrite pages in the middle with garbage
        with open(path, "r+b") as handle:
            handle.seek(4096 * 3)
            handle.write(os.urandom(4096 * 4))


@pytest.mark.parametrize("how", ["truncated", "garbled"])
def test_damaged_store_starts_with_what_is_intact(tmp_path, name, how):
    broker = start_broker("--data-dir", str(tmp_path))
    connection = connect(broker)
    channel = connection.channel()
    channel.confirm_delivery()
    channel.queue_declare(name, durable=True)
    for i in range(3000):
        channel.basic_publish("", name, b"%d" % i + b"." * 200, PERSISTENT)
    connection.close()
    assert broker.stop() == 0
    store = tmp_path / "broker.sqlite"
    with sqlite3.connect(store) as db:  # fold the WAL into the main file first
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    damage(store, how)

    proc = subprocess.Popen(
        serve_argv("--port", "0", "--data-dir", str(tmp_path)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready = proc.stdout.readline()
        assert "accepting AMQP connections" in ready
        assert proc.stdout.readline().startswith(f"xivo-bus: data in {tmp_path}")
        skipped = proc.stderr.readline()
        while not skipped.startswith("xivo-bus:"):  # log lines come first
            skipped = proc.stderr.readline()
        assert skipped.startswith("xivo-bus: damaged data skipped: damaged database moved to ")
        assert list(tmp_path.glob("broker.sqlite.damaged-*"))
        # it serves: new work goes through
        host, port = ready.split()[-1].rsplit(":", 1)
        connection = pika.BlockingConnection(pika.ConnectionParameters(host, int(port)))
        channel = connection.channel()
        channel.queue_declare(f"{name}-new", durable=True)
        channel.basic_publish("", f"{name}-new", b"fine", PERSISTENT)
        assert channel.basic_get(f"{name}-new", auto_ack=True)[2] == b"fine"
        connection.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0


def test_unusable_data_dir_is_a_clear_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "xivo_bus",
            "serve",
            "--port",
            "0",
            "--data-dir",
            str(blocker / "data"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert result.stderr.startswith(f"xivo-bus: cannot create data directory {blocker}/data: ")
    assert result.stdout == ""


def test_full_store_blocks_publishers_and_loses_nothing(tmp_path, name):
    """With the store at its size limit: no confirm for what is not written, publishers
    are told they are blocked, consumers go on; once they make room, all is confirmed."""
    broker = start_broker("--data-dir", str(tmp_path), "--max-store-size", str(400_000))
    publisher, published, confirmed = fill_store(broker, name)
    assert confirmed < published  # what could not be written is not confirmed
    body = b"z" * 2000

    connection = connect(broker)  # a consumer makes room
    channel = connection.channel()
    got = 0
    publisher.sock.settimeout(10)
    unblocked = False
    while not unblocked or confirmed < published:
        method, _, payload = channel.basic_get(name, auto_ack=True)
        if method is not None:
            assert payload == body
            got += 1
        try:
            publisher.sock.settimeout(0.05)
            _, frame = publisher.recv_frame()
            if isinstance(frame, commands.Basic.Ack):
                confirmed = frame.delivery_tag
            elif isinstance(frame, commands.Connection.Unblocked):
                unblocked = True
        except TimeoutError:
            pass
        assert got <= published
    got += len(get_all(channel, name))
    assert (confirmed, got) == (published, published)
    publisher.close()
    connection.close()
    broker.stop()


def fill_store(broker, queue: str) -> tuple[RawClient, int, int]:
    """Publish persistent messages with confirms into ``queue`` until the store is full
    and the publisher is told it is blocked ("full" in the reason); returns that
    publisher, how many it published and the last confirm it got."""
    publisher = RawClient(broker.host, broker.port, timeout=0.5)
    publisher.handshake(capabilities={"connection.blocked": True, "publisher_confirms": True})
    publisher.open_channel(1)
    publisher.send(1, commands.Queue.Declare(queue=queue, durable=True))
    publisher.expect(commands.Queue.DeclareOk, 1)
    publisher.send(1, commands.Confirm.Select())
    publisher.expect(commands.Confirm.SelectOk, 1)
    body = b"z" * 2000
    confirmed, blocked, published = 0, None, 0
    while blocked is None:  # publish until the broker says it is blocked
        for _ in range(20):
            publisher.publish(1, "", queue, body, commands.Basic.Properties(delivery_mode=2))
            published += 1
        try:
            while True:
                _, frame = publisher.recv_frame()
                if isinstance(frame, commands.Basic.Ack):
                    confirmed = frame.delivery_tag
                elif isinstance(frame, commands.Connection.Blocked):
                    blocked = frame.reason
        except TimeoutError:
            pass
        assert published < 2000, "the store never filled up"
    assert "full" in blocked
    return publisher, published, confirmed


def test_a_consumed_message_is_confirmed_before_its_write(tmp_path, name):
    """As RabbitMQ: a persistent message is confirmed once on disk or once every queue
    that stored it is done with it, whichever comes first. With the store full (nothing
    can be written), what a consumer acks is confirmed all the same."""
    broker = start_broker("--data-dir", str(tmp_path), "--max-store-size", str(400_000))
    consumer_connection = connect(broker)
    consumer = consumer_connection.channel()
    consumer.queue_declare(f"{name}-live", durable=True)
    acked: list[bytes] = []

    def take(channel, method, properties, body):
        channel.basic_ack(method.delivery_tag)
        acked.append(body)

    consumer.basic_consume(f"{name}-live", take)
    filler, _, _ = fill_store(broker, f"{name}-full")

    publisher = RawClient(broker.host, broker.port, timeout=0.2)
    publisher.handshake(capabilities={"connection.blocked": True, "publisher_confirms": True})
    publisher.open_channel(1)
    publisher.send(1, commands.Confirm.Select())
    publisher.expect(commands.Confirm.SelectOk, 1)
    # in one write: under the alarm, the broker stops reading the publisher after what
    # it has read when it sees a publish (it is blocked)
    persistent = commands.Basic.Properties(delivery_mode=2)
    publisher.send_raw(
        b"".join(
            frame.marshal(part, 1)
            for number in range(10)
            for part in (
                commands.Basic.Publish(routing_key=f"{name}-live"),
                header.ContentHeader(0, len(b"%d" % number), persistent),
                pamqp_body.ContentBody(b"%d" % number),
            )
        )
    )
    confirmed: set[int] = set()
    deadline = time.monotonic() + 30
    while not acked or len(confirmed) < len(acked):
        assert time.monotonic() < deadline, f"{len(acked)} acked, confirmed: {confirmed}"
        consumer_connection.process_data_events(time_limit=0.05)
        try:
            while True:
                _, reply = publisher.recv_frame()
                if isinstance(reply, commands.Basic.Ack):
                    first = 1 if reply.multiple else reply.delivery_tag
                    confirmed.update(range(first, reply.delivery_tag + 1))
                assert not isinstance(reply, commands.Connection.Unblocked)
        except TimeoutError:
            pass
    assert confirmed == set(range(1, len(acked) + 1))
    assert acked == [b"%d" % number for number in range(len(acked))]
    publisher.close()
    filler.close()
    consumer_connection.close()
    broker.stop()


def test_exchange_to_exchange_bindings_survive_a_restart(tmp_path, name):
    broker = start_broker("--data-dir", str(tmp_path))
    connection = connect(broker)
    channel = connection.channel()
    channel.exchange_declare(f"{name}-src", "fanout", durable=True)
    channel.exchange_declare(f"{name}-dst", "direct", durable=True)
    channel.exchange_declare(f"{name}-ae", "fanout", durable=True)
    channel.exchange_declare(
        f"{name}-with-ae", "direct", durable=True, arguments={"alternate-exchange": f"{name}-ae"}
    )
    channel.queue_declare(f"{name}-q", durable=True)
    channel.queue_declare(f"{name}-unrouted", durable=True)
    channel.exchange_bind(f"{name}-dst", f"{name}-src")
    channel.queue_bind(f"{name}-q", f"{name}-dst", "k")
    channel.queue_bind(f"{name}-unrouted", f"{name}-ae")
    connection.close()

    broker = restart(broker, tmp_path)
    connection = connect(broker)
    channel = connection.channel()
    channel.confirm_delivery()
    channel.basic_publish(f"{name}-src", "k", b"via e2e", PERSISTENT)
    channel.basic_publish(f"{name}-with-ae", "nobody", b"via ae", PERSISTENT)
    assert [body for body, _, _ in get_all(channel, f"{name}-q")] == [b"via e2e"]
    assert [body for body, _, _ in get_all(channel, f"{name}-unrouted")] == [b"via ae"]
    # deleting the destination exchange removes the binding, on disk too
    channel.exchange_delete(f"{name}-dst")
    connection.close()
    broker = restart(broker, tmp_path)
    connection = connect(broker)
    channel = connection.channel()
    channel.exchange_declare(f"{name}-dst", "direct", durable=True)
    channel.queue_bind(f"{name}-q", f"{name}-dst", "k")
    channel.basic_publish(f"{name}-src", "k", b"not routed", PERSISTENT)
    channel.queue_declare(f"{name}-q", durable=True, passive=True)
    assert get_all(channel, f"{name}-q") == []
    connection.close()
    broker.stop()


def test_bcc_is_stripped_and_cc_kept(broker, name):
    connection = connect(broker)
    channel = connection.channel()
    for suffix in ("a", "b", "c"):
        channel.queue_declare(f"{name}-{suffix}", exclusive=True)
    headers = {"CC": [f"{name}-b"], "BCC": [f"{name}-c"], "other": 1}
    channel.basic_publish("", f"{name}-a", b"m", pika.BasicProperties(headers=headers))
    for suffix in ("a", "b", "c"):
        ((_, _, properties),) = [(b, r, p) for b, r, p in get_all(channel, f"{name}-{suffix}")]
        assert properties.headers == {"CC": [f"{name}-b".encode()], "other": 1} or (
            properties.headers == {"CC": [f"{name}-b"], "other": 1}
        )
    connection.close()


def test_message_ttl_keeps_counting_across_a_restart(tmp_path, name):
    """A stored message keeps its expiry: one whose TTL ran out while the broker was down
    is gone when it comes back; one with time left is still there."""
    broker = start_broker("--data-dir", str(tmp_path))
    connection = connect(broker)
    channel = connection.channel()
    channel.confirm_delivery()
    channel.queue_declare(name, durable=True)
    for body, expiration in ((b"short", "1500"), (b"long", "600000")):
        channel.basic_publish(
            "", name, body, pika.BasicProperties(delivery_mode=2, expiration=expiration)
        )
    connection.close()
    assert broker.stop() == 0
    time.sleep(2)  # "short" runs out while the broker is down
    broker = start_broker("--data-dir", str(tmp_path), "--port", str(broker.port))
    connection = connect(broker)
    got = get_all(connection.channel(), name)
    assert [body for body, _, _ in got] == [b"long"]
    connection.close()
    broker.stop()
