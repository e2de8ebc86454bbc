"""A queue: ready messages in order, consumers served round-robin.

Queues never see sockets: a consumer's channel does the delivering, and tells the queue
when it may take more (``Consumer.can_take``).
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from xivo_bus.broker.message import Entry, Message

if TYPE_CHECKING:
    from xivo_bus.broker.channel import Channel
    from xivo_bus.broker.connection import Connection
    from xivo_bus.broker.vhost import VHost


class Consumer:
    """A basic.consume subscription: its tag, channel, queue and per-consumer prefetch."""

    __slots__ = ("tag", "tag_ss", "channel", "queue", "no_ack", "exclusive", "prefetch", "unacked")

    def __init__(
        self,
        tag: str,
        tag_ss: bytes,
        channel: Channel,
        queue: Queue,
        no_ack: bool,
        exclusive: bool,
        prefetch: int,
    ):
        self.tag = tag
        self.tag_ss = tag_ss
        self.channel = channel
        self.queue = queue
        self.no_ack = no_ack
        self.exclusive = exclusive
        self.prefetch = prefetch  # 0: unlimited
        self.unacked = 0

    def can_take(self) -> bool:
        if self.no_ack:
            return self.channel.can_send()
        if self.prefetch and self.unacked >= self.prefetch:
            return False
        return self.channel.can_take()


class Queue:
    def __init__(
        self,
        vhost: VHost,
        name: str,
        durable: bool = False,
        exclusive_owner: Connection | None = None,
        auto_delete: bool = False,
        arguments: dict | None = None,
    ):
        self.vhost = vhost
        self.name = name
        self.durable = durable
        self.exclusive_owner = exclusive_owner
        self.auto_delete = auto_delete
        self.arguments: dict[str, Any] = arguments or {}
        self.ready: deque[Entry] = deque()
        self.consumers: deque[Consumer] = deque()
        self.unacked = 0
        self.deleted = False
        self._next_seq = 0
        self._had_consumer = False

    @property
    def exclusive(self) -> bool:
        return self.exclusive_owner is not None

    @property
    def message_count(self) -> int:
        return len(self.ready)

    @property
    def consumer_count(self) -> int:
        return len(self.consumers)

    def has_exclusive_consumer(self) -> bool:
        return any(c.exclusive for c in self.consumers)

    # -- messages ---------------------------------------------------------------------

    @property
    def stores_messages(self) -> bool:
        """Persistent messages in this queue are written to disk."""
        return self.durable and self.vhost.store is not None

    def enqueue(self, message: Message) -> int:
        """Append a message; returns the store write to wait for before confirming it
        (0 when nothing is written)."""
        self._next_seq += 1
        entry = Entry(message, self._next_seq)
        write = 0
        if message.persistent and self.stores_messages:
            write = self._store_entry(entry)
        self.ready.append(entry)
        if self.consumers:
            self.dispatch()
        return write

    def _store_entry(self, entry: Entry) -> int:
        store = self.vhost.store
        message = entry.message
        if message.store_id is None:
            message.store_id = store.new_message_id()
            store.save_message(message)
        message.stored_refs += 1
        entry.stored = True
        return store.add_entry(self.vhost.name, self.name, entry.seq, message.store_id)

    def restore(self, entry: Entry) -> None:
        """Put back an entry read from the store at start-up."""
        entry.stored = True
        entry.message.stored_refs += 1
        self._next_seq = max(self._next_seq, entry.seq)
        self.ready.append(entry)

    def discard(self, entry: Entry) -> None:
        """A message leaves the queue for good (acked, rejected, purged, expired)."""
        if entry.stored:
            entry.stored = False
            message = entry.message
            message.stored_refs -= 1
            last = message.store_id if message.stored_refs == 0 else None
            self.vhost.store.remove_entry(self.vhost.name, self.name, entry.seq, last)

    def delivered(self, entry: Entry) -> int:
        """Note that an entry goes out to a client; returns the store write that must be
        on disk before the delivery is (so a crash cannot hide that it was delivered)."""
        if entry.stored and not entry.redelivered:
            return self.vhost.store.delivered(self.vhost.name, self.name, entry.seq)
        return 0

    def take(self) -> Entry | None:
        """Pop the next ready message, for basic.get."""
        return self.ready.popleft() if self.ready else None

    def requeue(self, entries: list[Entry]) -> None:
        """Put back deliveries that were not acked, in their original order, flagged
        redelivered."""
        if self.deleted:
            for entry in entries:
                self.discard(entry)
            return
        if not entries:
            return
        for entry in entries:
            entry.redelivered = True
        entries.sort(key=_seq)
        ready = self.ready
        if not ready or entries[-1].seq < ready[0].seq:
            ready.extendleft(reversed(entries))
        else:
            merged = sorted([*ready, *entries], key=_seq)
            ready.clear()
            ready.extend(merged)
        self.dispatch()

    def purge(self) -> int:
        count = len(self.ready)
        for entry in self.ready:
            self.discard(entry)
        self.ready.clear()
        return count

    # -- consumers --------------------------------------------------------------------

    def add_consumer(self, consumer: Consumer) -> None:
        self.consumers.append(consumer)
        self._had_consumer = True
        self.dispatch()

    def remove_consumer(self, consumer: Consumer) -> None:
        try:
            self.consumers.remove(consumer)
        except ValueError:
            return
        if self.auto_delete and self._had_consumer and not self.consumers:
            self.vhost.delete_queue(self)

    def dispatch(self) -> None:
        """Hand ready messages to consumers that can take them, round-robin."""
        ready = self.ready
        consumers = self.consumers
        while ready and consumers:
            for _ in range(len(consumers)):
                consumer = consumers[0]
                consumers.rotate(-1)
                if consumer.can_take():
                    consumer.channel.deliver(consumer, ready.popleft())
                    break
            else:
                return  # nobody can take more now


def _seq(entry: Entry) -> int:
    return entry.seq
