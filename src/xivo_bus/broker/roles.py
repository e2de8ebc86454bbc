"""What each side of the broker needs of the other, as small roles (``typing.Protocol``).

The model (queues, exchanges, vhosts) knows sessions only through these, as RabbitMQ's
queue knows a channel only as something to deliver to; the things around the broker
(alarms, the consumer timeout) know connections and channels only through these too. So
no module of ``model/`` imports ``session/``, and nothing imports ``server``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from xivo_bus.amqp.errors import ChannelError
from xivo_bus.broker.model.message import Entry, Message


class Timer(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    """Time and timers for TTLs and expiries; an asyncio event loop is one."""

    def time(self) -> float: ...

    def call_at(self, when: float, callback: Callable[[], Any]) -> Timer: ...

    def call_later(self, delay: float, callback: Callable[[], Any]) -> Timer: ...


class DurableStore(Protocol):
    """Where a vhost writes its durable definitions and its durable queues their
    persistent messages (``store.Store``). Each write returns its sequence number: what
    must be on disk before a confirm or a delivery."""

    def save_exchange(self, vhost: str, exchange: Any) -> int: ...

    def delete_exchange(self, vhost: str, name: str) -> int: ...

    def save_queue(self, vhost: str, queue: Any) -> int: ...

    def delete_queue(self, vhost: str, name: str) -> int: ...

    def set_binding(
        self,
        present: bool,
        vhost: str,
        exchange: str,
        kind: str,
        destination: str,
        routing_key: str,
        arguments: dict,
    ) -> int: ...

    pages: Any  # model.paging.PageFiles: where queues page their backlogs out

    def new_message_id(self) -> int: ...

    def hold(self, message_id: int) -> None: ...

    def release(self, message_id: int) -> bool: ...

    def save_message(self, message: Message) -> int: ...

    def add_entry(
        self, vhost: str, queue: str, seq: int, message_id: int, expires_at: float | None
    ) -> int: ...

    def remove_entry(
        self, vhost: str, queue: str, seq: int, last_reference_to: int | None
    ) -> int: ...

    def delivered(self, vhost: str, queue: str, seq: int) -> int: ...


class Durability(Protocol):
    """What a connection waits on before sending what depends on a store write."""

    committed: int  # the highest write on disk
    last_write: int  # the latest write asked for
    failed: str | None  # why writes fail now, if they do
    uncommitted_bytes: int  # bytes of message bodies not yet written

    def notify(self, listener: Any) -> None:
        """Call ``listener.store_committed()`` after the next commit."""


class Subscription(Protocol):
    """A consumer, as its channel sees it."""

    tag: str
    tag_ss: bytes  # the tag pre-encoded as a short string
    no_ack: bool


class ConsumerChannel(Protocol):
    """A consumer's channel, as its queue sees it: something to deliver to."""

    def can_take(self) -> bool:
        """Room for one more delivery that must be acked (channel prefetch, output)."""

    def can_send(self) -> bool:
        """Room for one more no-ack delivery (output only)."""

    def deliver(self, consumer: Subscription, entry: Entry, delivery: Any) -> None:
        """Send ``entry`` to ``consumer``. ``delivery`` is the queue's record of an
        unacked delivery (None for no-ack), handed back to the queue when settled. It
        goes out at once: nothing about a delivery waits for the disk."""

    def cancel_by_broker(self, consumer: Subscription) -> None:
        """The queue went away: tell the client (basic.cancel) if it understands it."""


class QueueOwner(Protocol):
    """The connection an exclusive queue belongs to (deleted with it)."""

    def exclusive_queue_declared(self, queue: Any) -> None: ...

    def exclusive_queue_deleted(self, queue: Any) -> None: ...


class QueueHost(Protocol):
    """What a queue needs of its vhost."""

    name: str
    store: DurableStore | None
    clock: Clock

    def delete_queue(self, queue: Any) -> int: ...

    def dead_letter(
        self,
        queue: str,
        messages: list[Message],
        reason: str,
        exchange: str,
        routing_key: str | None,
    ) -> None:
        """Republish ``messages`` that left ``queue`` for ``reason`` to its dead-letter
        exchange."""


class FlowWaiter(Protocol):
    """A publisher waiting for a queue's consumers to catch up (credit flow)."""

    def queue_caught_up(self) -> None: ...


class Blockable(Protocol):
    """A connection, as the resource alarms see it."""

    def set_blocked(self, reason: str | None) -> None: ...

    def close(self, code: int, text: str) -> None:
        """Close with an AMQP connection.close (code, text)."""


class TimedChannel(Protocol):
    """A channel, as the consumer timeout sees it."""

    number: int
    closing: bool

    def unacked_tags(self) -> tuple[int, int] | None:
        """(oldest unacked delivery tag, latest delivery tag), or None when nothing is
        unacked."""

    def fail(self, error: ChannelError) -> None:
        """Close the channel with ``error``."""

    def internal_error(self) -> None:
        """A bug of ours while watching it (called from the ``except`` block): logged,
        and its connection closed with 541 INTERNAL_ERROR."""


ChannelSource = Callable[[], Iterable[TimedChannel]]
