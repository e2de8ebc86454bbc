"""Load generator worker processes: producers, consumers and connection openers.

Each worker is a process of its own running one uvloop event loop with its share of the
connections, so the generator can use every core. A worker tells the parent it is ready,
waits for the shared ``go`` event, does its job, keeps its progress counter up to date
and sends back one result (counts, timestamps, latency samples and its own CPU time).
"""

from __future__ import annotations

import asyncio
import itertools
import resource
import struct
import time
from dataclasses import dataclass, field

from xivo_bus.amqp import properties as amqp_properties
from xivo_bus.bench.wire import Client, publish_frames, publish_prefix

PROGRESS_INTERVAL = 0.1
BATCH_BYTES = 256 * 1024  # largest write of several publishes
_timestamp = struct.Struct(">Q")


@dataclass
class ProducerSpec:
    connections: int
    exchange: str
    routing_keys: list[str]  # published to in turn, message by message
    size: int
    persistent: bool = False
    confirm_window: int = 0  # 0: no publisher confirms
    rate: float = 0.0  # messages/s per connection; 0: as fast as the broker takes them
    duration: float = 10.0
    messages: int = 0  # per connection (or the list's); 0: until the duration is over
    batch: int = 64  # most publishes per write (fewer for large bodies, see BATCH_BYTES)
    idle_timeout: float = 10.0  # stop waiting for confirms after this long without one
    per_connection: list[int] | None = None  # messages of each connection, overrides


@dataclass
class ConsumerSpec:
    consumers: list[list[str]]  # one connection per consumer, the queues it consumes
    prefetch: int = 0
    manual_ack: bool = True
    ack_every: int = 1
    latency: bool = False


@dataclass
class ConnectionSpec:
    idle: int = 0  # connections opened and held until stop
    churn_concurrency: int = 0  # parallel open/close loops until the duration is over
    duration: float = 0.0


@dataclass
class Job:
    url: str
    index: int
    producer: ProducerSpec | None = None
    consumer: ConsumerSpec | None = None
    connections: ConnectionSpec | None = None
    extra: dict = field(default_factory=dict)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main(job: Job, progress, go, stop, results) -> None:
    """Process entry point."""
    raise_fd_limit()
    try:
        import uvloop
    except ImportError:
        runner = asyncio.run
    else:
        runner = uvloop.run
    try:
        result = runner(_Worker(job, progress, go, stop, results).run())
    except Exception as error:  # reported to the parent, which stops the run
        results.put(("error", job.index, f"{type(error).__name__}: {error}"))
        return
    results.put(("done", job.index, result))


class _Worker:
    def __init__(self, job: Job, progress, go, stop, results):
        self.job = job
        self.progress = progress
        self.go = go
        self.stop = stop
        self.results = results
        self.count = 0  # messages sent or received, connections cycled
        self.clients: list[Client] = []
        self.sent: list[tuple[Client, int]] = []  # producers: what each connection sent
        self.last_send = 0.0

    async def run(self) -> dict:
        job = self.job
        if job.consumer is not None:
            await self._open_consumers(job.consumer)
        if job.producer is not None:
            self.clients = [await Client.connect(job.url) for _ in range(job.producer.connections)]
            if job.producer.confirm_window:
                for client in self.clients:
                    await self._confirm_select(client)
        if job.connections is not None and job.connections.idle:
            await self._open_idle(job.connections.idle)
        self.results.put(("ready", job.index, None))
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.go.wait)
        reporter = asyncio.create_task(self._report())
        started, cpu_start = time.monotonic(), cpu_seconds()
        result: dict = {}
        if job.producer is not None:
            result = await self._produce(job.producer)
            await asyncio.gather(*(self._settle(client, job.producer) for client in self.clients))
        elif job.connections is not None and job.connections.churn_concurrency:
            result = await self._churn(job.connections)
        else:
            result = await self._until_stopped()
        result["cpu_s"] = cpu_seconds() - cpu_start
        result["wall_s"] = time.monotonic() - started
        result["count"] = self.count
        reporter.cancel()
        self.progress[job.index] = self.count
        await asyncio.gather(*(client.close() for client in self.clients))
        return result

    async def _report(self) -> None:
        while True:
            self.progress[self.job.index] = self.count
            await asyncio.sleep(PROGRESS_INTERVAL)

    async def _wait_stop(self) -> None:
        while not self.stop.is_set():
            self._check_clients()
            await asyncio.sleep(0.05)

    def _check_clients(self) -> None:
        """Fail the run as soon as the broker closes one of our channels (the parent
        reports it), instead of waiting for deliveries that cannot come."""
        for client in self.clients:
            if client.failure is not None:
                raise client.failure

    # -- consumers ----------------------------------------------------------------------

    async def _open_consumers(self, spec: ConsumerSpec) -> None:
        from pamqp import commands

        self.samples: list[int] = []
        self.first_receive = self.last_receive = 0.0
        for queues in spec.consumers:
            client = await Client.connect(self.job.url)
            client.manual_ack = spec.manual_ack
            client.ack_every = spec.ack_every
            client.on_delivered = self._delivered
            if spec.latency:
                client.want_bodies = True
                client.on_body = self._latency_sample
            if spec.prefetch:
                await client.call(
                    commands.Basic.Qos(prefetch_count=spec.prefetch), commands.Basic.QosOk
                )
            for queue in queues:
                await client.call(
                    commands.Basic.Consume(queue=queue, no_ack=not spec.manual_ack),
                    commands.Basic.ConsumeOk,
                )
            self.clients.append(client)

    def _delivered(self, count: int) -> None:
        now = time.monotonic()
        if not self.count:
            self.first_receive = now
        self.last_receive = now
        self.count += count

    def _latency_sample(self, head: bytes) -> None:
        self.samples.append(time.monotonic_ns() - _timestamp.unpack(head)[0])

    async def _until_stopped(self) -> dict:
        await self._wait_stop()
        for client in self.clients:
            client.flush_acks()
        result: dict = {"received": self.count}
        if self.job.consumer is not None:
            result["first_receive"] = self.first_receive
            result["last_receive"] = self.last_receive
            result["latency_ns"] = self.samples
        return result

    # -- producers ----------------------------------------------------------------------

    async def _confirm_select(self, client: Client) -> None:
        from pamqp import commands

        await client.call(commands.Confirm.Select(), commands.Confirm.SelectOk)

    async def _produce(self, spec: ProducerSpec) -> dict:
        props = _properties(spec.persistent)
        started = time.monotonic()
        limits = spec.per_connection or [spec.messages] * len(self.clients)
        publish = self._paced if spec.rate else self._flood
        await asyncio.gather(
            *(
                publish(client, spec, props, started, limit)
                for client, limit in zip(self.clients, limits, strict=True)
            )
        )
        # Every confirm in before reporting, so that sent counts what the broker took.
        if spec.confirm_window:
            await asyncio.gather(
                *(self._confirmed(client, sent, spec.idle_timeout) for client, sent in self.sent)
            )
        return {
            "sent": self.count,
            "first_send": started,
            "last_send": self.last_send,
            "confirmed": sum(client.confirmed for client in self.clients),
            "nacked": sum(client.nacked for client in self.clients),
            "blocked": sum(client.blocked for client in self.clients),
            "blocked_s": round(sum(client.blocked_s for client in self.clients), 3),
        }

    async def _flood(
        self, client: Client, spec: ProducerSpec, props: bytes, started: float, messages: int
    ):
        """Publish as fast as the broker (and the confirm window) allows."""
        body = b"x" * spec.size
        ones = [
            publish_frames(1, spec.exchange, key, props, body, client.frame_max)
            for key in spec.routing_keys
        ]
        batch = max(1, min(spec.batch, BATCH_BYTES // len(ones[0])))
        if spec.confirm_window:
            batch = max(1, min(batch, spec.confirm_window // 2))
        chunks = _rotations(ones, batch)
        turns = len(ones)
        limit = messages or float("inf")
        deadline = started + spec.duration if not messages else float("inf")
        window = spec.confirm_window
        waiter = _Waiter(client)
        transport = client.transport
        sent = rounds = 0
        while sent < limit and not self.stop.is_set():
            if client.failure is not None:
                raise client.failure
            if client.closed.done():
                raise ConnectionError("the broker closed the producer's connection")
            n = batch if sent + batch <= limit else int(limit - sent)
            if window:
                room = window - (sent - client.confirmed)
                if room <= 0:
                    confirmed = client.confirmed
                    await waiter.wait(timeout=spec.idle_timeout)
                    if time.monotonic() >= deadline or client.confirmed == confirmed:
                        break  # over, or the broker stopped confirming
                    continue
                n = min(n, room)
            chunk, ends = chunks[sent % turns]
            transport.write(chunk if n == batch else chunk[: ends[n - 1]])
            sent += n
            self.count += n
            await client.drain()
            rounds += 1
            if rounds % 8 == 0:
                if time.monotonic() >= deadline:
                    break
                await asyncio.sleep(0)  # let confirms and the progress task in
        self.last_send = time.monotonic()
        self.sent.append((client, sent))

    async def _paced(
        self, client: Client, spec: ProducerSpec, props: bytes, started: float, messages: int
    ):
        """Publish at a fixed rate, each body starting with its send time (for latency)."""
        size = max(spec.size, 8)
        prefixes = [
            publish_prefix(1, spec.exchange, key, props, size, client.frame_max)
            for key in spec.routing_keys
        ]
        turns = len(prefixes)
        tail = b"x" * (size - 8) + b"\xce"
        transport = client.transport
        rate = spec.rate
        limit = messages or float("inf")
        deadline = started + spec.duration if not messages else float("inf")
        pack = _timestamp.pack
        sent = 0
        while sent < limit and not self.stop.is_set():
            now = time.monotonic()
            if now >= deadline:
                break
            due = min(int((now - started) * rate) + 1, limit) - sent
            if due <= 0:
                await asyncio.sleep((sent + 1) / rate - (now - started))
                continue
            for i in range(sent, sent + int(due)):
                transport.write(prefixes[i % turns] + pack(time.monotonic_ns()) + tail)
            sent += int(due)
            self.count += int(due)
            await client.drain()
        self.last_send = time.monotonic()
        self.sent.append((client, sent))

    async def _confirmed(self, client: Client, sent: int, idle_timeout: float) -> None:
        """Wait for the confirms of what was sent, or until none came for ``idle_timeout``
        seconds (a broker that never confirms some: the figures count them unconfirmed)."""
        waiter = _Waiter(client)
        seen, since = client.confirmed, time.monotonic()
        while client.confirmed < sent and not client.closed.done() and not self.stop.is_set():
            await waiter.wait(timeout=0.2)
            if client.confirmed != seen:
                seen, since = client.confirmed, time.monotonic()
            elif time.monotonic() - since > idle_timeout:
                return

    async def _settle(self, client: Client, spec: ProducerSpec) -> None:
        """One round trip on the publishing channel before the connection closes, so that
        the broker has taken every publish: GarageMQ drops publishes still queued inside
        it when connection.close arrives (RabbitMQ and xivo-bus handle them in order)."""
        from pamqp import commands

        if client.closed.done():
            return
        try:
            await asyncio.wait_for(
                client.call(commands.Basic.Qos(prefetch_count=0), commands.Basic.QosOk),
                spec.idle_timeout,
            )
        except TimeoutError:
            pass

    # -- connections --------------------------------------------------------------------

    async def _open_idle(self, count: int) -> None:
        gate = asyncio.Semaphore(32)

        async def open_one() -> Client:
            async with gate:
                return await Client.connect(self.job.url)

        self.clients = list(await asyncio.gather(*(open_one() for _ in range(count))))
        self.count = len(self.clients)

    async def _churn(self, spec: ConnectionSpec) -> dict:
        deadline = time.monotonic() + spec.duration

        async def cycle() -> None:
            while time.monotonic() < deadline and not self.stop.is_set():
                client = await Client.connect(self.job.url)
                await client.close()
                self.count += 1

        await asyncio.gather(*(cycle() for _ in range(spec.churn_concurrency)))
        return {"cycled": self.count}


class _Waiter:
    """Wakes a producer when confirms arrive."""

    def __init__(self, client: Client):
        self.future: asyncio.Future | None = None
        client.on_confirm = self._wake

    def _wake(self) -> None:
        if self.future is not None and not self.future.done():
            self.future.set_result(None)

    async def wait(self, timeout: float | None = None) -> None:
        self.future = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(self.future, timeout)
        except TimeoutError:
            pass


def _rotations(ones: list[bytes], batch: int) -> list[tuple[bytes, list[int]]]:
    """For each first routing key, ``batch`` publishes taking the keys in turn, and where
    each publish ends in them (a shorter write is a prefix)."""
    out = []
    for first in range(len(ones)):
        pieces = [ones[(first + i) % len(ones)] for i in range(batch)]
        out.append((b"".join(pieces), list(itertools.accumulate(map(len, pieces)))))
    return out


def _properties(persistent: bool) -> bytes:
    from pamqp import commands

    return amqp_properties.encode(
        commands.Basic.Properties(
            content_type="application/octet-stream", delivery_mode=2 if persistent else 1
        )
    )
