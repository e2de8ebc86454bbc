"""A crash-cycle workload shared by the durability test and the soak benchmark.

A confirmed publisher streams persistent messages into a durable queue while a consumer
acks what it gets; the broker is killed with SIGKILL at random moments and restarted on
the same port and data directory. At the end a consumer drains the queue. Every confirmed
message must have arrived intact; a message seen twice must be flagged redelivered.
"""

from __future__ import annotations

import hashlib
import random
import signal
import struct
import threading
import time
from dataclasses import dataclass, field

from amqp_raw import RawClient
from pamqp import body as pamqp_body
from pamqp import commands, header

PERSISTENT = commands.Basic.Properties(delivery_mode=2, content_type="application/octet-stream")


def message_body(number: int) -> bytes:
    payload = struct.pack(">Q", number) + random.randbytes(random.randrange(0, 2000))
    return payload + hashlib.sha256(payload).digest()


def check_body(body: bytes) -> int:
    payload, digest = body[:-32], body[-32:]
    assert hashlib.sha256(payload).digest() == digest, "message body damaged"
    return struct.unpack(">Q", payload[:8])[0]


@dataclass
class Tally:
    confirmed: set[int] = field(default_factory=set)
    published: int = 0
    # (number, redelivered) in the order the consumer got them
    received: list[tuple[int, bool]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def check(self) -> dict:
        """Every confirmed message arrived; repeats are flagged redelivered."""
        seen: set[int] = set()
        unflagged_repeats = []
        for number, redelivered in self.received:
            if number in seen and not redelivered:
                unflagged_repeats.append(number)
            seen.add(number)
        missing = sorted(self.confirmed - seen)
        assert not missing, f"{len(missing)} confirmed messages lost, e.g. {missing[:10]}"
        assert not unflagged_repeats, f"repeats without redelivered: {unflagged_repeats[:10]}"
        return {
            "published": self.published,
            "confirmed": len(self.confirmed),
            "received": len(self.received),
            "distinct": len(seen),
            "redelivered": sum(1 for _, flag in self.received if flag),
        }


def open_channel(host: str, port: int, queue: str) -> RawClient:
    client = RawClient(host, port, timeout=10)
    client.handshake()
    client.open_channel(1)
    client.send(1, commands.Queue.Declare(queue=queue, durable=True))
    client.expect(commands.Queue.DeclareOk, 1)
    return client


def reconnect(address, queue: str) -> RawClient | None:
    """A new connection to wherever the broker is now; None (after a short wait) while it
    is down."""
    try:
        return open_channel(*address(), queue)
    except OSError:
        time.sleep(0.05)
        return None


def publish_until(stop: threading.Event, address, queue: str, tally: Tally) -> None:
    """Publish with confirms, 50 in flight, reconnecting whenever the broker dies."""
    number = 0
    while not stop.is_set():
        client = reconnect(address, queue)
        if client is None:
            continue
        try:
            client.send(1, commands.Confirm.Select())
            client.expect(commands.Confirm.SelectOk, 1)
            in_flight: dict[int, int] = {}  # delivery tag -> message number
            tag = 0
            while not stop.is_set():
                for _ in range(50 - len(in_flight)):
                    number += 1
                    tag += 1
                    client.publish(1, "", queue, message_body(number), PERSISTENT)
                    in_flight[tag] = number
                    tally.published += 1
                got = client.recv_frame()
                if got is None:
                    break
                ack = got[1]
                assert isinstance(ack, commands.Basic.Ack), ack
                done = (
                    [t for t in in_flight if t <= ack.delivery_tag]
                    if ack.multiple
                    else [ack.delivery_tag]
                )
                with tally.lock:
                    for t in done:
                        tally.confirmed.add(in_flight.pop(t))
        except (OSError, AssertionError):
            pass
        finally:
            client.close()


def consume_until(
    stop: threading.Event, address, queue: str, tally: Tally, ack_every: int = 3
) -> None:
    """Consume with manual acks (acking in batches), reconnecting after each crash."""
    while not stop.is_set():
        client = reconnect(address, queue)
        if client is None:
            continue
        try:
            client.sock.settimeout(0.5)
            client.send(1, commands.Basic.Qos(prefetch_count=200))
            client.expect(commands.Basic.QosOk, 1)
            client.send(1, commands.Basic.Consume(queue=queue, consumer_tag="soak"))
            client.expect(commands.Basic.ConsumeOk, 1)
            deliver = None
            while not stop.is_set():
                try:
                    got = client.recv_frame()
                except TimeoutError:
                    continue
                if got is None:
                    break
                frame = got[1]
                if isinstance(frame, commands.Basic.Deliver):
                    deliver, chunks = frame, []
                elif isinstance(frame, header.ContentHeader):
                    size = frame.body_size
                elif isinstance(frame, pamqp_body.ContentBody):
                    chunks.append(frame.value)
                    if sum(map(len, chunks)) == size:
                        with tally.lock:
                            tally.received.append(
                                (check_body(b"".join(chunks)), deliver.redelivered)
                            )
                        if deliver.delivery_tag % ack_every == 0:
                            client.send(
                                1,
                                commands.Basic.Ack(
                                    delivery_tag=deliver.delivery_tag, multiple=True
                                ),
                            )
        except (OSError, AssertionError):
            pass
        finally:
            client.close()


def drain(host: str, port: int, queue: str, tally: Tally) -> None:
    """Get everything left in the queue, acking it."""
    client = open_channel(host, port, queue)
    try:
        while True:
            client.send(1, commands.Basic.Get(queue=queue, no_ack=True))
            _, frame = client.recv_frame()
            if isinstance(frame, commands.Basic.GetEmpty):
                return
            assert isinstance(frame, commands.Basic.GetOk)
            _, content = client.recv_frame()
            chunks = []
            while sum(map(len, chunks)) < content.body_size:
                chunks.append(client.recv_frame()[1].value)
            tally.received.append((check_body(b"".join(chunks)), frame.redelivered))
    finally:
        client.close()


def crash_cycles(
    start_broker,
    data_dir: str,
    cycles: int,
    queue: str = "crash-test",
    seed: int | None = None,
    report=print,
) -> dict:
    """Run the workload through ``cycles`` SIGKILLs; returns the tally's summary."""
    rng = random.Random(seed)
    broker = start_broker("--data-dir", data_dir)
    port = broker.port
    current = {"broker": broker}

    def address():
        return current["broker"].host, port

    tally = Tally()
    stop = threading.Event()
    workers = [
        threading.Thread(target=publish_until, args=(stop, address, queue, tally)),
        threading.Thread(target=consume_until, args=(stop, address, queue, tally)),
    ]
    for worker in workers:
        worker.start()
    try:
        for cycle in range(1, cycles + 1):
            time.sleep(rng.uniform(0.3, 1.5))
            current["broker"].stop(signal.SIGKILL)
            report(
                f"cycle {cycle}/{cycles}: killed after {tally.published} published, "
                f"{len(tally.confirmed)} confirmed, {len(tally.received)} received"
            )
            current["broker"] = start_broker("--data-dir", data_dir, "--port", str(port))
        time.sleep(0.5)
    finally:
        stop.set()
        for worker in workers:
            worker.join(30)
    try:
        drain(current["broker"].host, port, queue, tally)
    finally:
        current["broker"].stop()
    return tally.check()
