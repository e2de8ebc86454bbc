"""Submissions kept on disk until the broker confirms them, then published in order.

Every submission is written to a small SQLite file first, so neither an unreachable
broker nor a restart of the service loses it; one task publishes the oldest one through
``client.Publisher`` and deletes it once the broker confirmed it. Delivery is at least
once: a crash between the confirm and the delete sends that submission again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from pathlib import Path

from xivo_bus import client, events
from xivo_bus.paths import private_database

log = logging.getLogger("xivo_bus.cti")

OUTBOX_FILE = "outbox.sqlite3"


class Outbox:
    """Keeps events in ``path`` and publishes them, oldest first, with ``publisher``.

    ``attempt_timeout`` bounds each wait for a confirm; after it the same event is tried
    again (the publisher reconnects by itself in between).
    """

    def __init__(self, path: Path, publisher: client.Publisher, *, attempt_timeout: float = 5.0):
        self.publisher = publisher
        self.attempt_timeout = attempt_timeout
        private_database(path)  # what agents wrote: owner only, from the start
        self._db = sqlite3.connect(path, isolation_level=None)
        # WAL: one sync per submission instead of several, durable all the same; the
        # submissions are written on the event loop, beside the CTI sessions.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS pending ("
            " id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, data TEXT NOT NULL,"
            " created TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')))"
        )
        self._confirmed: dict[int, asyncio.Future] = {}
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.unreachable_since: str | None = None  # the last error while the bus is away

    @property
    def pending(self) -> int:
        return self._db.execute("SELECT count(*) FROM pending").fetchone()[0]

    def add(self, event: events.AnyEvent) -> int:
        """Keep ``event`` for publishing; its id in the outbox."""
        data = json.dumps(event.data, ensure_ascii=False)
        cursor = self._db.execute(
            "INSERT INTO pending (name, data) VALUES (?, ?)", (event.name, data)
        )
        self._wakeup.set()
        return cursor.lastrowid

    async def submit(self, event: events.AnyEvent, wait: float) -> tuple[int, bool]:
        """Keep and publish ``event``; ``(id, confirmed)`` where ``confirmed`` tells whether
        the broker confirmed it within ``wait`` seconds (else it stays kept and is sent
        once the broker is back)."""
        ident = self.add(event)
        future = self._confirmed[ident] = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(asyncio.shield(future), wait)
        except TimeoutError:
            return ident, False
        finally:
            self._confirmed.pop(ident, None)
        return ident, True

    async def start(self) -> None:
        await self.publisher.start()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="xivo-bus cti outbox")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self.publisher.timeout = 0.5  # what is unsent stays in the outbox
        await self.publisher.close()
        self._db.close()

    def _oldest(self) -> tuple[int, events.AnyEvent] | None:
        row = self._db.execute("SELECT id, name, data FROM pending ORDER BY id LIMIT 1").fetchone()
        if row is None:
            return None
        ident, name, data = row
        return ident, events.make(name, json.loads(data))

    async def _run(self) -> None:
        while True:
            oldest = self._oldest()
            if oldest is None:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            ident, event = oldest
            try:
                await self.publisher.publish(event, timeout=self.attempt_timeout)
            except client.PublishError as error:
                if self.unreachable_since is None:
                    log.warning("bus unreachable, %d submissions kept: %s", self.pending, error)
                self.unreachable_since = str(error)
                if not isinstance(error, client.PublishTimeout):
                    await asyncio.sleep(1)  # refused at once: do not spin
                continue
            if self.unreachable_since is not None:
                log.warning("bus reachable again; sending kept submissions")
                self.unreachable_since = None
            self._db.execute("DELETE FROM pending WHERE id = ?", (ident,))
            future = self._confirmed.get(ident)
            if future is not None and not future.done():
                future.set_result(None)
