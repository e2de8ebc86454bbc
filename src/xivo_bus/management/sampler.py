"""Rates, as RabbitMQ's management plugin shows them: every ``interval`` seconds (its
``collect_statistics_interval``, 5 s by default) the sampler reads the message counters of
every queue, channel and exchange and the length of every queue; a rate is the change
between the last two samples over the time between them. The overview keeps a history
(ten minutes) for ``lengths_age``/``msg_rates_age`` requests and the dashboard's charts.

Nothing here is on the path of a message: the counters are plain integers that the broker
increments; reading them happens here, on a timer.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

from xivo_bus.broker.model.stats import MessageStats, summed
from xivo_bus.broker.session.server_state import ServerState

HISTORY = 600.0  # seconds of overview samples kept
QUEUE_LENGTHS = ("messages", "messages_ready", "messages_unacknowledged")


def queue_lengths(queue) -> dict[str, int]:
    ready, unacked = queue.message_count, queue.unacked
    return {
        "messages": ready + unacked,
        "messages_ready": ready,
        "messages_unacknowledged": unacked,
    }


def churn(state: ServerState) -> dict[str, int]:
    """RabbitMQ's churn counts: connections, channels and queues made and gone."""
    vhosts = state.vhosts.values()
    return {
        "connection_created": state.connections_opened,
        "connection_closed": state.connections_closed,
        "channel_created": state.channels_opened,
        "channel_closed": state.channels_closed,
        "queue_declared": sum(vhost.queues_declared for vhost in vhosts),
        "queue_created": sum(vhost.queues_created for vhost in vhosts),
        "queue_deleted": sum(vhost.queues_deleted for vhost in vhosts),
    }


class Sample:
    """What was read at one time: counts (message_stats) and lengths (queue depths)."""

    __slots__ = ("when", "counts", "lengths")

    def __init__(self, when: float, counts: dict[str, int], lengths: dict[str, int]):
        self.when, self.counts, self.lengths = when, counts, lengths


def _rates(latest: Sample | None, before: Sample | None, values: dict[str, int]) -> dict:
    """``{field: rate}`` per second between two samples (0.0 without two)."""
    if latest is None or before is None or latest.when <= before.when:
        return dict.fromkeys(values, 0.0)
    span = latest.when - before.when
    rates = {}
    for name in values:
        now = latest.counts.get(name, latest.lengths.get(name, 0))
        then = before.counts.get(name, before.lengths.get(name, 0))
        rates[name] = round((now - then) / span, 1)
    return rates


class Sampler:
    def __init__(self, state: ServerState, interval: float = 5.0):
        self.state = state
        self.interval = interval
        # object -> (previous sample, latest sample), for queues, channels and exchanges
        self._objects: dict[Any, tuple[Sample | None, Sample]] = {}
        self.history: deque[Sample] = deque()  # the overview's samples, oldest first
        self._task: asyncio.Task | None = None

    # -- sampling ---------------------------------------------------------------------

    def start(self) -> None:
        self.sample()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="stats sampler")

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.sample()

    def vhost_stats(self, vhost) -> MessageStats:
        """The message counts of a vhost's channels, open and closed."""
        total = summed(channel.stats for channel in self.state.channels() if channel.vhost is vhost)
        total.add(vhost.retired_stats)
        return total

    def overview_stats(self) -> MessageStats:
        """The message counts of the whole broker: live channels plus closed ones."""
        total = summed(channel.stats for channel in self.state.channels())
        total.add(summed(vhost.retired_stats for vhost in self.state.vhosts.values()))
        return total

    def sample(self) -> None:
        now = time.time()
        seen: dict[Any, tuple[Sample | None, Sample]] = {}
        lengths = dict.fromkeys(QUEUE_LENGTHS, 0)
        for vhost in self.state.vhosts.values():
            seen[vhost] = self._next(vhost, Sample(now, self.vhost_stats(vhost).totals(), {}))
            for queue in vhost.queues.values():
                queue_sample = Sample(now, queue.stats.totals(), queue_lengths(queue))
                for name, value in queue_sample.lengths.items():
                    lengths[name] += value
                seen[queue] = self._next(queue, queue_sample)
            for exchange in vhost.exchanges.values():
                seen[exchange] = self._next(exchange, Sample(now, exchange.stats.totals(), {}))
        for channel in self.state.channels():
            seen[channel] = self._next(channel, Sample(now, channel.stats.totals(), {}))
        self._objects = seen  # what is gone is forgotten
        history = self.history
        counts = {**self.overview_stats().totals(), **churn(self.state)}
        history.append(Sample(now, counts, lengths))
        while history and history[0].when < now - HISTORY:
            history.popleft()

    def _next(self, thing: Any, sample: Sample) -> tuple[Sample | None, Sample]:
        known = self._objects.get(thing)
        return (known[1] if known else None, sample)

    # -- reading ----------------------------------------------------------------------

    def rates(self, thing: Any) -> dict[str, float]:
        """The per-second rates of ``thing``'s counters and lengths, from its last two
        samples (0.0 until it has two)."""
        before, latest = self._objects.get(thing, (None, None))
        fields = {**(latest.counts if latest else {}), **(latest.lengths if latest else {})}
        return _rates(latest, before, fields or {name: 0 for name in QUEUE_LENGTHS})

    def overview_rates(self) -> dict[str, float]:
        history = self.history
        latest = history[-1] if history else None
        before = history[-2] if len(history) > 1 else None
        fields = {**latest.counts, **latest.lengths} if latest else {}
        return _rates(latest, before, fields)

    def overview_samples(self, age: float, increment: float) -> list[Sample]:
        """Overview samples of the last ``age`` seconds, at least ``increment`` apart,
        newest first (as RabbitMQ lists them)."""
        if not self.history:
            return []
        newest = self.history[-1].when
        picked: list[Sample] = []
        for sample in reversed(self.history):
            if sample.when < newest - age:
                break
            if not picked or picked[-1].when - sample.when >= increment - 1e-6:
                picked.append(sample)
        return picked
