#!/usr/bin/env python3
"""Live fuzzing: many connections send mutated AMQP frames to a real broker for a bounded
time; then the broker must be unharmed.

    .venv/bin/python benchmarks/fuzz.py [--duration 20] [--connections 16] [--streams 40]
                                        [--seed N] [--no-alarm] [--no-timers]

It starts ``xivo-bus serve`` on a free port (its own data directory, a memory limit
above what it uses, a 2 s consumer timeout) and runs ``--connections`` clients, each
playing up to ``--streams`` sessions one after the other: a handshake (now and then
mutated), then up to 40 frames drawn from every client method with odd field values
(field tables of every value type, strings that are not UTF-8, integers at their
limits), publishes with odd properties and headers, and mutations of all of them
(flipped bits, cut, padded, wrong sizes, frame ends, types and channels). Each client
answers closes as a client does and notes their reply codes.

Meanwhile a well-behaved connection asked for 1 s heartbeats and counts the broker's.
Afterwards:

- the broker still accepts connections; a pika client publishes 200 messages with
  publisher confirms and consumes them all;
- a message TTL still expires into a dead-letter queue (the queues' timers), and an
  unacknowledged delivery is still closed by the consumer timeout (406) (unless
  ``--no-timers``);
- the memory alarm still blocks a publisher past the limit (connection.blocked) and
  lets it go once the queue is purged (unless ``--no-alarm``);
- its log has no "internal error" (a 541 INTERNAL_ERROR close is a bug of ours).

Prints progress each second, then RSS before and after, the closes by reply code, and
the checks; exits non-zero when one failed.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import logging
import os
import random
import re
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pika
from pamqp import commands

READY = re.compile(r"accepting AMQP connections on (\S+):(\d+)")
PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
HEARTBEAT = b"\x08\x00\x00\x00\x00\x00\x00\xce"
MIB = 1 << 20

# -- the broker ------------------------------------------------------------------------------


class Broker:
    def __init__(self, data_dir: str, log_path: Path, memory_limit: int | None):
        argv = [
            sys.executable,
            "-m",
            "xivo_bus",
            "--log-level",
            "INFO",
            "serve",
            "--port",
            "0",
            "--data-dir",
            data_dir,
            "--no-cti",
            "--no-prometheus",
            "--no-management",
            "--consumer-timeout",
            "2000",
        ]
        if memory_limit:
            argv += ["--memory-limit", str(memory_limit)]
        self.log_path = log_path
        self.log = log_path.open("w")
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self.log, text=True)
        line = self.proc.stdout.readline()
        match = READY.search(line)
        if match is None:
            self.proc.kill()
            raise RuntimeError(f"the broker did not start: {line!r}; see {log_path}")
        self.host, self.port = match.group(1).strip("[]"), int(match.group(2))

    def rss(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()

    def internal_errors(self) -> list[str]:
        return [line for line in self.log_path.read_text().splitlines() if "internal error" in line]


def rss_of_self_limit(rss: int) -> int:
    """The memory limit to start with: well above what the broker uses at rest (found by
    a first start), so that only the alarm check reaches it."""
    return rss + 160 * MIB


# -- frames ----------------------------------------------------------------------------------


def short(raw: bytes) -> bytes:
    return bytes((len(raw),)) + raw[:255]


def long(raw: bytes) -> bytes:
    return struct.pack(">I", len(raw)) + raw


def frame(kind: int, channel: int, payload: bytes, end: int = 0xCE) -> bytes:
    return struct.pack(">BHI", kind, channel, len(payload)) + payload + bytes((end,))


def method(channel: int, payload: bytes) -> bytes:
    return frame(1, channel, payload)


def encoded(channel: int, value) -> bytes:
    """A well-formed method, as pamqp writes it."""
    return method(channel, struct.pack(">I", value.index) + value.marshal())


NAMES = ["", "q", "q2", "x", "amq.direct", "amq.topic", "amq.headers", "amq.fanout", "xivo-cti"]
NAMES += ["amq.rabbitmq.reply-to", "amq.gen-z", "dl", "fuzz.ttl", "#", "a.*"]
WORDS = ["classic", "quorum", "stream", "all", "any", "drop-head", "reject-publish", "lazy"]
WORDS += ["reject-publish-dlx", "direct", "fanout", "topic", "headers", "guest", "60000"]
KEYS = [
    "x-expires",
    "x-message-ttl",
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-max-length",
    "x-max-length-bytes",
    "x-max-priority",
    "x-overflow",
    "x-queue-mode",
    "x-queue-version",
    "x-single-active-consumer",
    "x-queue-type",
    "x-max-age",
    "x-delivery-limit",
    "alternate-exchange",
    "x-match",
    "x-priority",
    "x-cancel-on-ha-failover",
    "CC",
    "BCC",
    "x-death",
    "queue",
    "reason",
    "count",
    "capabilities",
    "consumer_cancel_notify",
    "connection.blocked",
]


class Generator:
    """Random AMQP traffic, odd and mutated, from a seeded ``random.Random``."""

    def __init__(self, seed: int):
        self.r = random.Random(seed)

    # values
    def text(self) -> bytes:
        r = self.r
        choice = r.random()
        if choice < 0.5:
            return r.choice(NAMES + WORDS).encode()
        if choice < 0.8:
            return "".join(chr(r.randrange(32, 0x3000)) for _ in range(r.randrange(12))).encode()
        return b"\xff" + r.randbytes(r.randrange(6))  # not UTF-8

    def value(self, depth: int = 0) -> bytes:
        r = self.r
        kind = r.choice("tbBsuIilLfdDSxTVAFSSII")
        if kind in "AF" and depth > 2:
            kind = "V"
        if kind == "t":
            return b"t" + bytes((r.choice([0, 1, 2, 255]),))
        if kind in "bBsuIilL":
            fmt = {"b": ">b", "B": ">B", "s": ">h", "u": ">H", "I": ">i", "i": ">I"}
            fmt.update({"l": ">q", "L": ">Q"})
            size = struct.calcsize(fmt[kind])
            raw = r.choice([bytes(size), b"\xff" * size, r.randbytes(size)])
            if kind in "Ii" and r.random() < 0.6:
                raw = struct.pack(fmt[kind], r.choice([0, 1, 5, 100, 1000, 60000]))
            return kind.encode() + raw
        if kind in "fd":
            return kind.encode() + r.randbytes(4 if kind == "f" else 8)
        if kind == "D":
            return b"D" + r.randbytes(5)
        if kind == "S":
            return b"S" + long(self.text())
        if kind == "x":
            return b"x" + long(r.randbytes(r.randrange(8)))
        if kind == "T":
            return b"T" + struct.pack(">Q", r.choice([0, 1700000000, 2**63, 2**64 - 1]))
        if kind == "V":
            return b"V"
        if kind == "A":
            return b"A" + long(b"".join(self.value(depth + 1) for _ in range(r.randrange(4))))
        return b"F" + self.table(depth + 1)

    def table(self, depth: int = 0, keys: list[str] | None = None) -> bytes:
        r = self.r
        pairs = []
        for _ in range(r.randrange(4)):
            key = r.choice(keys or KEYS).encode() if r.random() < 0.8 else self.text()
            pairs.append(short(key) + self.value(depth))
        return long(b"".join(pairs))

    # methods
    def payload(self, cls) -> bytes:
        r = self.r
        out = [struct.pack(">I", cls.index)]
        bits: list[int] = []
        for name in cls.__slots__:
            kind = cls.amqp_type(name)
            if kind == "bit":
                bits.append(r.random() < 0.3)
                continue
            if bits:
                out.append(bytes((sum(bit << i for i, bit in enumerate(bits)),)))
                bits = []
            if kind == "shortstr":
                if name == "exchange_type":
                    out.append(short(r.choice(["direct", "fanout", "topic", "headers"]).encode()))
                else:
                    out.append(short(self.text() if r.random() < 0.3 else r.choice(NAMES).encode()))
            elif kind == "longstr":
                out.append(long(self.text()))
            elif kind == "table":
                out.append(self.table())
            elif kind == "octet":
                out.append(bytes((r.randrange(256),)))
            elif kind == "short":
                out.append(struct.pack(">H", r.choice([0, 0, 1, 5, 65535, r.randrange(65536)])))
            elif kind == "long":
                out.append(struct.pack(">I", r.choice([0, 0, 1, 2**32 - 1, r.randrange(2**32)])))
            else:
                out.append(struct.pack(">Q", r.choice([0, 1, 2, 3, 2**64 - 1, r.randrange(2**64)])))
        if bits:
            out.append(bytes((sum(bit << i for i, bit in enumerate(bits)),)))
        return b"".join(out)

    def properties(self) -> bytes:
        r = self.r
        flags, values = 0, []
        layout = [(0x8000, "s"), (0x4000, "s"), (0x2000, "t"), (0x1000, 1), (0x0800, 1)]
        layout += [(0x0400, "s"), (0x0200, "s"), (0x0100, "e"), (0x0080, "s"), (0x0040, 8)]
        layout += [(0x0020, "s"), (0x0010, "u"), (0x0008, "s"), (0x0004, "s")]
        for flag, kind in layout:
            if r.random() > (0.6 if kind == "t" else 0.2):
                continue
            flags |= flag
            if kind == "s":
                values.append(short(self.text()))
            elif kind == "e":
                values.append(short(r.choice([b"0", b"100", b"60000", b"x", self.text()])))
            elif kind == "u":
                values.append(short(r.choice([b"guest", b"guest", self.text()])))
            elif kind == "t":
                values.append(self.table(keys=["CC", "BCC", "x-death", "a"]))
            elif kind == 1:
                values.append(bytes((r.choice([0, 1, 2, 9, 255]),)))
            else:
                values.append(r.randbytes(8))
        return struct.pack(">H", flags) + b"".join(values)

    def publish(self, channel: int) -> bytes:
        r = self.r
        exchange = r.choice(["", "", "amq.direct", "amq.headers", "amq.fanout", "x"]).encode()
        key = r.choice(["q", "q2", "dl", "fuzz.ttl", "", "a.b"]).encode()
        body = r.randbytes(r.choice([0, 1, 10, 200]))
        args = struct.pack(">IH", 0x3C0028, 0) + short(exchange) + short(key)
        out = method(channel, args + bytes((r.choice([0, 0, 0, 1, 2]),)))
        header = struct.pack(">HHQ", 60, 0, len(body)) + self.properties()
        out += frame(2, channel, header)
        if body:
            out += frame(3, channel, body)
        return out

    def mutate(self, data: bytes) -> bytes:
        r = self.r
        data = bytearray(data)
        how = r.randrange(8)
        at = r.randrange(len(data) + 1)
        if how == 0 and data:
            data[min(at, len(data) - 1)] ^= 1 << r.randrange(8)
        elif how == 1:
            del data[at:]
        elif how == 2:
            data[at:at] = r.randbytes(r.randrange(1, 6))
        elif how == 3 and len(data) > 7:
            data[3:7] = struct.pack(">I", r.choice([0, 1, len(data), 2**31, 2**32 - 1]))
        elif how == 4 and data:
            data[-1] = r.randrange(256)  # the frame end
        elif how == 5 and data:
            data[0] = r.choice([0, 2, 3, 4, 8, 9, 255])  # the frame type
        elif how == 6 and len(data) > 3:
            data[1:3] = struct.pack(">H", r.choice([0, 2, 3, 2047, 65535]))  # the channel
        else:
            del data[at : at + r.randrange(1, 9)]
        return bytes(data)

    def handshake(self) -> list[bytes]:
        r = self.r
        start_ok = commands.Connection.StartOk(
            client_properties={"capabilities": {"consumer_cancel_notify": True}},
            mechanism="PLAIN",
            response="\0guest\0guest",
        )
        frames = [
            PROTOCOL_HEADER,
            encoded(0, start_ok),
            encoded(0, commands.Connection.TuneOk(channel_max=2047, frame_max=131072, heartbeat=0)),
            encoded(0, commands.Connection.Open(virtual_host="/")),
            encoded(1, commands.Channel.Open()),
            encoded(2, commands.Channel.Open()),
        ]
        if r.random() < 0.15:  # the handshake itself, odd
            at = r.randrange(1, len(frames))
            if r.random() < 0.5:
                frames[at] = self.mutate(frames[at])
            else:
                classes = [c for i, c in commands.INDEX_MAPPING.items() if i >> 16 == 10]
                frames[at] = method(0, self.payload(r.choice(classes)))
        return frames

    def session(self) -> list[bytes]:
        r = self.r
        common = [
            commands.Exchange.Declare,
            commands.Exchange.Delete,
            commands.Exchange.Bind,
            commands.Queue.Declare,
            commands.Queue.Declare,
            commands.Queue.Bind,
            commands.Queue.Unbind,
            commands.Queue.Purge,
            commands.Queue.Delete,
            commands.Basic.Qos,
            commands.Basic.Consume,
            commands.Basic.Cancel,
            commands.Basic.Get,
            commands.Basic.Ack,
            commands.Basic.Nack,
            commands.Basic.Reject,
            commands.Basic.Recover,
            commands.Confirm.Select,
            commands.Tx.Select,
            commands.Tx.Commit,
        ]
        every = [c for i, c in commands.INDEX_MAPPING.items() if c is not commands.Basic.Publish]
        out = self.handshake()
        for _ in range(r.randrange(1, 40)):
            channel = r.choice([1, 1, 1, 2, 2, 3])
            choice = r.random()
            if choice < 0.35:
                data = self.publish(channel)
            elif choice < 0.9:
                data = method(channel, self.payload(r.choice(common)))
            elif choice < 0.95:
                data = method(r.choice([0, channel]), self.payload(r.choice(every)))
            elif choice < 0.97:
                data = HEARTBEAT
            else:
                data = r.randbytes(r.randrange(1, 20))
            if r.random() < 0.12:
                data = self.mutate(data)
            out.append(data)
        return out


# -- a fuzzing client ------------------------------------------------------------------------


class Tally:
    def __init__(self) -> None:
        self.sessions = 0
        self.frames = 0
        self.closes: collections.Counter = collections.Counter()  # (kind, code)
        self.dropped = 0  # the socket closed without a connection.close
        self.refused = 0  # could not connect
        self.unanswered = 0  # no close-ok to our connection.close within 1 s
        self.reset = 0  # writing failed: the broker had closed the socket
        self.errors: collections.Counter = collections.Counter()


async def read_frames(reader: asyncio.StreamReader):
    """(type, channel, payload) of each frame; None at EOF."""
    while True:
        try:
            head = await reader.readexactly(7)
        except (asyncio.IncompleteReadError, ConnectionError):
            yield None
            return
        if head.startswith(b"AMQP"):  # the broker's answer to a wrong protocol header
            yield None
            return
        kind, channel, size = struct.unpack(">BHI", head)
        try:
            payload = await reader.readexactly(size + 1)
        except (asyncio.IncompleteReadError, ConnectionError):
            yield None
            return
        yield kind, channel, payload[:-1]


async def play(host: str, port: int, frames: list[bytes], tally: Tally) -> None:
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        tally.refused += 1
        return
    closed = asyncio.Event()

    async def listen() -> None:
        async for item in read_frames(reader):
            if item is None:
                if not closed.is_set():
                    tally.dropped += 1
                break
            kind, channel, payload = item
            if kind != 1 or len(payload) < 4:
                continue
            index = struct.unpack_from(">I", payload)[0]
            code = struct.unpack_from(">H", payload, 4)[0] if len(payload) >= 6 else 0
            if index == 0x000A0032:  # connection.close
                tally.closes["connection", code] += 1
                writer.write(method(0, struct.pack(">I", 0x000A0033)))
                closed.set()
                break
            if index == 0x000A0033:  # close-ok: our connection.close was answered
                closed.set()
                break
            if index == 0x00140028:  # channel.close: close-ok, open again
                tally.closes["channel", code] += 1
                writer.write(method(channel, struct.pack(">I", 0x00140029)))
                writer.write(encoded(channel, commands.Channel.Open()))
        closed.set()

    listener = asyncio.create_task(listen())
    try:
        for data in frames:
            if closed.is_set():
                break
            writer.write(data)
            tally.frames += 1
            await writer.drain()
            await asyncio.sleep(0)
        if not closed.is_set():
            writer.write(
                encoded(0, commands.Connection.Close(reply_code=200, class_id=0, method_id=0))
            )
            await asyncio.wait_for(closed.wait(), 1)
    except TimeoutError:
        tally.unanswered += 1  # e.g. the broker awaits the rest of a frame cut short
    except OSError:
        tally.reset += 1  # the broker closed the socket first (after a framing error)
    finally:
        listener.cancel()
        writer.close()
        tally.sessions += 1


async def fuzz_client(host, port, generator: Generator, streams: int, deadline: float, tally):
    for _ in range(streams):
        if time.monotonic() > deadline:
            return
        await play(host, port, generator.session(), tally)


# -- the well-behaved ------------------------------------------------------------------------


class Incoming:
    """The frames a connection receives, read as they come (``next`` may time out
    without losing any)."""

    def __init__(self, reader: asyncio.StreamReader):
        self.queue: asyncio.Queue = asyncio.Queue()
        self.task = asyncio.create_task(self._pump(reader))

    async def _pump(self, reader: asyncio.StreamReader) -> None:
        async for item in read_frames(reader):
            await self.queue.put(item)
            if item is None:
                return

    async def next(self, timeout: float):
        """(type, channel, payload), None at EOF; ``TimeoutError`` after ``timeout``."""
        return await asyncio.wait_for(self.queue.get(), timeout)


async def open_raw(host: str, port: int, heartbeat: int = 0, blocked: bool = False):
    """A raw connection through the handshake and channel 1: (reader, writer, frames)."""
    reader, writer = await asyncio.open_connection(host, port)
    capabilities = {"connection.blocked": blocked, "consumer_cancel_notify": True}
    writer.write(PROTOCOL_HEADER)
    writer.write(
        encoded(
            0,
            commands.Connection.StartOk(
                client_properties={"capabilities": capabilities},
                mechanism="PLAIN",
                response="\0guest\0guest",
            ),
        )
    )
    writer.write(
        encoded(
            0, commands.Connection.TuneOk(channel_max=2047, frame_max=131072, heartbeat=heartbeat)
        )
    )
    writer.write(encoded(0, commands.Connection.Open(virtual_host="/")))
    writer.write(encoded(1, commands.Channel.Open()))
    return reader, writer, Incoming(reader)


async def heartbeat_watch(host: str, port: int, stop: asyncio.Event) -> tuple[int, float]:
    """Heartbeats received from the broker on an idle connection asking for 1 s ones
    (sent every 0.5 s), and for how long it watched."""
    reader, writer, incoming = await open_raw(host, port, heartbeat=1)
    started = time.monotonic()
    count = 0

    async def beat() -> None:
        while not stop.is_set():
            writer.write(HEARTBEAT)
            await asyncio.sleep(0.4)

    beating = asyncio.create_task(beat())
    try:
        while not stop.is_set():
            try:
                item = await incoming.next(0.5)
            except TimeoutError:
                continue
            if item is None:
                break
            if item[0] == 8:
                count += 1
    finally:
        beating.cancel()
        writer.close()
    return count, time.monotonic() - started


def pika_round_trip(host: str, port: int, count: int = 200) -> str:
    """Publish with confirms, consume them all; '' when all came back."""
    connection = pika.BlockingConnection(pika.ConnectionParameters(host, port, heartbeat=0))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        queue = channel.queue_declare("", exclusive=True).method.queue
        for number in range(count):
            channel.basic_publish(
                "",
                queue,
                str(number).encode(),
                pika.BasicProperties(delivery_mode=2),
                mandatory=True,
            )
        got = []
        for _method, _properties, body in channel.consume(queue, inactivity_timeout=5):
            if body is None:
                break
            got.append(int(body))
            if len(got) == count:
                break
        channel.cancel()
        if got != list(range(count)):
            return f"consumed {len(got)} of {count} confirmed messages"
        return ""
    finally:
        connection.close()


async def expect_method(incoming, index: int, timeout: float):
    """The payload of the next method frame with ``index`` (others passed over)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            item = await incoming.next(deadline - time.monotonic())
        except TimeoutError:
            return None
        if item is None:
            return None
        kind, _channel, payload = item
        if kind == 1 and struct.unpack_from(">I", payload)[0] == index:
            return payload
    return None


def _declare(queue: str, **arguments) -> commands.Queue.Declare:
    return commands.Queue.Declare(queue=queue, arguments=arguments)


async def timers_check(host: str, port: int) -> list[str]:
    """A message TTL dead-letters on time; an unacked delivery meets the consumer
    timeout (2 s)."""
    failures = []
    reader, writer, incoming = await open_raw(host, port)
    try:
        writer.write(encoded(1, _declare("fuzz.check.dl")))
        ttl = _declare(
            "fuzz.check.ttl",
            **{
                "x-message-ttl": 200,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": "fuzz.check.dl",
            },
        )
        writer.write(encoded(1, ttl))
        writer.write(encoded(1, commands.Queue.Purge(queue="fuzz.check.dl")))
        await expect_method(incoming, 0x0032001F, 5)  # purge-ok
        args = struct.pack(">IH", 0x3C0028, 0) + short(b"") + short(b"fuzz.check.ttl") + b"\0"
        writer.write(method(1, args) + frame(2, 1, struct.pack(">HHQH", 60, 0, 2, 0)))
        writer.write(frame(3, 1, b"ok"))
        await asyncio.sleep(1.0)
        writer.write(encoded(1, commands.Basic.Get(queue="fuzz.check.dl", no_ack=False)))
        if await expect_method(incoming, 0x003C0047, 5) is None:  # get-ok
            failures.append("a message TTL did not dead-letter")
        started = time.monotonic()
        # the delivery just got stays unacked: the consumer timeout closes the channel
        payload = await expect_method(incoming, 0x00140028, 10)
        if payload is None or struct.unpack_from(">H", payload, 4)[0] != 406:
            failures.append("the consumer timeout did not close the channel")
        elif time.monotonic() - started > 6:
            failures.append("the consumer timeout came late")
    finally:
        writer.close()
    return failures


async def alarm_check(host: str, port: int) -> list[str]:
    """Publish 1 MiB bodies until the memory alarm blocks the publisher; purge; the
    alarm clears."""
    reader, writer, incoming = await open_raw(host, port, blocked=True)
    body = b"m" * 1_000_000
    try:
        writer.write(encoded(1, _declare("fuzz.check.alarm")))
        if await expect_method(incoming, 0x0032000B, 5) is None:
            return ["cannot declare the alarm check's queue"]
        blocked = None
        for _ in range(600):
            args = struct.pack(">IH", 0x3C0028, 0) + short(b"") + short(b"fuzz.check.alarm")
            writer.write(method(1, args + b"\0"))
            writer.write(frame(2, 1, struct.pack(">HHQH", 60, 0, len(body), 0)))
            writer.write(frame(3, 1, body[:131000]))
            writer.write(frame(3, 1, body[131000:262000]))
            writer.write(frame(3, 1, body[262000:393000]))
            writer.write(frame(3, 1, body[393000:524000]))
            writer.write(frame(3, 1, body[524000:655000]))
            writer.write(frame(3, 1, body[655000:786000]))
            writer.write(frame(3, 1, body[786000:917000]))
            writer.write(frame(3, 1, body[917000:]))
            try:
                await asyncio.wait_for(writer.drain(), 0.2)
            except TimeoutError:
                pass  # not read any more: blocked
            blocked = await expect_method(incoming, 0x000A003C, 0.05)
            if blocked is not None:
                break
        if blocked is None:
            return ["600 MiB published and no memory alarm"]
        other, other_writer, other_incoming = await open_raw(host, port)
        other_writer.write(encoded(1, commands.Queue.Purge(queue="fuzz.check.alarm")))
        unblocked = await expect_method(incoming, 0x000A003D, 20)
        other_writer.write(encoded(1, commands.Queue.Delete(queue="fuzz.check.alarm")))
        other_writer.close()
        return [] if unblocked is not None else ["the memory alarm did not clear"]
    finally:
        writer.close()


# -- the run ---------------------------------------------------------------------------------


async def fuzz(broker: Broker, args, report) -> Tally:
    tally = Tally()
    deadline = time.monotonic() + args.duration
    stop = asyncio.Event()
    watch = asyncio.create_task(heartbeat_watch(broker.host, broker.port, stop))
    clients = [
        asyncio.create_task(
            fuzz_client(
                broker.host,
                broker.port,
                Generator(args.seed * 1000 + number),
                args.streams,
                deadline,
                tally,
            )
        )
        for number in range(args.connections)
    ]
    started = time.monotonic()
    while not all(client.done() for client in clients):
        await asyncio.sleep(1)
        codes = ", ".join(f"{k[0][:4]} {k[1]}: {v}" for k, v in sorted(tally.closes.items()))
        report(
            f"{time.monotonic() - started:5.1f} s  sessions {tally.sessions}  "
            f"frames {tally.frames}  rss {broker.rss() // MIB} MiB  closes [{codes}]"
        )
    stop.set()
    tally.heartbeats, tally.watched = await watch
    for client in clients:
        if client.exception() is not None:
            tally.errors[repr(client.exception())] += 1
    return tally


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of fuzzing")
    parser.add_argument("--connections", type=int, default=16, help="clients at once")
    parser.add_argument("--streams", type=int, default=100_000, help="sessions per client at most")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-alarm", action="store_true", help="skip the memory alarm check")
    parser.add_argument(
        "--no-timers", action="store_true", help="skip the TTL and consumer timeout checks"
    )
    args = parser.parse_args()

    def report(line: str) -> None:
        print(line, flush=True)

    logging.getLogger("asyncio").setLevel(logging.ERROR)  # writes to sockets the broker cut

    failures = []
    with tempfile.TemporaryDirectory(prefix="xivo-bus-fuzz-") as data_dir:
        log_path = Path(data_dir) / "broker.log"
        limit = None
        if not args.no_alarm:  # a first start tells what the broker uses at rest
            probe = Broker(os.path.join(data_dir, "probe"), Path(data_dir) / "probe.log", None)
            time.sleep(0.5)
            limit = rss_of_self_limit(probe.rss())
            probe.stop()
        broker = Broker(os.path.join(data_dir, "store"), log_path, limit)
        try:
            rss_before = broker.rss()
            report(
                f"broker on {broker.host}:{broker.port}, rss {rss_before // MIB} MiB, "
                f"memory limit {limit // MIB if limit else '-'} MiB; fuzzing for "
                f"{args.duration:g} s with {args.connections} connections"
            )
            tally = asyncio.run(fuzz(broker, args, report))
            rss_after = broker.rss()
            expected = tally.watched  # one each 0.5 to 1 s
            report(
                f"heartbeats of a well-behaved connection: {tally.heartbeats} in "
                f"{tally.watched:.1f} s (one per 0.5 to 1 s expected)"
            )
            if tally.heartbeats < expected * 0.7:
                failures.append(f"only {tally.heartbeats} heartbeats in {tally.watched:.1f} s")
            internal = tally.closes.get(("connection", 541), 0)
            internal += tally.closes.get(("channel", 541), 0)
            if internal:
                failures.append(f"{internal} closes with 541 INTERNAL_ERROR")
            problem = pika_round_trip(broker.host, broker.port)
            report(f"pika publish/consume with confirms: {problem or 'ok, 200 of 200'}")
            failures += [problem] if problem else []
            if not args.no_timers:
                timers = asyncio.run(timers_check(broker.host, broker.port))
                report(f"TTL dead-lettering and consumer timeout: {'; '.join(timers) or 'ok'}")
                failures += timers
            if limit:
                alarm = asyncio.run(alarm_check(broker.host, broker.port))
                report(f"memory alarm blocks and clears: {'; '.join(alarm) or 'ok'}")
                failures += alarm
            rss_end = broker.rss()
            bugs = broker.internal_errors()
            if bugs:
                failures.append(f"{len(bugs)} internal errors in the broker's log")
            if broker.proc.poll() is not None:
                failures.append(f"the broker exited with {broker.proc.returncode}")
        finally:
            broker.stop()
            log_tail = log_path.read_text().splitlines()[-5:] if failures else []
    closes = collections.Counter()
    for (kind, code), count in tally.closes.items():
        closes[f"{kind}.close {code}"] += count
    report(
        f"\n{tally.sessions} sessions, {tally.frames} frames; "
        f"{sum(tally.closes.values())} closes, {tally.dropped} sockets closed without a "
        f"connection.close, {tally.reset} reset while writing, {tally.unanswered} "
        f"connection.close unanswered in 1 s, {tally.refused} refused connections, "
        f"client errors {dict(tally.errors) or 'none'}"
    )
    for name, count in sorted(closes.items()):
        report(f"  {name}: {count}")
    report(
        f"rss: {rss_before // MIB} MiB before, {rss_after // MIB} MiB after fuzzing, "
        f"{rss_end // MIB} MiB at the end"
    )
    if failures:
        report("FAILED: " + "; ".join(failures))
        for line in log_tail:
            report(f"  log: {line}")
        return 1
    report("the broker is unharmed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
