"""Publisher confirms on one channel (confirm.select): every publish gets the next
sequence number; each is acked once routed (and on disk, where it must be), or nacked
when a queue refused it (x-overflow reject-publish)."""

from __future__ import annotations


class Confirms:
    __slots__ = ("seq", "confirmed", "_nacked")

    def __init__(self) -> None:
        self.seq = 0  # the latest publish
        self.confirmed = 0  # the latest publish confirmed
        self._nacked: list[int] = []  # publishes a queue refused, not yet confirmed

    def published(self, refused: bool) -> None:
        self.seq += 1
        if refused:
            self._nacked.append(self.seq)

    def due(self) -> list[tuple[bool, int, bool]]:
        """The confirms to send now for every publish since the last call, as (ack,
        delivery tag, multiple): one ack for the lot, or, when some were refused, an ack
        or a nack per run of alike outcomes (``multiple`` when the run is longer than
        one)."""
        seq = self.seq
        first = self.confirmed + 1
        if seq < first:
            return []
        self.confirmed = seq
        if not self._nacked:
            return [(True, seq, seq > first)]
        nacked = set(self._nacked)
        self._nacked.clear()
        runs = []
        while first <= seq:
            refused = first in nacked
            last = first
            while last < seq and ((last + 1) in nacked) == refused:
                last += 1
            runs.append((not refused, last, last > first))
            first = last + 1
        return runs
