"""A virtual host: the registry of exchanges, queues and bindings.

Every check here raises ``ChannelError`` with RabbitMQ's reply code and text; the caller
fills in the class and method ids of the method being served.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from xivo_bus.amqp import errors
from xivo_bus.broker.arguments import check_queue_declare
from xivo_bus.broker.arguments import type_name as _type_name
from xivo_bus.broker.exchanges import DefaultExchange, Exchange, exchange_class
from xivo_bus.broker.message import Entry, Message
from xivo_bus.broker.queue import Queue

if TYPE_CHECKING:
    from xivo_bus.broker.connection import Connection
    from xivo_bus.broker.store import Recovered, Store

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


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return _bool(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _inequivalent(
    what: str, name: str, vhost: str, arg: str, received: Any, current: Any
) -> errors.ChannelError:
    return errors.ChannelError(
        errors.PRECONDITION_FAILED,
        f"inequivalent arg '{arg}' for {what} '{name}' in vhost '{vhost}': "
        f"received '{received}' but current is '{current}'",
    )


# The declaration arguments RabbitMQ checks for equivalence on redeclare; others are
# accepted and ignored.
EXCHANGE_ARGUMENTS = ("alternate-exchange",)
QUEUE_ARGUMENTS = (
    "x-expires",
    "x-message-ttl",
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-max-length",
    "x-max-length-bytes",
    "x-max-in-memory-length",
    "x-max-in-memory-bytes",
    "x-max-priority",
    "x-overflow",
    "x-queue-mode",
    "x-queue-type",
    "x-single-active-consumer",
    "x-quorum-initial-group-size",
    "x-delivery-limit",
    "x-queue-master-locator",
    "x-queue-leader-locator",
    "x-initial-cluster-size",
    "x-max-age",
)


def check_arguments(
    what: str, name: str, vhost: str, received: dict, current: dict, checked: tuple[str, ...]
) -> None:
    """Redeclaring with different arguments is refused, as RabbitMQ does."""
    for key in checked:
        if received.get(key) == current.get(key):
            continue
        if key not in current:
            got = received[key]
            text = (
                f"inequivalent arg '{key}' for {what} '{name}' in vhost '{vhost}': "
                f"received the value '{_shown(got)}' of type '{_type_name(got)}' "
                "but current is none"
            )
        elif key not in received:
            cur = current[key]
            text = (
                f"inequivalent arg '{key}' for {what} '{name}' in vhost '{vhost}': "
                f"received none but current is the value '{_shown(cur)}' of type "
                f"'{_type_name(cur)}'"
            )
        else:
            text = (
                f"inequivalent arg '{key}' for {what} '{name}' in vhost '{vhost}': "
                f"received '{_shown(received[key])}' but current is '{_shown(current[key])}'"
            )
        raise errors.ChannelError(errors.PRECONDITION_FAILED, text)


class VHost:
    def __init__(self, name: str = "/", store: Store | None = None):
        self.name = name
        self.store = store
        self.queues: dict[str, Queue] = {}
        self.reply_queues: dict[str, Queue] = {}  # direct reply-to, by routing key
        self.default_exchange = DefaultExchange(self.queues, self.reply_queues)
        self.exchanges: dict[str, Exchange] = {"": self.default_exchange}
        for exchange_name, type_name in PREDECLARED:
            self.exchanges[exchange_name] = exchange_class(type_name)(exchange_name, durable=True)
        self.exchanges[TRACE_EXCHANGE] = exchange_class("topic")(
            TRACE_EXCHANGE, durable=True, internal=True
        )
        self.exchanges[XIVO_CTI] = exchange_class("direct")(XIVO_CTI, durable=True)

    # -- lookups ----------------------------------------------------------------------

    def exchange(self, name: str) -> Exchange:
        exchange = self.exchanges.get(name)
        if exchange is None:
            raise errors.ChannelError(
                errors.NOT_FOUND, f"no exchange '{name}' in vhost '{self.name}'"
            )
        return exchange

    def queue(self, name: str, connection: Connection | None) -> Queue:
        """Find a queue for use by ``connection``; exclusive queues of others are locked."""
        queue = self.queues.get(name)
        if queue is None:
            raise errors.ChannelError(errors.NOT_FOUND, f"no queue '{name}' in vhost '{self.name}'")
        self.check_exclusive(queue, connection)
        return queue

    def check_exclusive(self, queue: Queue, connection: Connection | None) -> None:
        if queue.exclusive_owner is not None and queue.exclusive_owner is not connection:
            raise self._locked(queue)

    def _locked(self, queue: Queue) -> errors.ChannelError:
        return errors.ChannelError(
            errors.RESOURCE_LOCKED,
            f"cannot obtain exclusive access to locked queue '{queue.name}' in vhost "
            f"'{self.name}'. It could be originally declared on another connection or the "
            "exclusive property value does not match that of the original declaration.",
        )

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
        what = "exchange"
        if existing.type_name != type_name:
            raise _inequivalent(what, name, self.name, "type", type_name, existing.type_name)
        for arg, got, cur in (
            ("durable", durable, existing.durable),
            ("auto_delete", auto_delete, existing.auto_delete),
            ("internal", internal, existing.internal),
        ):
            if got != cur:
                raise _inequivalent(what, name, self.name, arg, _bool(got), _bool(cur))
        check_arguments(what, name, self.name, arguments, existing.arguments, EXCHANGE_ARGUMENTS)
        return existing

    def delete_exchange(self, name: str, if_unused: bool) -> None:
        exchange = self.exchanges.get(name)
        if exchange is None:
            return  # idempotent, as RabbitMQ
        if if_unused and exchange.bindings:
            raise errors.ChannelError(
                errors.PRECONDITION_FAILED, f"exchange '{name}' in vhost '{self.name}' in use"
            )
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
        connection: Connection,
    ) -> Queue:
        existing = self.queues.get(name)
        if existing is None:
            check_queue_declare(name, self.name, arguments, durable, exclusive, auto_delete)
            queue = Queue(
                self, name, durable, connection if exclusive else None, auto_delete, arguments
            )
            self.queues[name] = queue
            if queue.stores_messages and not exclusive:
                self.store.save_queue(self.name, queue)
            if exclusive:
                connection.exclusive_queues.append(queue)
            return queue
        self.check_exclusive(existing, connection)
        if exclusive != existing.exclusive:
            raise self._locked(existing)  # RabbitMQ answers 405 here, not 406
        what = "queue"
        for arg, got, cur in (
            ("durable", durable, existing.durable),
            ("auto_delete", auto_delete, existing.auto_delete),
        ):
            if got != cur:
                raise _inequivalent(what, name, self.name, arg, _bool(got), _bool(cur))
        check_arguments(what, name, self.name, arguments, existing.arguments, QUEUE_ARGUMENTS)
        return existing

    def delete_queue(self, queue: Queue) -> int:
        """Remove a queue and its bindings; its consumers are cancelled. Returns the
        number of ready messages it held."""
        if queue.deleted:
            return 0
        queue.deleted = True
        self.queues.pop(queue.name, None)
        self._unbind_everywhere(queue)
        for consumer in list(queue.consumers):
            consumer.channel.cancel_by_broker(consumer)
        queue.consumers.clear()
        if queue.exclusive_owner is not None:
            try:
                queue.exclusive_owner.exclusive_queues.remove(queue)
            except ValueError:
                pass
        count = queue.purge()
        if queue.stores_messages and not queue.exclusive:
            self.store.delete_queue(self.name, queue.name)
        return count

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
            queue = Queue(self, stored.name, True, None, stored.auto_delete, stored.arguments)
            self.queues[stored.name] = queue
            queue.delivered_upto = stored.delivered_upto
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
