"""A queue: ready messages in order, consumers served round-robin, and RabbitMQ's queue
extensions (message TTL, queue expiry, length limits, dead-lettering, priorities, single
active consumer, consumer priorities).

Queues never see sockets: a consumer's channel (``roles.ConsumerChannel``) does the
delivering, and tells the queue when it may take more. The queue keeps the books of what
it handed out (``Delivery``, its unacked counts); channels give deliveries back to it to
settle. Its vhost (``roles.QueueHost``) stores, deletes and dead-letters for it. What a
queue's arguments ask for is read once, when it is declared: a queue without them takes
the plain paths, which do no more than they did before the extensions existed.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

from xivo_bus.amqp import properties
from xivo_bus.broker.model.arguments import QueueSettings, parse_expiration
from xivo_bus.broker.model.message import Entry, Message
from xivo_bus.broker.model.paging import HEAD_BYTES, HEAD_ENTRIES, HEAD_MIN_ENTRIES, PagedReady
from xivo_bus.broker.model.ready import PriorityReady, SizedReady, requeue_into
from xivo_bus.broker.model.stats import MessageStats
from xivo_bus.broker.roles import (
    Clock,
    ConsumerChannel,
    FlowWaiter,
    QueueHost,
    QueueOwner,
    Timer,
)

log = logging.getLogger("xivo_bus.broker")

# A queue holding more than half the ready messages its head keeps in memory
# (``model.paging``) is behind: its consumers, if any, do not keep up, and whoever
# publishes to it is slowed down (``session.connection``), as RabbitMQ's credit flow slows
# a publisher down to what its queues take. Past the whole head (consumers that stall, or
# none), its backlog is paged out, with a data directory. Counted in messages, and in
# bytes as the size of the newest says.
BEHIND = HEAD_ENTRIES // 2
BEHIND_BYTES = HEAD_BYTES // 2
# ...and it has caught up (publishers that waited for its consumers are read again) with
# this many or fewer
CAUGHT_UP = BEHIND // 2
CAUGHT_UP_BYTES = BEHIND_BYTES // 2


def beyond_head(count: int, size: int) -> bool:
    """Whether ``count`` ready messages (the newest of ``size`` bytes) are more than a
    queue's head keeps in memory: by number, or by bytes as their size says."""
    return count > HEAD_ENTRIES or (count > HEAD_MIN_ENTRIES and count * size > HEAD_BYTES)


# A message whose expiry is this close (seconds) counts as expired: timers may fire a
# hair early.
_EXPIRY_SLACK = 0.0005


class Consumer:
    """A basic.consume subscription: its tag, channel, queue, per-consumer prefetch and
    priority (``x-priority``). The queue's record: its ``unacked`` count is kept by the
    queue (as RabbitMQ's rabbit_queue_consumers); the channel only reads it."""

    __slots__ = (
        "tag",
        "tag_ss",
        "channel",
        "queue",
        "no_ack",
        "exclusive",
        "prefetch",
        "unacked",
        "priority",
    )

    def __init__(
        self,
        tag: str,
        tag_ss: bytes,
        channel: ConsumerChannel,
        queue: Queue,
        no_ack: bool,
        exclusive: bool,
        prefetch: int,
        priority: int = 0,
    ):
        self.tag = tag
        self.tag_ss = tag_ss
        self.channel = channel
        self.queue = queue
        self.no_ack = no_ack
        self.exclusive = exclusive
        self.prefetch = prefetch  # 0: unlimited
        self.unacked = 0
        self.priority = priority

    def can_take(self) -> bool:
        if self.no_ack:
            return self.channel.can_send()
        if self.prefetch and self.unacked >= self.prefetch:
            return False
        return self.channel.can_take()


class Delivery:
    """A delivery awaiting its ack: the queue entry, its queue and the consumer (None
    for basic.get). Made by the queue, kept by the channel under its delivery tag, given
    back to the queue to settle."""

    __slots__ = ("entry", "queue", "consumer")

    def __init__(self, entry: Entry, queue: Queue, consumer: Consumer | None):
        self.entry = entry
        self.queue = queue
        self.consumer = consumer


class Queue:
    def __init__(
        self,
        host: QueueHost,
        name: str,
        durable: bool = False,
        exclusive_owner: QueueOwner | None = None,
        auto_delete: bool = False,
        arguments: dict | None = None,
        delivered_upto: int = 0,
    ):
        self.host = host
        self.clock: Clock = host.clock
        self.name = name
        self.durable = durable
        self.exclusive_owner = exclusive_owner
        self.auto_delete = auto_delete
        self.arguments: dict[str, Any] = arguments or {}
        self.consumers: deque[Consumer] = deque()
        self.unacked = 0
        self.stats = MessageStats()
        self.deleted = False
        self._next_seq = 0
        # from the store: entries up to this seq were delivered before a restart
        self.delivered_upto = delivered_upto
        self._had_consumer = False
        settings = self.settings = QueueSettings(self.arguments)
        self.ready: Any
        if settings.max_priority:
            self.ready = PriorityReady(settings.max_priority)
        elif settings.max_length_bytes is not None:
            self.ready = SizedReady()
        else:
            self.ready = deque()
        # A deque, in C, while the queue keeps up; a ``PagedReady`` while it is behind,
        # with a data directory to page to (not for priority queues)
        self._unpaged = type(self.ready)
        self._pages = None if host.store is None or settings.max_priority else host.store.pages
        self.behind = False
        self._caught_up_at = CAUGHT_UP  # publishers waiting are read again at this many
        # publishers waiting for its consumers to catch up (credit flow)
        self._waiting: dict[FlowWaiter, None] = {}
        self._taken_seen = 0  # deliveries when last asked (consumers_progressing)
        self._message_ttl = settings.message_ttl
        self._limited = settings.limited
        self._dead_letters = settings.dead_letter_exchange is not None
        # enqueue takes the plain path unless a setting (or a message's TTL) needs more
        self._plain = self._message_ttl is None and not self._limited
        # dispatch picks consumers the plain way (round-robin) unless one of these holds
        self._single_active = settings.single_active_consumer
        self._consumer_priorities = False
        self._expiring = False  # some ready entry may have an expiry
        self._expiry_timer: Timer | None = None
        self._expiry_when = 0.0
        self._lease_timer: Timer | None = None
        self.used()

    @property
    def exclusive(self) -> bool:
        return self.exclusive_owner is not None

    @property
    def message_count(self) -> int:
        return len(self.ready)

    @property
    def paged_out(self) -> tuple[int, int]:
        """Ready messages on disk now (``model.paging``), and their body bytes."""
        ready = self.ready
        if isinstance(ready, PagedReady):
            return ready.paged, ready.paged_bytes
        return 0, 0

    @property
    def consumer_count(self) -> int:
        return len(self.consumers)

    def has_exclusive_consumer(self) -> bool:
        return any(c.exclusive for c in self.consumers)

    # -- messages ---------------------------------------------------------------------

    @property
    def stores_messages(self) -> bool:
        """Persistent messages in this queue are written to disk."""
        return self.durable and self.host.store is not None

    def enqueue(self, message: Message) -> int | None:
        """Append a message; returns the store write to wait for before confirming it
        (0 when nothing is written), or None when the queue refused it (x-overflow
        reject-publish: its publisher gets a basic.nack)."""
        if not self._plain or message.ttl is not None:
            return self._enqueue_with_settings(message)
        return self._append(Entry(message, self._next_seq + 1))

    def _append(self, entry: Entry) -> int:
        """Add a new entry at the tail (stored when it must be), hand it out if someone
        can take it; returns the store write to wait for."""
        self._next_seq = entry.seq
        self.stats.publish += 1
        write = 0
        if entry.message.persistent and self.stores_messages:
            write = self._store_entry(entry)
        ready = self.ready
        ready.append(entry)
        if self.consumers:
            self.dispatch()
        count = len(ready)
        size = len(entry.message.body)
        if count > BEHIND or (count > HEAD_MIN_ENTRIES and count * size > BEHIND_BYTES):
            self._fell_behind(count, size)
        elif self.behind:
            self._caught_up()
        return write

    def _fell_behind(self, count: int, size: int) -> None:
        """More ready messages than its consumers keep up with (``BEHIND``); past what
        the head keeps in memory, the backlog pages out."""
        self.behind = True
        # caught up at CAUGHT_UP messages, or fewer of this size
        self._caught_up_at = min(CAUGHT_UP, max(HEAD_MIN_ENTRIES, CAUGHT_UP_BYTES // max(size, 1)))
        ready = self.ready
        if self._pages is not None and type(ready) is not PagedReady and beyond_head(count, size):
            self.ready = PagedReady.holding(self._pages, ready)

    def consumers_progressing(self) -> bool:
        """Whether its consumers took messages since this was last asked: a publisher
        waits for consumers that are working, not for stalled ones."""
        stats = self.stats
        taken = stats.deliver + stats.deliver_no_ack
        progressing = taken != self._taken_seen
        self._taken_seen = taken
        return progressing

    def wait_until_caught_up(self, publisher: FlowWaiter) -> None:
        """``publisher.queue_caught_up()`` once this queue's consumers have taken it back
        to ``CAUGHT_UP`` ready messages or ``CAUGHT_UP_BYTES`` (or it has no consumers
        left, or goes)."""
        self._waiting[publisher] = None

    def _release_publishers(self) -> None:
        waiting, self._waiting = self._waiting, {}
        for publisher in waiting:
            publisher.queue_caught_up()

    def _caught_up(self) -> None:
        """Back under the head's bound: a plain ready list again once nothing is paged."""
        self.behind = False
        ready = self.ready
        if type(ready) is PagedReady and not ready.pages and not ready.tail:
            self.ready = ready.head if self._unpaged is deque else self._unpaged(ready.head)

    def _enqueue_with_settings(self, message: Message) -> int | None:
        """``enqueue`` for a queue with limits or a TTL, or a message with a TTL."""
        if (
            self._limited
            and self.settings.overflow != "drop-head"
            and self._would_overflow(message)
        ):
            if self.settings.overflow == "reject-publish-dlx":
                self._dead_letter([message], "maxlen")
            return None
        entry = Entry(message, self._next_seq + 1)
        self._set_expiry(entry)
        write = self._append(entry)
        if self._limited:
            self._drop_head()
        if self._expiring:
            self._expire()
        return write

    def _set_expiry(self, entry: Entry) -> None:
        """The entry expires after the lower of the queue's and the message's TTL."""
        ttl = entry.message.ttl
        queue_ttl = self._message_ttl
        if queue_ttl is not None and (ttl is None or queue_ttl < ttl):
            ttl = queue_ttl
        if ttl is not None:
            entry.expires = self.clock.time() + ttl / 1000
            self._expiring = True

    def _would_overflow(self, message: Message) -> bool:
        settings = self.settings
        ready = self.ready
        if settings.max_length is not None and len(ready) + 1 > settings.max_length:
            return True
        return (
            settings.max_length_bytes is not None
            and ready.bytes + len(message.body) > settings.max_length_bytes
        )

    def _over_limit(self) -> bool:
        settings = self.settings
        ready = self.ready
        if settings.max_length is not None and len(ready) > settings.max_length:
            return True
        return settings.max_length_bytes is not None and ready.bytes > settings.max_length_bytes

    def _drop_head(self) -> None:
        """x-overflow drop-head: the oldest ready messages make room (dead-lettered with
        reason maxlen)."""
        dropped = []
        while self.ready and self._over_limit():
            dropped.append(self.ready.popleft())
        if dropped:
            self._leave(dropped, "maxlen")

    def _store_entry(self, entry: Entry) -> int:
        store = self.host.store
        message = entry.message
        if message.store_id is None:
            message.written_as(store.new_message_id())
            store.save_message(message)
        else:  # routed to several durable queues
            store.hold(message.store_id)
        entry.stored = True
        expires_at = None
        if entry.expires is not None:  # loop time to wall-clock time, for the disk
            expires_at = time.time() + entry.expires - self.clock.time()
        return store.add_entry(self.host.name, self.name, entry.seq, message.store_id, expires_at)

    def restored(self) -> None:
        """Start-up put back every stored entry: expire those whose time is over."""
        if self._expiring:
            self._expire()

    def restore(self, entry: Entry, expires_at: float | None = None) -> None:
        """Put back an entry read from the store at start-up; it keeps the expiry it had
        (``expires_at``, seconds since the epoch)."""
        entry.stored = True
        if expires_at is not None:
            entry.expires = self.clock.time() + expires_at - time.time()
            self._expiring = True
        message = entry.message
        self._next_seq = max(self._next_seq, entry.seq)
        if message.ttl is None and properties.has_expiration(message.raw_properties):
            message.ttl = parse_expiration(message.properties.expiration)
        if entry.expires is None and (message.ttl is not None or self._message_ttl is not None):
            self._set_expiry(entry)
        self.ready.append(entry)
        if beyond_head(len(self.ready), len(message.body)):
            self._fell_behind(len(self.ready), len(message.body))
        if self._expiring:
            self._schedule_expiry()

    def discard(self, entry: Entry) -> None:
        """A message leaves the queue for good (acked, rejected, purged, expired)."""
        if entry.stored:
            entry.stored = False
            store = self.host.store
            message = entry.message
            message_id = message.store_id
            last = message_id if store.release(message_id) else None
            store.remove_entry(self.host.name, self.name, entry.seq, last)
            if message.pending_confirm is not None:
                message.pending_confirm.copy_settled()

    def _leave(self, entries: list[Entry], reason: str) -> None:
        """Ready entries leave for good (expired, dropped): dead-lettered, then
        forgotten."""
        if self._dead_letters:
            self._dead_letter([entry.message for entry in entries], reason)
        for entry in entries:
            self.discard(entry)

    def _dead_letter(self, messages: list[Message], reason: str) -> None:
        settings = self.settings
        self.host.dead_letter(
            self.name,
            messages,
            reason,
            settings.dead_letter_exchange,
            settings.dead_letter_routing_key,
        )

    # -- handing out and settling -----------------------------------------------------

    def _hand_out(self, consumer: Consumer, entry: Entry) -> None:
        """Give a ready entry to a consumer, at once (not waiting for the disk); kept as
        unacked unless no-ack."""
        stats = self.stats
        if entry.redelivered:
            stats.redeliver += 1
        if consumer.no_ack:
            stats.deliver_no_ack += 1
            self.discard(entry)
            delivery = None
        else:
            stats.deliver += 1
            self._mark_delivered(entry)
            delivery = Delivery(entry, self, consumer)
            consumer.unacked += 1
            self.unacked += 1
        consumer.channel.deliver(consumer, entry, delivery)

    def _mark_delivered(self, entry: Entry) -> None:
        """Note in the store that a stored entry went out, so that after a clean restart
        it comes back flagged redelivered. Nothing waits for this write: after a crash
        every message comes back flagged (``store.Recovered.clean``)."""
        if entry.stored and not entry.redelivered:
            self.host.store.delivered(self.host.name, self.name, entry.seq)

    def get(self, no_ack: bool) -> tuple[Entry, Delivery | None] | None:
        """basic.get: the next ready entry and its unacked record (None with no-ack);
        None when empty."""
        if self._lease_timer is not None:
            self.used()
        if self._expiring:
            self._expire()
            entry = self.ready.popleft() if self.ready else None
            self._schedule_expiry()
        else:
            entry = self.ready.popleft() if self.ready else None
        if entry is None:
            return None
        if entry.redelivered:
            self.stats.redeliver += 1
        if no_ack:
            self.stats.get_no_ack += 1
            self.discard(entry)
            return entry, None
        self.stats.get += 1
        self._mark_delivered(entry)
        self.unacked += 1
        return entry, Delivery(entry, self, None)

    def _settle(self, deliveries: Iterable[Delivery]) -> None:
        for delivery in deliveries:
            self.unacked -= 1
            if delivery.consumer is not None:
                delivery.consumer.unacked -= 1

    def ack(self, deliveries: list[Delivery]) -> None:
        """Deliveries acked: forgotten, and their consumers may take more."""
        self.stats.ack += len(deliveries)
        self._forget(deliveries)

    def _forget(self, deliveries: list[Delivery]) -> None:
        """Deliveries settled for good (acked or rejected): forgotten, and their consumers
        may take more."""
        for delivery in deliveries:  # _settle and discard in one pass: the hot path
            self.unacked -= 1
            consumer = delivery.consumer
            if consumer is not None:
                consumer.unacked -= 1
            if delivery.entry.stored:
                self.discard(delivery.entry)
        self.dispatch()

    def reject(self, deliveries: list[Delivery]) -> None:
        """Deliveries rejected without requeue: dead-lettered if the queue has a
        dead-letter exchange, then forgotten."""
        if self._dead_letters and not self.deleted:
            self._dead_letter([delivery.entry.message for delivery in deliveries], "rejected")
        self._forget(deliveries)

    def requeue(self, deliveries: list[Delivery]) -> None:
        """Put back deliveries that were not acked, in their original order (in their
        priority, for a priority queue), flagged redelivered; they keep their expiry."""
        self._settle(deliveries)
        entries = [delivery.entry for delivery in deliveries]
        if self.deleted:
            for entry in entries:
                self.discard(entry)
            return
        if not entries:
            return
        for entry in entries:
            entry.redelivered = True
            if entry.expires is not None:
                self._expiring = True
        entries.sort(key=_seq)
        ready = self.ready
        if isinstance(ready, deque):
            requeue_into(ready, entries)
        else:
            ready.requeue(entries)
        if self._limited and self.settings.overflow == "drop-head":
            self._drop_head()  # as RabbitMQ: a requeue may push the queue over its limit
        if self._expiring:
            self._expire()
        self.dispatch()

    def purge(self) -> int:
        count = len(self.ready)
        if self.stores_messages:  # only stored entries have anything to let go of
            for entry in self.ready:
                self.discard(entry)
        self.ready.clear()
        if self._waiting:
            self._release_publishers()
        return count

    # -- TTL ----------------------------------------------------------------------------

    def _expire(self) -> None:
        """Expired messages leave from the head of the queue, as in RabbitMQ (one behind
        a longer-lived head waits for it to go)."""
        ready = self.ready
        if not ready:
            self._expiring = False
            return
        now = self.clock.time() + _EXPIRY_SLACK
        expired = []
        while ready:
            expires = ready[0].expires
            if expires is None or expires > now:
                break
            expired.append(ready.popleft())
        if expired:
            self._leave(expired, "expired")
        self._schedule_expiry()

    def _schedule_expiry(self) -> None:
        """A timer for when the head expires (sooner than the one set, if any)."""
        if not self.ready or self.deleted:
            return
        when = self.ready[0].expires
        if when is None:
            return
        if self._expiry_timer is not None:
            if self._expiry_when <= when:
                return
            self._expiry_timer.cancel()
        self._expiry_when = when
        self._expiry_timer = self.clock.call_at(when, self._expiry_due)

    def _expiry_due(self) -> None:
        self._expiry_timer = None
        if not self.deleted:
            try:
                self._expire()
            except Exception:  # a bug of ours: this queue's timer stops, nothing else
                log.exception(
                    "queue %s in vhost %s: message expiry failed", self.name, self.host.name
                )

    # -- queue expiry (x-expires) -------------------------------------------------------

    def used(self) -> None:
        """The queue was declared, redeclared or read with basic.get: an ``x-expires``
        queue starts its lease again (while it has no consumers)."""
        expires = self.settings.expires
        if expires is None or self.deleted:
            return
        if self._lease_timer is not None:
            self._lease_timer.cancel()
            self._lease_timer = None
        if not self.consumers:
            self._lease_timer = self.clock.call_later(expires / 1000, self._lease_over)

    def _lease_over(self) -> None:
        self._lease_timer = None
        if not self.deleted and not self.consumers:
            try:
                self.host.delete_queue(self)
            except Exception:  # a bug of ours: logged, the loop's other timers go on
                log.exception("queue %s in vhost %s: expiry failed", self.name, self.host.name)

    # -- deletion -----------------------------------------------------------------------

    def delete(self) -> int:
        """The queue goes away (its vhost has forgotten it): its consumers are cancelled,
        its owner told, its ready messages dropped; returns how many there were."""
        self.deleted = True
        for timer in (self._lease_timer, self._expiry_timer):
            if timer is not None:
                timer.cancel()
        self._lease_timer = self._expiry_timer = None
        consumers = list(self.consumers)
        self.consumers.clear()
        for consumer in consumers:
            consumer.channel.cancel_by_broker(consumer)
        if self.exclusive_owner is not None:
            self.exclusive_owner.exclusive_queue_deleted(self)
        return self.purge()

    # -- consumers --------------------------------------------------------------------

    def add_consumer(self, consumer: Consumer) -> None:
        self.consumers.append(consumer)
        self._had_consumer = True
        if consumer.priority:
            self._consumer_priorities = True
        if self._lease_timer is not None:
            self._lease_timer.cancel()
            self._lease_timer = None
        self.dispatch()

    def remove_consumer(self, consumer: Consumer) -> None:
        try:
            self.consumers.remove(consumer)
        except ValueError:
            return
        if self.auto_delete and self._had_consumer and not self.consumers:
            self.host.delete_queue(self)
            return
        if not self.consumers:
            if self._waiting:  # nobody to wait for
                self._release_publishers()
            self.used()
        elif self._single_active:
            self.dispatch()  # the next consumer in line becomes the active one

    def dispatch(self) -> None:
        """Hand ready messages to consumers that can take them, round-robin."""
        if self._single_active or self._consumer_priorities or self._expiring:
            self._dispatch_with_settings()
            return
        ready = self.ready
        consumers = self.consumers
        while ready and consumers:
            for _ in range(len(consumers)):
                consumer = consumers[0]
                consumers.rotate(-1)
                if consumer.can_take():
                    self._hand_out(consumer, ready.popleft())
                    break
            else:
                break  # nobody can take more now
        if self._waiting and len(ready) <= self._caught_up_at:
            self._release_publishers()

    def _dispatch_with_settings(self) -> None:
        """``dispatch`` for a queue with expiring messages, a single active consumer or
        consumer priorities."""
        ready = self.ready
        consumers = self.consumers
        expiring = self._expiring
        while ready and consumers:
            if expiring:
                self._expire()
                if not ready:
                    break
            consumer = self._next_consumer()
            if consumer is None:
                break
            self._hand_out(consumer, ready.popleft())
        if self._expiring:
            self._schedule_expiry()
        if self._waiting and len(self.ready) <= self._caught_up_at:
            self._release_publishers()

    def _next_consumer(self) -> Consumer | None:
        consumers = self.consumers
        if self._single_active:
            # the first registered consumer still there is the active one
            active = consumers[0]
            return active if active.can_take() else None
        if not self._consumer_priorities:
            for _ in range(len(consumers)):
                consumer = consumers[0]
                consumers.rotate(-1)
                if consumer.can_take():
                    return consumer
            return None
        # the highest priority that can take; round-robin among equals (the chosen one
        # goes to the back of the line)
        chosen = None
        index = 0
        for i, consumer in enumerate(consumers):
            if (chosen is None or consumer.priority > chosen.priority) and consumer.can_take():
                chosen, index = consumer, i
        if chosen is not None:
            del consumers[index]
            consumers.append(chosen)
        return chosen


def _seq(entry: Entry) -> int:
    return entry.seq
