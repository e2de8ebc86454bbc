"""Plain implementations of the broker's roles (``xivo_bus.broker.roles``) for in-process
tests of the model: a clock that moves only when told, and a consumer channel that keeps
what it is given. The queues, exchanges and vhosts under test are the real ones."""

from __future__ import annotations

import heapq
import itertools
from typing import Any

from pamqp import commands

from xivo_bus.amqp import properties
from xivo_bus.broker.model.arguments import parse_expiration
from xivo_bus.broker.model.message import Entry, Message
from xivo_bus.broker.model.queue import Consumer, Queue
from xivo_bus.broker.model.vhost import VHost


class ManualClock:
    """A ``roles.Clock`` whose time moves only by ``advance``, firing timers due."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._timers: list = []
        self._order = itertools.count()

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback) -> _Timer:
        timer = _Timer(when, callback)
        heapq.heappush(self._timers, (when, next(self._order), timer))
        return timer

    def call_later(self, delay: float, callback) -> _Timer:
        return self.call_at(self.now + delay, callback)

    def advance(self, seconds: float) -> None:
        until = self.now + seconds
        while self._timers and self._timers[0][0] <= until:
            when, _, timer = heapq.heappop(self._timers)
            self.now = max(self.now, when)
            if not timer.cancelled:
                timer.callback()
        self.now = until


class _Timer:
    def __init__(self, when: float, callback):
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class RecordingChannel:
    """A ``roles.ConsumerChannel`` that takes up to ``room`` deliveries and records them."""

    def __init__(self, room: int = 1_000_000):
        self.room = room
        self.delivered: list[tuple[str, bytes, bool, Any]] = []  # tag, body, redelivered, record
        self.cancelled: list[str] = []

    def can_take(self) -> bool:
        return len(self.delivered) < self.room

    def can_send(self) -> bool:
        return len(self.delivered) < self.room

    def deliver(self, consumer, entry: Entry, delivery) -> None:
        self.delivered.append((consumer.tag, entry.message.body, entry.redelivered, delivery))

    def cancel_by_broker(self, consumer) -> None:
        self.cancelled.append(consumer.tag)

    def bodies(self) -> list[bytes]:
        return [body for _, body, _, _ in self.delivered]


class Owner:
    """A ``roles.QueueOwner`` (a connection, to the vhost)."""

    def __init__(self) -> None:
        self.queues: list[Queue] = []

    def exclusive_queue_declared(self, queue: Queue) -> None:
        self.queues.append(queue)

    def exclusive_queue_deleted(self, queue: Queue) -> None:
        self.queues.remove(queue)


def message(body: bytes = b"m", routing_key: str = "k", exchange: str = "", **props) -> Message:
    """A message as a channel makes it from a basic.publish (its TTL read)."""
    raw = properties.encode(commands.Basic.Properties(**props))
    made = Message(exchange, routing_key, raw, body)
    if "expiration" in props:
        made.ttl = parse_expiration(props["expiration"])
    return made


def vhost() -> tuple[VHost, ManualClock]:
    clock = ManualClock()
    return VHost(clock), clock


def declare(host: VHost, name: str, owner: Owner | None = None, **arguments) -> Queue:
    return host.declare_queue(name, False, False, False, arguments, owner or Owner())


def subscribe(
    queue: Queue,
    channel: RecordingChannel,
    tag: str = "c",
    no_ack: bool = False,
    prefetch: int = 0,
    priority: int = 0,
) -> Consumer:
    consumer = Consumer(tag, tag.encode(), channel, queue, no_ack, False, prefetch, priority)
    queue.add_consumer(consumer)
    return consumer
