"""The consumer timeout: a channel that leaves a delivery unacknowledged for longer than
the timeout is closed with 406 PRECONDITION_FAILED, in RabbitMQ's words, and its unacked
deliveries go back to their queues.

As in RabbitMQ 3.10 the timeout is the broker's (``consumer_timeout``, 30 minutes by
default); 3.10 ignores an ``x-consumer-timeout`` queue argument, and so does this broker.

Deliveries carry no timestamp (that would cost every delivery): a periodic check notes
each channel's latest delivery tag with the time it saw it, so that the oldest unacked
delivery is known to have gone out no later than the first note at or past its tag. A
channel is closed at most one check interval late, never early.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from xivo_bus.broker.model import wording
from xivo_bus.broker.roles import ChannelSource, TimedChannel

log = logging.getLogger("xivo_bus.broker")

DEFAULT_CONSUMER_TIMEOUT = 1_800_000  # ms, as RabbitMQ
# How often channels are checked: a tenth of the timeout, within these bounds (seconds).
MIN_INTERVAL = 0.05
MAX_INTERVAL = 15.0


class ConsumerTimeout:
    """Watches every channel (``channels()``) for overdue acknowledgements."""

    def __init__(self, channels: ChannelSource, timeout: int):
        self.channels = channels
        self.timeout = timeout  # ms
        self.interval = min(max(timeout / 10_000, MIN_INTERVAL), MAX_INTERVAL)
        # per channel with unacked deliveries: (time seen, delivery tag then)
        self._notes: dict[TimedChannel, deque[tuple[float, int]]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._timer = loop.call_later(self.interval, self._check)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check(self) -> None:
        try:
            self._check_channels()
        except Exception:  # a bug of ours: the next check still comes
            log.exception("consumer timeout: check failed")
        self._timer = self._loop.call_later(self.interval, self._check)

    def _check_channels(self) -> None:
        now = self._loop.time()
        notes: dict[TimedChannel, deque[tuple[float, int]]] = {}
        for channel in self.channels():
            try:
                seen = self._check_one(channel, now)
            except Exception:  # a bug of ours in one channel: its connection only closes
                channel.internal_error()
                continue
            if seen is not None:
                notes[channel] = seen
        self._notes = notes

    def _check_one(self, channel: TimedChannel, now: float) -> deque[tuple[float, int]] | None:
        """The notes kept on one channel, or None when there is nothing to watch (or it
        was closed for its overdue acknowledgement)."""
        tags = channel.unacked_tags()
        if tags is None or channel.closing:
            return None
        oldest, latest = tags
        seen = self._notes.get(channel) or deque()
        if not seen or seen[-1][1] != latest:
            seen.append((now, latest))
        while seen[0][1] < oldest:
            seen.popleft()
        if now - seen[0][0] >= self.timeout / 1000:
            channel.fail(wording.consumer_timed_out(channel.number, self.timeout))
            return None
        return seen
