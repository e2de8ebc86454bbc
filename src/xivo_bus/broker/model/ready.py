"""The ready lists of queues that need more than a plain deque.

A plain queue keeps its ready entries in a ``collections.deque``. A queue with a byte
limit uses ``SizedReady`` (a deque that also counts body bytes); a priority queue uses
``PriorityReady`` (one deque per priority, highest first, also counting bytes). Both
offer what the queue uses of a deque: append, popleft, ``[0]``, len, iteration, clear.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator

from xivo_bus.broker.model.message import Entry


def _seq(entry: Entry) -> int:
    return entry.seq


def requeue_into(ready: deque[Entry], entries: list[Entry]) -> None:
    """Put entries (sorted by seq) back into a deque of entries, in sequence order: at
    the head when they all come first, as they usually do."""
    if not ready or entries[-1].seq < ready[0].seq:
        ready.extendleft(reversed(entries))
    else:
        merged = sorted([*ready, *entries], key=_seq)
        ready.clear()
        ready.extend(merged)


class SizedReady(deque):
    """A deque of entries that keeps the sum of their body sizes in ``bytes``."""

    def __init__(self, entries: Iterable[Entry] = ()) -> None:
        super().__init__()
        self.bytes = 0
        self.extend(entries)

    def append(self, entry: Entry) -> None:
        self.bytes += len(entry.message.body)
        super().append(entry)

    def appendleft(self, entry: Entry) -> None:
        self.bytes += len(entry.message.body)
        super().appendleft(entry)

    def popleft(self) -> Entry:
        entry = super().popleft()
        self.bytes -= len(entry.message.body)
        return entry

    def extend(self, entries: Iterable[Entry]) -> None:
        for entry in entries:
            self.append(entry)

    def extendleft(self, entries: Iterable[Entry]) -> None:
        for entry in entries:
            self.appendleft(entry)

    def clear(self) -> None:
        super().clear()
        self.bytes = 0


class PriorityReady:
    """Ready entries by message priority (0..max_priority; above the max counts as the
    max, none as 0): the highest priority first, in publish order within one."""

    __slots__ = ("levels", "max_priority", "count", "bytes")

    def __init__(self, max_priority: int):
        self.max_priority = max_priority
        self.levels: list[deque[Entry]] = [deque() for _ in range(max_priority + 1)]
        self.count = 0
        self.bytes = 0

    def _level(self, entry: Entry) -> deque[Entry]:
        priority = entry.message.properties.priority or 0
        return self.levels[min(priority, self.max_priority)]

    def append(self, entry: Entry) -> None:
        self._level(entry).append(entry)
        self.count += 1
        self.bytes += len(entry.message.body)

    def popleft(self) -> Entry:
        for level in reversed(self.levels):
            if level:
                entry = level.popleft()
                self.count -= 1
                self.bytes -= len(entry.message.body)
                return entry
        raise IndexError("pop from an empty queue")

    def __getitem__(self, index: int) -> Entry:
        if index != 0:
            raise IndexError("only the head of a priority queue can be read")
        for level in reversed(self.levels):
            if level:
                return level[0]
        raise IndexError("empty queue")

    def __len__(self) -> int:
        return self.count

    def __bool__(self) -> bool:
        return self.count > 0

    def __iter__(self) -> Iterator[Entry]:
        for level in reversed(self.levels):
            yield from level

    def clear(self) -> None:
        for level in self.levels:
            level.clear()
        self.count = 0
        self.bytes = 0

    def requeue(self, entries: list[Entry]) -> None:
        """Put entries back in their priority, in sequence order there."""
        by_level: dict[int, list[Entry]] = {}
        for entry in entries:
            by_level.setdefault(id(self._level(entry)), []).append(entry)
            self.count += 1
            self.bytes += len(entry.message.body)
        for level in self.levels:
            back = by_level.get(id(level))
            if back:
                requeue_into(level, back)
