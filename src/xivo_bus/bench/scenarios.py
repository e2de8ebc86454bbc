"""The benchmark scenarios: topology, the jobs the workers do, and the figures.

- ``throughput``: N producers and M consumers on one queue, as fast as it goes (or on
  K queues, each producer publishing to them in turn through the default exchange).
- ``fanout``: producers publish to a fanout exchange with K queues, one consumer each.
- ``latency``: end-to-end latency at a fixed publish rate (p50, p99, p99.9).
- ``connections``: broker memory with many idle connections, then open/close rate.
- ``backlog``: broker memory per queued message, with no consumer.

Every queue and exchange is named by the benchmark (some brokers, GarageMQ among them,
have no server-named queues) and deleted at the end.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable

from pamqp import commands

from xivo_bus.bench import procstat, runner
from xivo_bus.bench.wire import Client
from xivo_bus.bench.workers import ConnectionSpec, ConsumerSpec, Job, ProducerSpec

SCENARIOS = ("throughput", "fanout", "latency", "connections", "backlog")
SETTLE_S = 1.0  # before measuring memory with idle connections or a backlog
BACKLOG_MESSAGES = 100_000
BACKLOG_WINDOW = 5_000  # confirms window of the backlog's producers


def run(args, progress: Callable[[runner.State], None] | None = None) -> dict:
    """Run ``args.scenario`` against ``args.url``; the figures as a JSON-ready dict."""
    if args.scenario == "connections":
        return _connections(args, progress)
    if args.scenario == "backlog":
        return _backlog(args, progress)
    return _messaging(args, progress)


def split(total: int, parts: int) -> list[int]:
    """``total`` spread as evenly as can be over ``parts`` (no zero shares)."""
    parts = max(1, min(parts, total))
    return [total // parts + (i < total % parts) for i in range(parts)]


def assign(queues: list[str], consumers: int | None) -> list[list[str]]:
    """The queues of each consumer: one per queue by default; more consumers than queues
    share them (several on one queue compete), fewer take several queues each."""
    count = consumers or len(queues)
    if count <= len(queues):
        return [queues[first::count] for first in range(count)]
    return [[queues[i % len(queues)]] for i in range(count)]


def queue_count(args) -> int:
    if args.queues is not None:
        return max(1, args.queues)
    return 10 if args.scenario == "fanout" else 1


def queue_names(run_id: str, count: int) -> list[str]:
    """Names of one width, so that every publish of a run has the same size."""
    width = len(str(count - 1))
    return [f"{run_id}-q{i:0{width}d}" for i in range(count)]


def _run_id() -> str:
    return f"bench-{os.getpid()}-{int(time.time() * 1000) % 10**8}"


def _processes(args) -> tuple[int, int]:
    """How many producer and consumer processes: consumers parse, producers only write,
    so consumers get the larger share."""
    procs = max(2, args.processes)
    return max(1, procs // 2), max(1, procs - procs // 2)


# -- messaging scenarios --------------------------------------------------------------


def _messaging(args, progress) -> dict:
    run_id = _run_id()
    fanout = args.scenario == "fanout"
    queues = queue_names(run_id, queue_count(args))
    exchange = f"{run_id}-fanout" if fanout else ""
    asyncio.run(_declare(args.url, queues, exchange, durable=args.persistent))
    try:
        jobs, producer_jobs, consumer_jobs = _messaging_jobs(args, queues, exchange)

        copies = len(queues) if fanout else 1
        over = _Drained(producer_jobs, consumer_jobs, copies, args.drain_timeout)
        outcome = runner.run(
            jobs, over=over, broker_pid=args.broker_pid, progress=progress, timeout=args.timeout
        )
    finally:
        asyncio.run(_delete(args.url, queues, exchange))
    return _messaging_figures(args, outcome, producer_jobs, consumer_jobs, copies)


class _Drained:
    """The run is over once producers are done and every copy of every message has been
    delivered, or when no delivery came for ``drain_timeout`` seconds (a loss)."""

    def __init__(self, producer_jobs, consumer_jobs, copies: int, drain_timeout: float):
        self.producer_jobs = producer_jobs
        self.consumer_jobs = consumer_jobs
        self.copies = copies  # a fanout delivers each message once per queue
        self.stalled = _Stalled(drain_timeout)

    def __call__(self, state: runner.State) -> bool:
        if not all(i in state.results for i in self.producer_jobs):
            return False
        sent = sum(state.results[i]["sent"] for i in self.producer_jobs)
        if state.total(self.consumer_jobs) >= sent * self.copies:
            return True
        return self.stalled(state, self.consumer_jobs)


class _Stalled:
    """Whether no delivery came for ``timeout`` seconds."""

    def __init__(self, timeout: float):
        self.timeout = timeout
        self.seen = -1
        self.since = 0.0

    def __call__(self, state: runner.State, jobs: list[int]) -> bool:
        seen = state.total(jobs)
        if seen != self.seen:
            self.seen, self.since = seen, state.elapsed
        return state.elapsed - self.since > self.timeout


def _messaging_jobs(args, queues: list[str], exchange: str):
    producer_procs, consumer_procs = _processes(args)
    latency = args.scenario == "latency"
    jobs: list[Job] = []
    for share in split(args.producers, producer_procs):
        producer = ProducerSpec(
            connections=share,
            exchange=exchange,
            routing_keys=[""] if exchange else queues,
            size=args.size,
            persistent=args.persistent,
            confirm_window=args.confirm if args.confirm else 0,
            rate=args.rate if latency else 0.0,
            duration=args.duration,
            messages=args.messages,
            idle_timeout=args.drain_timeout,
        )
        jobs.append(Job(args.url, len(jobs), producer=producer))
    producer_jobs = list(range(len(jobs)))
    jobs += _consumer_jobs(args, queues, consumer_procs, len(jobs), latency)
    consumer_jobs = list(range(len(producer_jobs), len(jobs)))
    return jobs, producer_jobs, consumer_jobs


def _consumer_jobs(
    args, queues: list[str], processes: int, first: int, latency: bool = False
) -> list[Job]:
    """One connection per consumer, each consuming its queues on one channel, spread
    over ``processes`` jobs numbered from ``first``."""
    consumers = assign(queues, args.consumers)
    jobs = []
    start = 0
    for share in split(len(consumers), processes):
        consumer = ConsumerSpec(
            consumers=consumers[start : start + share],
            prefetch=args.prefetch,
            manual_ack=not args.auto_ack,
            ack_every=args.multi_ack,
            latency=latency,
        )
        start += share
        jobs.append(Job(args.url, first + len(jobs), consumer=consumer))
    return jobs


def _messaging_figures(args, outcome: runner.Outcome, producer_jobs, consumer_jobs, copies):
    results = outcome.results
    produced = [results[i] for i in producer_jobs]
    consumed = [results[i] for i in consumer_jobs]
    sent = sum(r["sent"] for r in produced)
    received = sum(r["received"] for r in consumed)
    last_send = max(r["last_send"] for r in produced)
    receive_times = [r["last_receive"] for r in consumed if r["received"]]
    last_receive = max(receive_times) if receive_times else outcome.started
    publish_s = max(last_send - outcome.started, 1e-9)
    deliver_s = max(last_receive - outcome.started, 1e-9)
    figures = {
        "sent": sent,
        "expected": sent * copies,
        "received": received,
        "lost": max(0, sent * copies - received),
        "publish_rate": round(sent / publish_s, 1),
        "delivery_rate": round(received / deliver_s, 1),
        "publish_seconds": round(publish_s, 3),
        "delivery_seconds": round(deliver_s, 3),
    }
    if args.confirm:
        figures["confirmed"] = sum(r["confirmed"] for r in produced)
        figures["nacked"] = sum(r["nacked"] for r in produced)
        figures["unconfirmed"] = max(0, sent - figures["confirmed"])
    if args.scenario == "latency":
        samples = sorted(s for r in consumed for s in r["latency_ns"])
        figures["latency_us"] = latency_summary(samples)
    return _document(args, outcome, figures)


def latency_summary(samples_ns: list[int]) -> dict:
    """p50, p99, p99.9 and max of sorted samples, in microseconds."""
    if not samples_ns:
        return {"samples": 0}

    def pick(fraction: float) -> float:
        index = min(len(samples_ns) - 1, int(fraction * len(samples_ns)))
        return round(samples_ns[index] / 1000, 1)

    return {
        "samples": len(samples_ns),
        "p50": pick(0.50),
        "p99": pick(0.99),
        "p99.9": pick(0.999),
        "max": round(samples_ns[-1] / 1000, 1),
    }


# -- backlog ----------------------------------------------------------------------------


def _backlog(args, progress) -> dict:
    """Publish ``--messages`` with confirms into queues nobody consumes; the broker's RSS
    growth once they are all confirmed and have settled, per message and per queued copy."""
    run_id = _run_id()
    queues = queue_names(run_id, queue_count(args))
    exchange = f"{run_id}-fanout" if len(queues) > 1 else ""
    total = args.messages or BACKLOG_MESSAGES
    window = args.confirm or BACKLOG_WINDOW
    asyncio.run(_declare(args.url, queues, exchange, durable=args.persistent))
    try:
        shares = split(total, args.producers)
        producer_procs, _ = _processes(args)
        jobs = []
        start = 0
        for connections in split(len(shares), producer_procs):
            producer = ProducerSpec(
                connections=connections,
                exchange=exchange,
                routing_keys=[""] if exchange else queues,
                size=args.size,
                persistent=args.persistent,
                confirm_window=window,
                duration=float("inf"),
                per_connection=shares[start : start + connections],
                idle_timeout=args.drain_timeout,
            )
            start += connections
            jobs.append(Job(args.url, len(jobs), producer=producer))

        def settled() -> dict | None:
            time.sleep(SETTLE_S)
            return procstat.sample(args.broker_pid)

        outcome = runner.run(
            jobs,
            over=lambda state: len(state.results) == len(jobs),
            broker_pid=args.broker_pid,
            progress=progress,
            on_ready=settled,
            timeout=args.timeout,
        )
        after = settled()
        depth = asyncio.run(_depths(args.url, queues))
        drained = _drain(args, queues, depth, progress) if args.drain else None
    finally:
        asyncio.run(_delete(args.url, queues, exchange))
    produced = list(outcome.results.values())
    sent = sum(r["sent"] for r in produced)
    confirmed = sum(r["confirmed"] for r in produced)
    figures = {
        "sent": sent,
        "confirmed": confirmed,
        "nacked": sum(r["nacked"] for r in produced),
        "unconfirmed": max(0, sent - confirmed),
        "queued": depth,
        "expected": sent * len(queues),
        "lost": max(0, sent * len(queues) - depth),
        "publish_rate": round(sent / max(outcome.wall_s, 1e-9), 1),
        "publishers_blocked": sum(r["blocked"] for r in produced),
        "blocked_s": round(sum(r["blocked_s"] for r in produced), 3),
    }
    before = outcome.ready_sample
    if before and after:
        growth = after["rss_kib"] - before["rss_kib"]
        figures["rss_before_kib"] = before["rss_kib"]
        figures["rss_with_backlog_kib"] = after["rss_kib"]
        figures["rss_per_message_bytes"] = round(1024 * growth / max(sent, 1), 1)
        figures["rss_per_copy_bytes"] = round(1024 * growth / max(depth, 1), 1)
    if drained is not None:
        figures.update(drained)
    return _document(args, outcome, figures)


def _drain(args, queues: list[str], depth: int, progress) -> dict:
    """Consumers take the whole backlog: the drain rate, and the broker's RSS once it is
    drained (is the memory given back?)."""
    _, consumer_procs = _processes(args)
    jobs = _consumer_jobs(args, queues, consumer_procs, 0)
    everyone = list(range(len(jobs)))
    stalled = _Stalled(args.drain_timeout)
    outcome = runner.run(
        jobs,
        over=lambda state: state.total(everyone) >= depth or stalled(state, everyone),
        broker_pid=args.broker_pid,
        progress=progress,
        timeout=args.timeout,
    )
    received = sum(result["received"] for result in outcome.results.values())
    first = min((r["first_receive"] for r in outcome.results.values() if r["received"]), default=0)
    last = max((r["last_receive"] for r in outcome.results.values() if r["received"]), default=0)
    figures = {
        "drained": received,
        "drain_rate": round(received / max(last - first, 1e-9), 1),
    }
    time.sleep(SETTLE_S)
    sample = procstat.sample(args.broker_pid)
    if sample:
        figures["rss_after_drain_kib"] = sample["rss_kib"]
    return figures


async def _depths(url: str, queues: list[str]) -> int:
    """Messages ready in the queues, from a passive queue.declare of each."""
    client = await Client.connect(url)
    try:
        total = 0
        for queue in queues:
            ok = await client.call(
                commands.Queue.Declare(queue=queue, passive=True), commands.Queue.DeclareOk
            )
            total += ok.message_count
        return total
    finally:
        await client.close()


async def _declare(url: str, queues: list[str], exchange: str, durable: bool) -> None:
    client = await Client.connect(url)
    try:
        if exchange:
            await client.call(
                commands.Exchange.Declare(exchange=exchange, exchange_type="fanout"),
                commands.Exchange.DeclareOk,
            )
        for queue in queues:
            await client.call(
                commands.Queue.Declare(queue=queue, durable=durable), commands.Queue.DeclareOk
            )
            await client.call(commands.Queue.Purge(queue=queue), commands.Queue.PurgeOk)
            if exchange:
                await client.call(
                    commands.Queue.Bind(queue=queue, exchange=exchange), commands.Queue.BindOk
                )
    finally:
        await client.close()


async def _delete(url: str, queues: list[str], exchange: str) -> None:
    client = await Client.connect(url)
    try:
        for queue in queues:
            await client.call(commands.Queue.Delete(queue=queue), commands.Queue.DeleteOk)
        if exchange:
            # No reply awaited: GarageMQ never answers exchange.delete (it ignores it).
            client.send(1, commands.Exchange.Delete(exchange=exchange, nowait=True))
    finally:
        await client.close()


# -- connections ----------------------------------------------------------------------


def _connections(args, progress) -> dict:
    procs = max(1, args.processes)
    baseline = procstat.sample(args.broker_pid)

    def settled() -> dict | None:
        time.sleep(SETTLE_S)
        return procstat.sample(args.broker_pid)

    idle_jobs = [
        Job(args.url, i, connections=ConnectionSpec(idle=share))
        for i, share in enumerate(split(args.idle, procs))
    ]
    idle = runner.run(
        idle_jobs,
        over=lambda state: True,
        broker_pid=args.broker_pid,
        on_ready=settled,
        timeout=args.timeout,
    )
    churn_jobs = [
        Job(args.url, i, connections=ConnectionSpec(churn_concurrency=4, duration=args.duration))
        for i in range(procs)
    ]
    churn = runner.run(
        churn_jobs,
        over=lambda state: len(state.results) == len(churn_jobs),
        broker_pid=args.broker_pid,
        progress=progress,
        timeout=args.timeout,
    )
    opened = sum(r["count"] for r in idle.results.values())
    cycled = sum(r["cycled"] for r in churn.results.values())
    figures = {
        "idle_connections": opened,
        "open_close_rate": round(cycled / churn.wall_s, 1),
        "open_close_cycles": cycled,
    }
    with_idle = idle.ready_sample
    if baseline and with_idle:
        figures["rss_before_kib"] = baseline["rss_kib"]
        figures["rss_with_idle_kib"] = with_idle["rss_kib"]
        figures["rss_per_connection_kib"] = round(
            (with_idle["rss_kib"] - baseline["rss_kib"]) / max(opened, 1), 2
        )
    churn.generator_cpu_s += idle.generator_cpu_s
    return _document(args, churn, figures)


# -- the document -----------------------------------------------------------------------


def _document(args, outcome: runner.Outcome, figures: dict) -> dict:
    from xivo_bus import __version__

    params = {
        name: getattr(args, name)
        for name in (
            "producers",
            "consumers",
            "queues",
            "size",
            "confirm",
            "persistent",
            "prefetch",
            "auto_ack",
            "multi_ack",
            "rate",
            "duration",
            "messages",
            "idle",
            "processes",
        )
    }
    return {
        "scenario": args.scenario,
        "url": _safe_url(args.url),
        "params": params,
        "results": figures,
        "broker": {"pid": args.broker_pid, **(outcome.broker or {})},
        "generator": {
            "processes": len(outcome.results),
            "cpu_s": round(outcome.generator_cpu_s, 3),
            "cpu_percent": round(100 * outcome.generator_cpu_s / outcome.wall_s, 1),
            **busiest(outcome.results.values()),
        },
        "wall_s": round(outcome.wall_s, 3),
        "xivo_bus_version": __version__,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def busiest(results) -> dict:
    """The busiest producer and consumer process, in % of one core over its own run: near
    100 % the load generator, not the broker, would set the pace."""
    out = {}
    for role, key in (("producer", "sent"), ("consumer", "last_receive")):
        shares = [
            100 * r["cpu_s"] / r["wall_s"] for r in results if key in r and r.get("wall_s", 0) > 0
        ]
        if shares:
            out[f"busiest_{role}_percent"] = round(max(shares), 1)
    return out


def _safe_url(url: str) -> str:
    """The URL without its password."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        credentials, _, host = rest.rpartition("@")
        user = credentials.split(":", 1)[0]
        return f"{scheme}{sep}{user}@{host}"
    return url
