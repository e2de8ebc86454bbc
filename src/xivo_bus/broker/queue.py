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

    def enqueue(self, message: Message) -> None:
        self._next_seq += 1
        self.ready.append(Entry(message, self._next_seq))
        if self.consumers:
            self.dispatch()

    def take(self) -> Entry | None:
        """Pop the next ready message, for basic.get."""
        return self.ready.popleft() if self.ready else None

    def requeue(self, entries: list[Entry]) -> None:
        """Put back deliveries that were not acked, in their original order, flagged
        redelivered."""
        if self.deleted or not entries:
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
