"""Publisher confirms on one channel (confirm.select): every publish gets the next
sequence number; each is acked once routed, or nacked when a queue refused it
(x-overflow reject-publish).

A persistent message stored by durable queues is acked once it is on disk, or once every
one of those queues is done with it (its consumers acked it, it was dropped or purged),
whichever comes first, as RabbitMQ does: a message consumed before its write never
waits for the disk (and is never written). Such early acks go out of order, one by one;
the others in runs, with ``multiple``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable


class PendingConfirm:
    """A publish whose ack waits for store write ``write``, or for the ``copies``
    durable queues that stored it to be done with it (``Message.pending_confirm``)."""

    __slots__ = ("confirms", "seq", "write", "copies")

    def __init__(self, confirms: Confirms, seq: int, write: int, copies: int):
        self.confirms = confirms
        self.seq = seq
        self.write = write
        self.copies = copies  # durable queues still holding it; 0: done with it

    def copy_settled(self) -> None:
        """One of the queues that stored the message is done with it."""
        copies = self.copies - 1
        self.copies = copies
        if not copies:
            self.confirms.settled(self)


class Confirms:
    __slots__ = ("seq", "confirmed", "_nacked", "_waiting", "_early", "_sent_early", "_on_early")

    def __init__(self, on_early: Callable[[], None] | None = None) -> None:
        self.seq = 0  # the latest publish
        self.confirmed = 0  # every publish up to this one is confirmed
        self._nacked: list[int] = []  # publishes a queue refused, not yet confirmed
        self._waiting: deque[PendingConfirm] = deque()  # for the disk, in order
        self._early: list[int] = []  # settled by every queue before their write: due
        self._sent_early: set[int] = set()  # acked early, above ``confirmed``
        self._on_early = on_early  # called when a publish was settled before its write

    @property
    def waiting(self) -> bool:
        """Some publishes wait for the disk."""
        return bool(self._waiting)

    def published(self, refused: bool, write: int = 0, copies: int = 0) -> PendingConfirm | None:
        """A publish: ``refused`` by a queue, or stored by ``copies`` durable queues, to
        be acked once store write ``write`` is on disk (0: nothing to wait for). Returns
        what the stored message must point at for its ack to go early."""
        self.seq += 1
        if refused:
            self._nacked.append(self.seq)
        elif write:
            pending = PendingConfirm(self, self.seq, write, copies)
            self._waiting.append(pending)
            return pending
        return None

    def settled(self, pending: PendingConfirm) -> None:
        if pending.seq > self.confirmed and pending.write:
            self._early.append(pending.seq)
            if self._on_early is not None:
                self._on_early()

    def due(self, committed: int) -> list[tuple[bool, int, bool]]:
        """The confirms to send now, as (ack, delivery tag, multiple), given that store
        writes up to ``committed`` are on disk: one ack for every publish up to the
        first that still waits (or, when some were refused, an ack or a nack per run of
        alike outcomes, ``multiple`` when the run is longer than one), then a single ack
        for each publish after it that every queue was done with."""
        waiting = self._waiting
        while waiting and (waiting[0].write <= committed or not waiting[0].copies):
            waiting.popleft().write = 0  # confirmed: a late settlement changes nothing
        seq = waiting[0].seq - 1 if waiting else self.seq
        runs = self._runs(seq) if seq > self.confirmed else []
        if self._early:
            sent = self._sent_early
            for early in self._early:
                if early > self.confirmed and early not in sent:
                    runs.append((True, early, False))
                    sent.add(early)
            self._early.clear()
        return runs

    def _runs(self, seq: int) -> list[tuple[bool, int, bool]]:
        """Confirm every publish from the last confirmed one up to ``seq``."""
        first = self.confirmed + 1
        self.confirmed = seq
        sent = self._sent_early
        if sent:  # those at the end that went early are not acked again
            self._sent_early = {tag for tag in sent if tag > seq}
            while seq in sent:
                seq -= 1
            if seq < first:
                return []
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
