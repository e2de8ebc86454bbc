"""Events seen on the bus, for the live page: a consumer bound to the event names asked
for, the latest events kept, and each new one handed to every listener."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
from collections import deque
from collections.abc import Iterator
from datetime import UTC, datetime

from xivo_bus import client, events

EVENT_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,200}")


class WatchError(ValueError):
    """An event name the watcher refuses."""


class BusWatcher:
    """Consumes the catalogue's events, and more names on request (at most ``max_names``),
    from ``url``; keeps the last ``history`` of them."""

    def __init__(self, url: str, *, history: int = 200, max_names: int = 100):
        self.consumer = client.Consumer(url, timeout=5.0)
        self.recent: deque[dict] = deque(maxlen=history)
        self.names: set[str] = set()
        self.max_names = max_names
        self._listeners: set[asyncio.Queue] = set()
        self._sequence = itertools.count(1)

    async def start(self) -> None:
        for name in events.CATALOGUE:
            self.watch(name)
        await self.consumer.start()

    async def close(self) -> None:
        await self.consumer.close()

    def watch(self, name: str) -> None:
        """Bind to ``name`` too, if not yet."""
        if name in self.names:
            return
        if not EVENT_NAME.fullmatch(name):
            raise WatchError(f"{name!r} is not an event name")
        if len(self.names) >= self.max_names:
            raise WatchError(f"already watching {self.max_names} event names")
        self.names.add(name)
        self.consumer.subscribe(name, self._on_event)

    def _on_event(self, event: events.AnyEvent) -> None:
        item = {
            "id": next(self._sequence),
            "name": event.name,
            "data": event.data,
            "received": datetime.now(UTC).isoformat(timespec="milliseconds"),
        }
        self.recent.append(item)
        for listener in self._listeners:
            with contextlib.suppress(asyncio.QueueFull):  # a stalled page misses events
                listener.put_nowait(item)

    @contextlib.contextmanager
    def listen(self, maxsize: int = 1000) -> Iterator[asyncio.Queue]:
        """A queue that receives each event from now on, while the block runs."""
        listener: asyncio.Queue = asyncio.Queue(maxsize)
        self._listeners.add(listener)
        try:
            yield listener
        finally:
            self._listeners.discard(listener)
