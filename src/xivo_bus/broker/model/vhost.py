"""A virtual host: the registry of exchanges, queues and bindings, and the routing of a
message through them (exchange-to-exchange bindings, alternate exchanges, CC/BCC,
dead-lettering).

Every check here raises ``ChannelError`` with RabbitMQ's reply code and text; the caller
fills in the class and method ids of the method being served. The vhost is each of its
queues' host (``roles.QueueHost``): it stores, deletes and dead-letters for them.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from xivo_bus.broker.model import deadletter, wording
from xivo_bus.broker.model.arguments import check_equivalent, check_queue_declare
from xivo_bus.broker.model.exchanges import DefaultExchange, Exchange, exchange_class
from xivo_bus.broker.model.message import Entry, Message
from xivo_bus.broker.model.queue import Queue
from xivo_bus.broker.model.stats import MessageStats
from xivo_bus.broker.roles import Clock, DurableStore, QueueOwner

if TYPE_CHECKING:
    from xivo_bus.broker.store import Recovered

log = logging.getLogger("xivo_bus.broker")

# The exchanges every vhost has; xivo-cti is the XiVO CTI server's, there from the start
# so that the spec's example client can bind to it at once.
PREDECLARED = (
    ("amq.direct", "direct"),
    ("amq.fanout", "fanout"),
    ("amq.topic", "topic"),
    ("amq.headers", "headers"),
    ("amq.match", "headers"),
)
TRACE_EXCHANGE = "amq.rabbitmq.trace"  # RabbitMQ's firehose: internal, topic
XIVO_CTI = "xivo-cti"
DEFAULT_VHOST = "/"


EVERY_SEQ = 1 << 62  # beyond any entry's seq


class VHost:
    def __init__(
        self,
        clock: Clock,
        name: str = "/",
        store: DurableStore | None = None,
        limits: dict[str, int] | None = None,
    ):
        self.clock = clock
        self.name = name
        self.retired_stats = MessageStats()  # of its channels now closed
        # churn, as RabbitMQ counts it: declarations, creations and deletions of queues
        self.queues_declared = self.queues_created = self.queues_deleted = 0
        self.store = store
        self.limits: dict[str, int] = limits or {}  # max-connections, max-queues
        self.queues: dict[str, Queue] = {}
        self.reply_queues: dict[str, Queue] = {}  # direct reply-to, by routing key
        self.default_exchange = DefaultExchange(self.queues, self.reply_queues)
        self.exchanges: dict[str, Exchange] = {"": self.default_exchange}
        for exchange_name, type_name in PREDECLARED:
            self.exchanges[exchange_name] = exchange_class(type_name)(exchange_name, durable=True)
        self.exchanges[TRACE_EXCHANGE] = exchange_class("topic")(
            TRACE_EXCHANGE, durable=True, internal=True
        )
        if name == DEFAULT_VHOST:  # XiVO's CTI server publishes there
            self.exchanges[XIVO_CTI] = exchange_class("direct")(XIVO_CTI, durable=True)

    # -- lookups ----------------------------------------------------------------------

    def exchange(self, name: str) -> Exchange:
        exchange = self.exchanges.get(name)
        if exchange is None:
            raise wording.not_found("exchange", name, self.name)
        return exchange

    def queue(self, name: str, owner: QueueOwner | None) -> Queue:
        """Find a queue for use by ``owner`` (a connection); exclusive queues of others
        are locked."""
        queue = self.queues.get(name)
        if queue is None:
            raise wording.not_found("queue", name, self.name)
        self.check_exclusive(queue, owner)
        return queue

    def check_exclusive(self, queue: Queue, owner: QueueOwner | None) -> None:
        if queue.exclusive_owner is not None and queue.exclusive_owner is not owner:
            raise wording.locked(queue.name, self.name)

    # -- exchanges --------------------------------------------------------------------

    def declare_exchange(
        self,
        name: str,
        type_name: str,
        durable: bool,
        auto_delete: bool,
        internal: bool,
        arguments: dict,
    ) -> Exchange:
        existing = self.exchanges.get(name)
        if existing is None:
            exchange = exchange_class(type_name)(name, durable, auto_delete, internal, arguments)
            self.exchanges[name] = exchange
            if durable and self.store is not None:
                self.store.save_exchange(self.name, exchange)
            return exchange
        check_equivalent(
            "exchange",
            name,
            self.name,
            {
                "type": type_name,
                "durable": durable,
                "auto_delete": auto_delete,
                "internal": internal,
            },
            {
                "type": existing.type_name,
                "durable": existing.durable,
                "auto_delete": existing.auto_delete,
                "internal": existing.internal,
            },
            (arguments, existing.arguments),
        )
        return existing

    def delete_exchange(self, name: str, if_unused: bool) -> None:
        exchange = self.exchanges.get(name)
        if exchange is None:
            return  # idempotent, as RabbitMQ
        if if_unused and exchange.bindings:
            raise wording.in_use("exchange", name, self.name)
        self._remove_exchange(exchange)

    def _remove_exchange(self, exchange: Exchange) -> None:
        del self.exchanges[exchange.name]
        if exchange.durable and self.store is not None:
            self.store.delete_exchange(self.name, exchange.name)
        self._unbind_everywhere(exchange)

    def _unbind_everywhere(self, destination: Queue | Exchange) -> None:
        """Remove the bindings to a deleted queue or exchange; auto_delete exchanges
        left without bindings go too."""
        for source in list(self.exchanges.values()):
            if source.unbind_all(destination):
                self.exchange_unbound(source)

    def exchange_unbound(self, exchange: Exchange) -> None:
        """An auto_delete exchange goes away with its last binding."""
        if exchange.auto_delete and not exchange.bindings and exchange.name in self.exchanges:
            self._remove_exchange(exchange)

    # -- queues -----------------------------------------------------------------------

    def declare_queue(
        self,
        name: str,
        durable: bool,
        exclusive: bool,
        auto_delete: bool,
        arguments: dict,
        owner: QueueOwner,
    ) -> Queue:
        """Declare a queue for ``owner`` (a connection; it owns the queue when
        ``exclusive``), or check that a redeclaration is equivalent."""
        self.queues_declared += 1
        existing = self.queues.get(name)
        if existing is None:
            check_queue_declare(name, self.name, arguments, durable, exclusive, auto_delete)
            limit = self.limits.get("max-queues", -1)
            if 0 <= limit <= len(self.queues):
                raise wording.queue_limit(name, self.name, limit)
            queue = Queue(self, name, durable, owner if exclusive else None, auto_delete, arguments)
            self.queues[name] = queue
            self.queues_created += 1
            if exclusive:
                owner.exclusive_queue_declared(queue)
            elif queue.stores_messages:
                self.store.save_queue(self.name, queue)
            return queue
        self.check_exclusive(existing, owner)
        if exclusive != existing.exclusive:
            raise wording.locked(name, self.name)  # RabbitMQ answers 405 here, not 406
        check_equivalent(
            "queue",
            name,
            self.name,
            {"durable": durable, "auto_delete": auto_delete},
            {"durable": existing.durable, "auto_delete": existing.auto_delete},
            (arguments, existing.arguments),
        )
        return existing

    def delete_queue(self, queue: Queue) -> int:
        """Remove a queue and its bindings; its consumers are cancelled. Returns the
        number of ready messages it held."""
        if queue.deleted:
            return 0
        self.queues.pop(queue.name, None)
        self.queues_deleted += 1
        self._unbind_everywhere(queue)
        count = queue.delete()
        if queue.stores_messages and not queue.exclusive:
            self.store.delete_queue(self.name, queue.name)
        return count

    def set_limits(self, limits: dict[str, int]) -> None:
        self.limits = dict(limits)

    def delete_everything(self) -> None:
        """The vhost is deleted: every queue goes (its consumers cancelled, its timers
        stopped, its stored messages removed); the store then forgets the vhost."""
        for queue in [*self.queues.values(), *self.reply_queues.values()]:
            queue.delete()
        self.queues.clear()
        self.reply_queues.clear()

    # -- direct reply-to --------------------------------------------------------------

    def add_reply_queue(self, name: str, owner: QueueOwner) -> Queue:
        """Direct reply-to: a channel's private queue, routed to by its name from the
        default exchange (never declared, never bound)."""
        queue = self.reply_queues[name] = Queue(self, name, exclusive_owner=owner)
        return queue

    def remove_reply_queue(self, queue: Queue) -> None:
        self.reply_queues.pop(queue.name, None)

    # -- bindings ---------------------------------------------------------------------

    def _stores_binding(self, exchange: Exchange, destination: Queue | Exchange) -> bool:
        if self.store is None or not exchange.durable:
            return False
        if isinstance(destination, Exchange):
            return destination.durable
        return destination.stores_messages and not destination.exclusive

    def bind(
        self, exchange: Exchange, destination: Queue | Exchange, routing_key: str, arguments: dict
    ) -> None:
        exchange.check_binding(arguments)
        if exchange.bind(destination, routing_key, arguments):
            self._store_binding(True, exchange, destination, routing_key, arguments)

    def unbind(
        self, exchange: Exchange, destination: Queue | Exchange, routing_key: str, arguments: dict
    ) -> None:
        if exchange.unbind(destination, routing_key, arguments):
            self._store_binding(False, exchange, destination, routing_key, arguments)
            self.exchange_unbound(exchange)

    def _store_binding(
        self,
        present: bool,
        exchange: Exchange,
        destination: Queue | Exchange,
        routing_key: str,
        arguments: dict,
    ) -> None:
        if self._stores_binding(exchange, destination):
            kind = "exchange" if isinstance(destination, Exchange) else "queue"
            self.store.set_binding(
                present, self.name, exchange.name, kind, destination.name, routing_key, arguments
            )

    # -- routing ----------------------------------------------------------------------

    def route(self, exchange: Exchange, message: Message) -> list[Queue]:
        """The queues a message published to ``exchange`` goes to: following
        exchange-to-exchange bindings (each exchange once, so cycles cannot duplicate),
        alternate exchanges when an exchange routes nowhere, and the extra routing keys
        of the CC and BCC headers. Each queue appears once."""
        keys = message.sender_routes()
        if exchange.simple and keys is None:
            return exchange.route(message, message.routing_key)  # the usual case
        keys = [message.routing_key, *(keys or ())]
        queues: dict[Queue, None] = {}
        seen = {exchange}
        pending = [exchange]
        while pending:
            source = pending.pop()
            found: dict = {}
            for key in keys:
                found.update(dict.fromkeys(source.route(message, key)))
            if not found and source.alternate_exchange:
                alternate = self.exchanges.get(source.alternate_exchange)
                if alternate is not None:
                    found[alternate] = None
            for destination in found:
                if isinstance(destination, Exchange):
                    if destination not in seen:
                        seen.add(destination)
                        pending.append(destination)
                else:
                    queues[destination] = None
        return list(queues)

    def dead_letter(
        self,
        queue: str,
        messages: list[Message],
        reason: str,
        exchange: str,
        routing_key: str | None,
    ) -> None:
        """Republish ``messages`` that left ``queue`` for ``reason`` (rejected, expired,
        maxlen) to the dead-letter exchange ``exchange``; dropped when it does not exist,
        and for a queue they would come back to in an automatic cycle."""
        target = self.exchanges.get(exchange)
        if target is None:
            return  # no dead-letter exchange: dropped, as in RabbitMQ
        for message in messages:
            dead, deaths = deadletter.dead_lettered(message, reason, queue, exchange, routing_key)
            for destination in self.route(target, dead):
                if reason != "rejected" and deadletter.is_cycle(destination.name, deaths):
                    log.debug("dead-letter cycle: message dropped for queue %s", destination.name)
                    continue
                destination.enqueue(dead)

    # -- start-up ---------------------------------------------------------------------

    def restore(self, recovered: Recovered) -> None:
        """Re-create the durable exchanges, queues and bindings read from the store
        (their messages follow, through ``restore_entry``)."""
        for vhost, name, type_name, auto_delete, internal, arguments in recovered.exchanges:
            if vhost == self.name and name not in self.exchanges:
                self.exchanges[name] = exchange_class(type_name)(
                    name, True, auto_delete, internal, arguments
                )
        for stored in recovered.queues:
            if stored.vhost != self.name:
                continue
            self.queues[stored.name] = Queue(
                self,
                stored.name,
                True,
                None,
                stored.auto_delete,
                stored.arguments,
                # after a crash, any message may have been delivered: all come back flagged
                stored.delivered_upto if recovered.clean else EVERY_SEQ,
            )
        for vhost, exchange_name, kind, name, routing_key, arguments in recovered.bindings:
            exchange = self.exchanges.get(exchange_name)
            destination = (self.exchanges if kind == "exchange" else self.queues).get(name)
            if vhost == self.name and exchange is not None and destination is not None:
                exchange.bind(destination, routing_key, arguments)

    def restore_entry(
        self, queue_name: str, seq: int, expires_at: float | None, message: Message
    ) -> None:
        """Put a stored message back in its queue, in order; those that had been
        delivered before the stop come back flagged redelivered."""
        queue = self.queues[queue_name]
        queue.restore(Entry(message, seq, seq <= queue.delivered_upto), expires_at)
