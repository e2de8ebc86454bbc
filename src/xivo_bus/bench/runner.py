"""Runs a set of worker jobs in processes of their own and gathers what they report.

The parent starts every worker, waits until all have connected, samples the broker,
starts them together, shows progress while they run and decides when the run is over.
"""

from __future__ import annotations

import multiprocessing
import queue as queue_module
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from xivo_bus.bench import procstat, workers

TICK = 0.25


class BenchError(Exception):
    """A worker failed, or the run could not start."""


@dataclass
class State:
    """What the parent knows while the run goes on."""

    elapsed: float = 0.0
    counts: list[int] = field(default_factory=list)  # per job: sent, received or cycled
    results: dict[int, dict] = field(default_factory=dict)  # per finished job

    def total(self, indexes: list[int]) -> int:
        return sum(self.counts[i] for i in indexes)


@dataclass
class Outcome:
    results: dict[int, dict]
    started: float  # time.monotonic() of the go signal
    wall_s: float
    broker: dict | None  # broker CPU and memory over the run
    generator_cpu_s: float
    ready_sample: dict | None = None  # broker sample taken once every worker was ready


def run(
    jobs: list[workers.Job],
    *,
    over: Callable[[State], bool],
    broker_pid: int | None = None,
    progress: Callable[[State], None] | None = None,
    on_ready: Callable[[], dict | None] | None = None,
    timeout: float = 600.0,
) -> Outcome:
    """Run the jobs until ``over(state)`` says so (or ``timeout``), then stop them all."""
    context = multiprocessing.get_context("spawn")
    counters = context.RawArray("q", len(jobs))
    go, stop = context.Event(), context.Event()
    results = context.Queue()
    processes = [
        context.Process(
            target=workers.main,
            args=(job, counters, go, stop, results),
            name=f"xivo-bus-bench-{job.index}",
            daemon=True,
        )
        for job in jobs
    ]
    for process in processes:
        process.start()
    try:
        return _drive(
            jobs, counters, go, stop, results, over, broker_pid, progress, on_ready, timeout
        )
    finally:
        stop.set()
        go.set()
        for process in processes:
            process.join(10)
            if process.is_alive():
                process.kill()
                process.join()


def _drive(jobs, counters, go, stop, results, over, broker_pid, progress, on_ready, timeout):
    state = State(counts=[0] * len(jobs))
    ready = 0
    while ready < len(jobs):
        kind, index, payload = _next(results, 120.0, "workers did not connect")
        if kind == "error":
            raise BenchError(f"worker {index}: {payload}")
        ready += kind == "ready"
    ready_sample = on_ready() if on_ready is not None else None
    before = procstat.sample(broker_pid)
    started = time.monotonic()
    go.set()
    while True:
        try:
            kind, index, payload = results.get(timeout=TICK)
        except queue_module.Empty:
            pass
        else:
            if kind == "error":
                raise BenchError(f"worker {index}: {payload}")
            state.results[index] = payload
        state.elapsed = time.monotonic() - started
        state.counts = list(counters)
        if progress is not None:
            progress(state)
        if over(state) or state.elapsed > timeout:
            break
    wall = time.monotonic() - started
    after = procstat.sample(broker_pid)
    stop.set()
    while len(state.results) < len(jobs):
        kind, index, payload = _next(results, 30.0, "workers did not stop")
        if kind == "error":
            raise BenchError(f"worker {index}: {payload}")
        state.results[index] = payload
    return Outcome(
        results=state.results,
        started=started,
        wall_s=wall,
        broker=procstat.usage(before, after, wall),
        generator_cpu_s=round(sum(r["cpu_s"] for r in state.results.values()), 3),
        ready_sample=ready_sample,
    )


def _next(results, timeout: float, what: str):
    try:
        return results.get(timeout=timeout)
    except queue_module.Empty:
        raise BenchError(f"{what} within {timeout:.0f} s") from None
