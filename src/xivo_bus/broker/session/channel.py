"""One channel: its methods (exchanges, queues, basic, confirm, tx), its consumers, its
unacked deliveries, publisher confirms and transactions.

A channel raises ``ChannelError``/``ConnectionError`` where it detects a problem; its
connection turns them into ``channel.close``/``connection.close``. It knows its
connection only as a ``ChannelConnection``; queues know it only as a
``roles.ConsumerChannel``.

The path of a publish: ``on_publish`` → ``_route`` (the vhost finds the queues) →
``Queue.enqueue`` → the queue hands the message to a consumer → ``deliver`` → output.
"""

from __future__ import annotations

import base64
import os
from typing import Any, Protocol

from pamqp import commands

from xivo_bus.amqp import errors, frames, properties
from xivo_bus.broker.access import DEFAULT_EXCHANGE, Access
from xivo_bus.broker.model import wording
from xivo_bus.broker.model.arguments import consumer_priority, name_argument, parse_expiration
from xivo_bus.broker.model.exchanges import Exchange, exchange_class
from xivo_bus.broker.model.message import Entry, Message
from xivo_bus.broker.model.queue import Consumer, Delivery, Queue
from xivo_bus.broker.model.stats import MessageStats
from xivo_bus.broker.model.vhost import VHost
from xivo_bus.broker.roles import QueueOwner
from xivo_bus.broker.session.confirms import Confirms
from xivo_bus.broker.session.output import Output
from xivo_bus.broker.session.transactions import Publish, Transaction
from xivo_bus.broker.session.unacked import Unacked
from xivo_bus.broker.users import User

_NO_ROUTE_TEXT = "NO_ROUTE"
REPLY_TO = "amq.rabbitmq.reply-to"
_REPLY_TO_BYTES = REPLY_TO.encode()


def generated_name(prefix: str) -> str:
    """RabbitMQ-style server-generated names: ``amq.gen-…`` and ``amq.ctag-…``."""
    return prefix + base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()


class ChannelConnection(QueueOwner, Protocol):
    """What a channel needs of its connection."""

    vhost: VHost
    user: User
    user_name: str
    max_message_size: int
    output: Output  # deliveries, returns and get-oks are written straight to it

    def send_method(self, channel: int, method: Any) -> None: ...

    def confirms_pending(self, channel: Channel) -> None:
        """The channel published in confirm mode, in this connection's turn."""

    def confirms_settled(self, channel: Channel) -> None:
        """Confirms of the channel became due outside this connection's turn."""

    def outran_queue(self, queue: Queue) -> None:
        """A publish went to a queue that is behind (``Queue.behind``)."""

    def client_capability(self, name: str) -> bool: ...

    def close_channel(self, channel: Channel, error: errors.ChannelError) -> None: ...

    def internal_error(self) -> None: ...


class Channel:
    def __init__(self, connection: ChannelConnection, number: int):
        self.connection = connection
        self.output = connection.output
        self.number = number
        self.vhost = connection.vhost
        self.access = Access(connection.user, self.vhost.name)
        self.consumers: dict[str, Consumer] = {}
        self.unacked = Unacked()
        self.stats = MessageStats()
        self.prefetch_count = 0  # for consumers created from now on (global=false)
        self.prefetch_global = 0  # shared by the channel's consumers (global=true)
        self.last_queue_name: str | None = None
        self.confirms: Confirms | None = None  # in confirm mode
        self.tx: Transaction | None = None  # in tx mode
        self.reply_queue: Queue | None = None  # direct reply-to
        self.closing = False
        self._handlers = {
            commands.Channel.Flow: self.on_flow,
            commands.Exchange.Declare: self.on_exchange_declare,
            commands.Exchange.Delete: self.on_exchange_delete,
            commands.Exchange.Bind: self.on_exchange_bind,
            commands.Exchange.Unbind: self.on_exchange_unbind,
            commands.Queue.Declare: self.on_queue_declare,
            commands.Queue.Bind: self.on_queue_bind,
            commands.Queue.Unbind: self.on_queue_unbind,
            commands.Queue.Purge: self.on_queue_purge,
            commands.Queue.Delete: self.on_queue_delete,
            commands.Basic.Qos: self.on_basic_qos,
            commands.Basic.Consume: self.on_basic_consume,
            commands.Basic.Cancel: self.on_basic_cancel,
            commands.Basic.Get: self.on_basic_get,
            commands.Basic.Ack: self.on_basic_ack,
            commands.Basic.Nack: self.on_basic_nack,
            commands.Basic.Reject: self.on_basic_reject,
            commands.Basic.Recover: self.on_basic_recover,
            commands.Basic.RecoverAsync: self.on_basic_recover,
            commands.Confirm.Select: self.on_confirm_select,
            commands.Tx.Select: self.on_tx_select,
            commands.Tx.Commit: self.on_tx_commit,
            commands.Tx.Rollback: self.on_tx_rollback,
        }

    # -- plumbing ---------------------------------------------------------------------

    def handle(self, method) -> None:
        handler = self._handlers.get(type(method))
        if handler is None:
            raise wording.unimplemented_method(*frames.method_ids(method))
        handler(method)

    def reply(self, method) -> None:
        self.connection.send_method(self.number, method)

    # -- what the consumer timeout sees (roles.TimedChannel) --------------------------

    def unacked_tags(self) -> tuple[int, int] | None:
        oldest = self.unacked.oldest_tag()
        return None if oldest is None else (oldest, self.unacked.last_tag)

    def fail(self, error: errors.ChannelError) -> None:
        self.connection.close_channel(self, error)

    def internal_error(self) -> None:
        self.connection.internal_error()

    # -- what queues see (roles.ConsumerChannel) --------------------------------------

    def can_send(self) -> bool:
        return self.output.has_room() and not self.closing

    def can_take(self) -> bool:
        if self.prefetch_global and len(self.unacked) >= self.prefetch_global:
            return False
        return self.output.has_room() and not self.closing

    def deliver(self, consumer: Consumer, entry: Entry, delivery: Delivery | None):
        tag = self.unacked.add(delivery)
        stats = self.stats
        if delivery is None:
            stats.deliver_no_ack += 1
        else:
            stats.deliver += 1
        if entry.redelivered:
            stats.redeliver += 1
        message = entry.message
        self.output.write_content(
            self.number,
            frames.deliver_payload(
                consumer.tag_ss,
                tag,
                entry.redelivered,
                message.exchange_ss,
                message.routing_key_ss,
            ),
            message,
        )

    def cancel_by_broker(self, consumer: Consumer) -> None:
        """The consumer's queue went away: tell clients that understand basic.cancel."""
        self.consumers.pop(consumer.tag, None)
        if self.connection.client_capability("consumer_cancel_notify") and not self.closing:
            self.reply(commands.Basic.Cancel(consumer_tag=consumer.tag, nowait=True))

    # -- closing ----------------------------------------------------------------------

    def release(self) -> None:
        """The channel is closing: cancel its consumers, requeue what it had not acked."""
        self.closing = True
        for consumer in list(self.consumers.values()):
            self._remove_consumer(consumer)
        self._settle(self.unacked.take_all(), Queue.requeue)

    @staticmethod
    def _settle(deliveries: list[Delivery], how) -> None:
        """Give deliveries back to their queues, one call per queue: ``how`` is
        ``Queue.ack``, ``Queue.reject`` or ``Queue.requeue``."""
        if len(deliveries) == 1:
            how(deliveries[0].queue, deliveries)
            return
        by_queue: dict[Queue, list[Delivery]] = {}
        for delivery in deliveries:
            by_queue.setdefault(delivery.queue, []).append(delivery)
        for queue, settled in by_queue.items():
            how(queue, settled)

    def _queue_name(self, name: str) -> str:
        """An empty queue name means the last queue declared on this channel."""
        if name:
            return name
        if self.last_queue_name is None:
            raise wording.no_previous_queue()
        return self.last_queue_name

    def _queue(self, name: str) -> Queue:
        return self.vhost.queue(self._queue_name(name), self.connection)

    # -- channel ----------------------------------------------------------------------

    def on_flow(self, method: commands.Channel.Flow) -> None:
        if not method.active:
            raise wording.not_implemented("active=false")
        self.reply(commands.Channel.FlowOk(active=True))

    # -- exchanges --------------------------------------------------------------------

    def on_exchange_declare(self, method: commands.Exchange.Declare) -> None:
        name = method.exchange
        if method.passive:
            if name == "":
                raise wording.default_exchange_refused()
            self.vhost.exchange(name)
        else:
            # In RabbitMQ's order: the type, the default exchange, then the reserved
            # prefix, which only matters for an exchange that does not exist yet.
            exchange_class(method.exchange_type)
            if name == "":
                raise wording.default_exchange_refused()
            if name.startswith("amq.") and name not in self.vhost.exchanges:
                raise wording.reserved_prefix("exchange", name)
            self.access.check_exchange("configure", name)
            alternate = name_argument((method.arguments or {}).get("alternate-exchange"))
            if alternate is not None:
                # as RabbitMQ: read on the exchange, write on its alternate
                self.access.check_exchange("read", name)
                self.access.check_exchange("write", alternate)
            self.vhost.declare_exchange(
                name,
                method.exchange_type,
                method.durable,
                method.auto_delete,
                method.internal,
                method.arguments or {},
            )
        if not method.nowait:
            self.reply(commands.Exchange.DeclareOk())

    def on_exchange_delete(self, method: commands.Exchange.Delete) -> None:
        name = method.exchange
        if name == "":
            raise wording.default_exchange_refused()
        if name.startswith("amq."):
            raise wording.system_exchange_deletion(name, self.vhost.name)
        self.access.check_exchange("configure", name)
        self.vhost.delete_exchange(name, method.if_unused)
        if not method.nowait:
            self.reply(commands.Exchange.DeleteOk())

    # -- queues -----------------------------------------------------------------------

    def on_queue_declare(self, method: commands.Queue.Declare) -> None:
        name = method.queue
        if method.passive and (name == REPLY_TO or name in self.vhost.reply_queues):
            # RabbitMQ answers with one consumer for the pseudo-queue and reply queues alike.
            self.reply(
                frames.build(
                    commands.Queue.DeclareOk, queue=name, message_count=0, consumer_count=1
                )
            )
            return
        if method.passive:
            queue = self.vhost.queue(name, self.connection)
        else:
            if name == "":
                name = generated_name("amq.gen-")
            elif name.startswith("amq."):
                raise wording.reserved_prefix("queue", name)
            self.access.check("configure", "queue", name)
            dlx = name_argument((method.arguments or {}).get("x-dead-letter-exchange"))
            if dlx is not None:
                # as RabbitMQ: read on the queue, write on its dead-letter exchange
                self.access.check("read", "queue", name)
                self.access.check_exchange("write", dlx)
            queue = self.vhost.declare_queue(
                name,
                method.durable,
                method.exclusive,
                method.auto_delete,
                method.arguments or {},
                self.connection,
            )
        self.last_queue_name = queue.name
        queue.used()  # (re)declaring renews an x-expires queue's lease
        if not method.nowait:
            self.reply(
                frames.build(
                    commands.Queue.DeclareOk,
                    queue=queue.name,
                    message_count=queue.message_count,
                    consumer_count=queue.consumer_count,
                )
            )

    def _binding_names(self, method) -> tuple[str, str]:
        """The queue and routing key of a queue.bind/unbind. As in RabbitMQ, an empty
        queue name means the last queue declared on the channel, and then an empty
        routing key means that queue's name too."""
        queue_name = self._queue_name(method.queue)
        routing_key = method.routing_key
        if not method.queue and not routing_key:
            routing_key = queue_name
        if method.exchange == "":
            raise wording.default_exchange_refused()
        return queue_name, routing_key

    def _check_binding(self, kind: str, destination: str, source: str, routing_key: str):
        """As RabbitMQ: write on the destination, read on the source, and topic read
        permission on the binding key for a topic exchange."""
        self.access.check("write", kind, destination)
        self.access.check_exchange("read", source)
        exchange = self.vhost.exchanges.get(source)
        if exchange is not None and exchange.type_name == "topic":
            self.access.check_topic("read", source, routing_key)

    def on_queue_bind(self, method: commands.Queue.Bind) -> None:
        queue_name, routing_key = self._binding_names(method)
        self._check_binding("queue", queue_name, method.exchange, routing_key)
        exchange = self.vhost.exchange(method.exchange)
        queue = self.vhost.queue(queue_name, self.connection)
        self.vhost.bind(exchange, queue, routing_key, method.arguments or {})
        if not method.nowait:
            self.reply(commands.Queue.BindOk())

    def on_queue_unbind(self, method: commands.Queue.Unbind) -> None:
        # Unbinding what does not exist succeeds, as in RabbitMQ.
        queue_name, routing_key = self._binding_names(method)
        self._check_binding("queue", queue_name, method.exchange, routing_key)
        exchange = self.vhost.exchanges.get(method.exchange)
        queue = self.vhost.queues.get(queue_name)
        arguments = method.arguments or {}
        if (
            exchange is not None
            and queue is not None
            and exchange.has_binding(queue, routing_key, arguments)
        ):
            self.vhost.check_exclusive(queue, self.connection)
            self.vhost.unbind(exchange, queue, routing_key, arguments)
        self.reply(commands.Queue.UnbindOk())

    def _exchange_pair(self, method):
        """Source and destination of an exchange.bind/unbind (source checked first)."""
        if method.source == "" or method.destination == "":
            raise wording.default_exchange_refused()
        self._check_binding("exchange", method.destination, method.source, method.routing_key)
        return self.vhost.exchange(method.source), self.vhost.exchange(method.destination)

    def on_exchange_bind(self, method: commands.Exchange.Bind) -> None:
        source, destination = self._exchange_pair(method)
        self.vhost.bind(source, destination, method.routing_key, method.arguments or {})
        if not method.nowait:
            self.reply(commands.Exchange.BindOk())

    def on_exchange_unbind(self, method: commands.Exchange.Unbind) -> None:
        if method.source == "" or method.destination == "":
            raise wording.default_exchange_refused()
        self._check_binding("exchange", method.destination, method.source, method.routing_key)
        source = self.vhost.exchanges.get(method.source)
        destination = self.vhost.exchanges.get(method.destination)
        if source is not None and destination is not None:
            self.vhost.unbind(source, destination, method.routing_key, method.arguments or {})
        if not method.nowait:
            self.reply(commands.Exchange.UnbindOk())

    def on_queue_purge(self, method: commands.Queue.Purge) -> None:
        self.access.check("read", "queue", self._queue_name(method.queue))
        count = self._queue(method.queue).purge()
        if not method.nowait:
            self.reply(commands.Queue.PurgeOk(message_count=count))

    def on_queue_delete(self, method: commands.Queue.Delete) -> None:
        name = self._queue_name(method.queue)
        self.access.check("configure", "queue", name)
        queue = self.vhost.queues.get(name)
        count = 0
        if queue is not None:
            self.vhost.check_exclusive(queue, self.connection)
            if method.if_unused and queue.consumers:
                raise wording.in_use("queue", name, self.vhost.name)
            if method.if_empty and queue.ready:
                raise wording.not_empty(name, self.vhost.name)
            count = queue.message_count
        # As RabbitMQ: delete-ok first, then the basic.cancel its consumers get.
        if not method.nowait:
            self.reply(commands.Queue.DeleteOk(message_count=count))
        if queue is not None:
            self.vhost.delete_queue(queue)

    # -- basic: consuming -------------------------------------------------------------

    def on_basic_qos(self, method: commands.Basic.Qos) -> None:
        if method.prefetch_size:
            raise wording.not_implemented(f"prefetch_size!=0 ({method.prefetch_size})")
        if method.global_:
            self.prefetch_global = method.prefetch_count
        else:
            self.prefetch_count = method.prefetch_count
        self.reply(commands.Basic.QosOk())
        for consumer in list(self.consumers.values()):
            consumer.queue.dispatch()

    def on_basic_consume(self, method: commands.Basic.Consume) -> None:
        if method.queue == REPLY_TO:
            queue = self._reply_queue(method)
        else:
            self.access.check("read", "queue", self._queue_name(method.queue))
            queue = self._queue(method.queue)
        tag = method.consumer_tag or generated_name("amq.ctag-")
        if tag in self.consumers:
            raise wording.consumer_tag_reused(tag)
        priority = consumer_priority(queue.name, self.vhost.name, method.arguments)
        if queue.consumers and (method.exclusive or queue.has_exclusive_consumer()):
            raise wording.exclusive_use(queue.name, self.vhost.name)
        consumer = Consumer(
            tag,
            frames.short_str(tag),
            self,
            queue,
            method.no_ack,
            method.exclusive,
            self.prefetch_count,
            priority,
        )
        self.consumers[tag] = consumer
        if not method.nowait:
            self.reply(commands.Basic.ConsumeOk(consumer_tag=tag))
        queue.add_consumer(consumer)

    def _reply_queue(self, method: commands.Basic.Consume) -> Queue:
        """Direct reply-to: consuming from the pseudo-queue gives the channel a private
        queue that replies are routed to by its name (never declared, never bound)."""
        if not method.no_ack:
            raise wording.precondition("reply consumer cannot acknowledge")
        if self.reply_queue is not None:
            raise wording.precondition("reply consumer already set")
        name = generated_name(f"{REPLY_TO}.")
        self.reply_queue = self.vhost.add_reply_queue(name, self.connection)
        return self.reply_queue

    def _direct_reply_to(self, raw_properties: bytes) -> bytes:
        """A request whose reply_to is the pseudo-queue gets this channel's reply queue
        name instead, so that the reply comes back here."""
        decoded = properties.decode(raw_properties)
        if decoded.reply_to != REPLY_TO:
            return raw_properties
        if self.reply_queue is None:
            raise wording.precondition("fast reply consumer does not exist")
        decoded.reply_to = self.reply_queue.name
        return properties.encode(decoded)

    def _remove_consumer(self, consumer: Consumer) -> None:
        del self.consumers[consumer.tag]
        consumer.queue.remove_consumer(consumer)
        if consumer.queue is self.reply_queue:
            self.vhost.remove_reply_queue(self.reply_queue)
            self.reply_queue = None

    def on_basic_cancel(self, method: commands.Basic.Cancel) -> None:
        consumer = self.consumers.get(method.consumer_tag)
        if not method.nowait:
            self.reply(commands.Basic.CancelOk(consumer_tag=method.consumer_tag))
        if consumer is not None:
            self._remove_consumer(consumer)

    def on_basic_get(self, method: commands.Basic.Get) -> None:
        self.access.check("read", "queue", self._queue_name(method.queue))
        queue = self._queue(method.queue)
        got = queue.get(method.no_ack)
        stats = self.stats
        if got is None:
            stats.get_empty += 1
            queue.stats.get_empty += 1
            self.reply(commands.Basic.GetEmpty())
            return
        entry, delivery = got
        if delivery is None:
            stats.get_no_ack += 1
        else:
            stats.get += 1
        if entry.redelivered:
            stats.redeliver += 1
        tag = self.unacked.add(delivery)
        message = entry.message
        get_ok = frames.build(
            commands.Basic.GetOk,
            delivery_tag=tag,
            redelivered=entry.redelivered,
            exchange=message.exchange,
            routing_key=message.routing_key,
            message_count=queue.message_count,
        )
        self.output.write_content(self.number, frames.encode_method(get_ok), message)

    # -- basic: acknowledgements ------------------------------------------------------

    def on_basic_ack(self, method: commands.Basic.Ack) -> None:
        if self.tx is not None:
            self.unacked.check_known(method.delivery_tag, method.multiple)
            self.tx.settle(method)
            return
        acked = self.unacked.take(method.delivery_tag, method.multiple)
        self.stats.ack += len(acked)
        self._settle(acked, Queue.ack)

    def on_basic_nack(self, method: commands.Basic.Nack) -> None:
        self._reject(method, method.delivery_tag, method.multiple, method.requeue)

    def on_basic_reject(self, method: commands.Basic.Reject) -> None:
        self._reject(method, method.delivery_tag, False, method.requeue)

    def _reject(self, method, delivery_tag: int, multiple: bool, requeue: bool) -> None:
        if self.tx is not None:
            self.unacked.check_known(delivery_tag, multiple)
            self.tx.settle(method)
            return
        deliveries = self.unacked.take(delivery_tag, multiple)
        self._settle(deliveries, Queue.requeue if requeue else Queue.reject)

    def on_basic_recover(self, method) -> None:
        if not method.requeue:
            raise wording.not_implemented("requeue=false")
        if isinstance(method, commands.Basic.Recover):
            self.reply(commands.Basic.RecoverOk())  # RabbitMQ answers before redelivering
        self._settle(self.unacked.take_all(), Queue.requeue)

    # -- basic: publishing ------------------------------------------------------------

    def on_publish(self, method: commands.Basic.Publish, raw_properties: bytes, body: bytes):
        self.access.check("write", "exchange", method.exchange or DEFAULT_EXCHANGE)
        exchange = self.vhost.exchanges.get(method.exchange)
        if exchange is None:
            raise wording.not_found("exchange", method.exchange, self.vhost.name)
        if exchange.type_name == "topic":
            self.access.check_topic("write", method.exchange, method.routing_key)
        if exchange.internal:
            raise wording.internal_exchange(method.exchange, self.vhost.name)
        if method.immediate:
            raise wording.not_implemented("immediate=true")
        limit = self.connection.max_message_size
        if len(body) > limit:
            raise wording.message_too_large(len(body), limit)
        if _REPLY_TO_BYTES in raw_properties:
            raw_properties = self._direct_reply_to(raw_properties)
        message = Message(method.exchange, method.routing_key, raw_properties, body)
        if properties.has_user_id(raw_properties):
            user_id = message.properties.user_id
            if user_id != self.connection.user_name:
                raise wording.user_id_mismatch(user_id, self.connection.user_name)
        if properties.has_expiration(raw_properties):
            message.ttl = parse_expiration(message.properties.expiration)
        self.stats.publish += 1
        if self.tx is not None:
            self.tx.publish(exchange, message, method.mandatory)
            return
        write, refused, copies, message = self._route(exchange, message, method.mandatory)
        if write:
            self.output.wrote(write)
        confirms = self.confirms
        if confirms is not None:
            self.stats.confirm += 1
            pending = confirms.published(refused, write, copies)
            if pending is not None:  # acked once on disk, or consumed, whichever first
                message.pending_confirm = pending
            self.connection.confirms_pending(self)

    def _route(
        self, exchange: Exchange, message: Message, mandatory: bool
    ) -> tuple[int, bool, int, Message]:
        """Enqueue where the exchange routes (returned to the publisher when unroutable
        and mandatory); returns the store write to wait for (0: none), whether a queue
        refused the message, how many queues stored it, and the message as queued."""
        queues = self.vhost.route(exchange, message)
        exchange.stats.publish_in += 1
        if not queues:
            if mandatory:
                self.stats.return_unroutable += 1
                returned = frames.build(
                    commands.Basic.Return,
                    reply_code=errors.NO_ROUTE,
                    reply_text=_NO_ROUTE_TEXT,
                    exchange=message.exchange,
                    routing_key=message.routing_key,
                )
                self.output.write_content(self.number, frames.encode_method(returned), message)
            else:
                self.stats.drop_unroutable += 1
            return 0, False, 0, message
        exchange.stats.publish_out += 1
        write = 0
        copies = 0
        refused = False
        behind = None  # a queue that is behind, if any (credit flow)
        message = message.without_bcc()
        for queue in queues:
            queue_write = queue.enqueue(message)
            if queue_write is None:
                refused = True
            elif queue_write:
                copies += 1
                if queue_write > write:
                    write = queue_write
            if queue.behind:
                behind = queue
        if behind is not None:
            self.connection.outran_queue(behind)
        return write, refused, copies, message

    def _settled_early(self) -> None:
        """Every queue was done with a publish before its write: ack it soon."""
        self.connection.confirms_settled(self)

    def send_confirms(self) -> bool:
        """Confirm the publishes that are due (``Confirms.due``); returns whether some
        still wait for the disk."""
        confirms = self.confirms
        if confirms is None or self.closing:
            return False
        for acked, tag, multiple in confirms.due(self.output.committed):
            kind = commands.Basic.Ack if acked else commands.Basic.Nack
            self.reply(kind(delivery_tag=tag, multiple=multiple))
        return confirms.waiting

    # -- confirm and tx ---------------------------------------------------------------

    def on_confirm_select(self, method: commands.Confirm.Select) -> None:
        if self.tx is not None:
            raise wording.precondition("cannot switch from tx to confirm mode")
        if self.confirms is None:
            self.confirms = Confirms(self._settled_early)
        if not method.nowait:
            self.reply(commands.Confirm.SelectOk())

    def on_tx_select(self, method: commands.Tx.Select) -> None:
        if self.confirms is not None:
            raise wording.precondition("cannot switch from confirm to tx mode")
        if self.tx is None:
            self.tx = Transaction()
        self.reply(commands.Tx.SelectOk())

    def _require_tx(self) -> Transaction:
        if self.tx is None:
            raise wording.precondition("channel is not transactional")
        return self.tx

    def on_tx_commit(self, method: commands.Tx.Commit) -> None:
        tx = self._require_tx()
        pending = tx.commit()
        self.tx = None  # apply for real, then back to tx mode
        try:
            for item in pending:
                if isinstance(item, Publish):
                    write, _, _, _ = self._route(item.exchange, item.message, item.mandatory)
                    self.output.wrote(write)
                    self.output.hold_output_until(write)
                elif isinstance(item, commands.Basic.Ack):
                    self.on_basic_ack(item)
                elif isinstance(item, commands.Basic.Nack):
                    self.on_basic_nack(item)
                else:
                    self.on_basic_reject(item)
        finally:
            self.tx = tx
        self.reply(commands.Tx.CommitOk())

    def on_tx_rollback(self, method: commands.Tx.Rollback) -> None:
        self._require_tx().rollback()
        self.reply(commands.Tx.RollbackOk())
