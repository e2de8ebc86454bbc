"""Per-channel state and the channel-level methods: exchanges, queues, basic, confirm, tx.

A channel raises ``ChannelError``/``ConnectionError`` where it detects a problem; its
connection turns them into ``channel.close``/``connection.close``.
"""

from __future__ import annotations

import base64
import os
from collections import OrderedDict
from typing import TYPE_CHECKING

from pamqp import commands

from xivo_bus.amqp import errors, frames, properties
from xivo_bus.broker.arguments import consumer_priority, parse_expiration
from xivo_bus.broker.exchanges import exchange_class
from xivo_bus.broker.message import Entry, Message
from xivo_bus.broker.queue import REFUSED, Consumer, Queue

if TYPE_CHECKING:
    from xivo_bus.broker.connection import Connection

_NO_ROUTE_TEXT = "NO_ROUTE"
REPLY_TO = "amq.rabbitmq.reply-to"
_REPLY_TO_BYTES = REPLY_TO.encode()


def generated_name(prefix: str) -> str:
    """RabbitMQ-style server-generated names: ``amq.gen-…`` and ``amq.ctag-…``."""
    return prefix + base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()


def _default_exchange_refused() -> errors.ChannelError:
    return errors.ChannelError(
        errors.ACCESS_REFUSED, "operation not permitted on the default exchange"
    )


class Delivery:
    """An unacked delivery: the queue entry, its queue and the consumer (None for basic.get)."""

    __slots__ = ("entry", "queue", "consumer")

    def __init__(self, entry: Entry, queue: Queue, consumer: Consumer | None):
        self.entry = entry
        self.queue = queue
        self.consumer = consumer


class Channel:
    def __init__(self, connection: Connection, number: int):
        self.connection = connection
        self.number = number
        self.vhost = connection.vhost
        self.consumers: dict[str, Consumer] = {}
        self.unacked: OrderedDict[int, Delivery] = OrderedDict()
        self.delivery_tag = 0
        self.prefetch_count = 0  # for consumers created from now on (global=false)
        self.prefetch_global = 0  # shared by the channel's consumers (global=true)
        self.last_queue_name: str | None = None
        self.confirm = False
        self.publish_seq = 0
        self.confirmed_seq = 0
        self.nacked: list[int] = []  # publish seqs a queue refused, to nack
        self._refused = False  # the publish being routed was refused by a queue
        self.tx: list | None = None  # pending publishes and acks while in tx mode
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
            class_id, method_id = frames.method_ids(method)
            raise errors.ConnectionError(
                errors.COMMAND_INVALID, "unimplemented method", class_id, method_id
            )
        handler(method)

    def reply(self, method) -> None:
        self.connection.send_method(self.number, method)

    def can_send(self) -> bool:
        return self.connection.writable and not self.closing

    def can_take(self) -> bool:
        if self.prefetch_global and len(self.unacked) >= self.prefetch_global:
            return False
        return self.connection.writable and not self.closing

    def release(self) -> None:
        """The channel is closing: cancel its consumers, requeue what it had not acked."""
        self.closing = True
        for consumer in list(self.consumers.values()):
            self._remove_consumer(consumer)
        self._requeue(list(self.unacked.values()))
        self.unacked.clear()

    def _requeue(self, deliveries: list[Delivery]) -> None:
        by_queue: dict[Queue, list[Entry]] = {}
        for delivery in deliveries:
            self._settled(delivery)
            by_queue.setdefault(delivery.queue, []).append(delivery.entry)
        for queue, entries in by_queue.items():
            queue.requeue(entries)

    def _settled(self, delivery: Delivery) -> None:
        delivery.queue.unacked -= 1
        if delivery.consumer is not None:
            delivery.consumer.unacked -= 1

    def _queue_name(self, name: str) -> str:
        """An empty queue name means the last queue declared on this channel."""
        if name:
            return name
        if self.last_queue_name is None:
            raise errors.ChannelError(errors.NOT_FOUND, "no previously declared queue")
        return self.last_queue_name

    def _queue(self, name: str) -> Queue:
        return self.vhost.queue(self._queue_name(name), self.connection)

    # -- channel ----------------------------------------------------------------------

    def on_flow(self, method: commands.Channel.Flow) -> None:
        if not method.active:
            raise errors.ConnectionError(errors.NOT_IMPLEMENTED, "active=false")
        self.reply(commands.Channel.FlowOk(active=True))

    # -- exchanges --------------------------------------------------------------------

    def on_exchange_declare(self, method: commands.Exchange.Declare) -> None:
        name = method.exchange
        if method.passive:
            if name == "":
                raise _default_exchange_refused()
            self.vhost.exchange(name)
        else:
            # In RabbitMQ's order: the type, the default exchange, then the reserved
            # prefix, which only matters for an exchange that does not exist yet.
            exchange_class(method.exchange_type)
            if name == "":
                raise _default_exchange_refused()
            if name.startswith("amq.") and name not in self.vhost.exchanges:
                raise errors.ChannelError(
                    errors.ACCESS_REFUSED,
                    f"exchange name '{name}' contains reserved prefix 'amq.*'",
                )
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
            raise _default_exchange_refused()
        if name.startswith("amq."):
            raise errors.ChannelError(
                errors.ACCESS_REFUSED,
                f"deletion of system exchange '{name}' in vhost '{self.vhost.name}' not allowed",
            )
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
                raise errors.ChannelError(
                    errors.ACCESS_REFUSED,
                    f"queue name '{name}' contains reserved prefix 'amq.*'",
                )
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
            raise _default_exchange_refused()
        return queue_name, routing_key

    def on_queue_bind(self, method: commands.Queue.Bind) -> None:
        queue_name, routing_key = self._binding_names(method)
        exchange = self.vhost.exchange(method.exchange)
        queue = self.vhost.queue(queue_name, self.connection)
        self.vhost.bind(exchange, queue, routing_key, method.arguments or {})
        if not method.nowait:
            self.reply(commands.Queue.BindOk())

    def on_queue_unbind(self, method: commands.Queue.Unbind) -> None:
        # Unbinding what does not exist succeeds, as in RabbitMQ.
        queue_name, routing_key = self._binding_names(method)
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
            raise _default_exchange_refused()
        return self.vhost.exchange(method.source), self.vhost.exchange(method.destination)

    def on_exchange_bind(self, method: commands.Exchange.Bind) -> None:
        source, destination = self._exchange_pair(method)
        self.vhost.bind(source, destination, method.routing_key, method.arguments or {})
        if not method.nowait:
            self.reply(commands.Exchange.BindOk())

    def on_exchange_unbind(self, method: commands.Exchange.Unbind) -> None:
        if method.source == "" or method.destination == "":
            raise _default_exchange_refused()
        source = self.vhost.exchanges.get(method.source)
        destination = self.vhost.exchanges.get(method.destination)
        if source is not None and destination is not None:
            self.vhost.unbind(source, destination, method.routing_key, method.arguments or {})
        if not method.nowait:
            self.reply(commands.Exchange.UnbindOk())

    def on_queue_purge(self, method: commands.Queue.Purge) -> None:
        count = self._queue(method.queue).purge()
        if not method.nowait:
            self.reply(commands.Queue.PurgeOk(message_count=count))

    def on_queue_delete(self, method: commands.Queue.Delete) -> None:
        name = self._queue_name(method.queue)
        queue = self.vhost.queues.get(name)
        count = 0
        if queue is not None:
            self.vhost.check_exclusive(queue, self.connection)
            where = f"queue '{name}' in vhost '{self.vhost.name}'"
            if method.if_unused and queue.consumers:
                raise errors.ChannelError(errors.PRECONDITION_FAILED, f"{where} in use")
            if method.if_empty and queue.ready:
                raise errors.ChannelError(errors.PRECONDITION_FAILED, f"{where} not empty")
            count = queue.message_count
        # As RabbitMQ: delete-ok first, then the basic.cancel its consumers get.
        if not method.nowait:
            self.reply(commands.Queue.DeleteOk(message_count=count))
        if queue is not None:
            self.vhost.delete_queue(queue)

    # -- basic: consuming -------------------------------------------------------------

    def on_basic_qos(self, method: commands.Basic.Qos) -> None:
        if method.prefetch_size:
            raise errors.ConnectionError(
                errors.NOT_IMPLEMENTED, f"prefetch_size!=0 ({method.prefetch_size})"
            )
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
            queue = self._queue(method.queue)
        tag = method.consumer_tag or generated_name("amq.ctag-")
        if tag in self.consumers:
            raise errors.ConnectionError(
                errors.NOT_ALLOWED, f"attempt to reuse consumer tag '{tag}'"
            )
        priority = consumer_priority(queue.name, self.vhost.name, method.arguments)
        if queue.consumers and (method.exclusive or queue.has_exclusive_consumer()):
            raise errors.ChannelError(
                errors.ACCESS_REFUSED,
                f"queue '{queue.name}' in vhost '{self.vhost.name}' in exclusive use",
            )
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
            raise errors.ChannelError(
                errors.PRECONDITION_FAILED, "reply consumer cannot acknowledge"
            )
        if self.reply_queue is not None:
            raise errors.ChannelError(errors.PRECONDITION_FAILED, "reply consumer already set")
        name = generated_name(f"{REPLY_TO}.")
        self.reply_queue = Queue(self.vhost, name, exclusive_owner=self.connection)
        self.vhost.reply_queues[name] = self.reply_queue
        return self.reply_queue

    def _direct_reply_to(self, raw_properties: bytes) -> bytes:
        """A request whose reply_to is the pseudo-queue gets this channel's reply queue
        name instead, so that the reply comes back here."""
        decoded = properties.decode(raw_properties)
        if decoded.reply_to != REPLY_TO:
            return raw_properties
        if self.reply_queue is None:
            raise errors.ChannelError(
                errors.PRECONDITION_FAILED, "fast reply consumer does not exist"
            )
        decoded.reply_to = self.reply_queue.name
        return properties.encode(decoded)

    def _remove_consumer(self, consumer: Consumer) -> None:
        del self.consumers[consumer.tag]
        consumer.queue.remove_consumer(consumer)
        if consumer.queue is self.reply_queue:
            del self.vhost.reply_queues[self.reply_queue.name]
            self.reply_queue = None

    def on_basic_cancel(self, method: commands.Basic.Cancel) -> None:
        consumer = self.consumers.get(method.consumer_tag)
        if not method.nowait:
            self.reply(commands.Basic.CancelOk(consumer_tag=method.consumer_tag))
        if consumer is not None:
            self._remove_consumer(consumer)

    def cancel_by_broker(self, consumer: Consumer) -> None:
        """The consumer's queue went away: tell clients that understand basic.cancel."""
        self.consumers.pop(consumer.tag, None)
        if self.connection.client_capability("consumer_cancel_notify") and not self.closing:
            self.reply(commands.Basic.Cancel(consumer_tag=consumer.tag, nowait=True))

    def deliver(self, consumer: Consumer, entry: Entry) -> None:
        self.delivery_tag += 1
        tag = self.delivery_tag
        message = entry.message
        queue = consumer.queue
        # The delivery goes out only once the store knows it was delivered.
        self.connection.hold_delivery_until(queue.delivered(entry))
        if consumer.no_ack:
            queue.discard(entry)
        else:
            self.unacked[tag] = Delivery(entry, queue, consumer)
            consumer.unacked += 1
            queue.unacked += 1
        self.connection.send_content(
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

    def on_basic_get(self, method: commands.Basic.Get) -> None:
        queue = self._queue(method.queue)
        entry = queue.take()
        if entry is None:
            self.reply(commands.Basic.GetEmpty())
            return
        self.delivery_tag += 1
        tag = self.delivery_tag
        self.connection.hold_delivery_until(queue.delivered(entry))
        if method.no_ack:
            queue.discard(entry)
        else:
            self.unacked[tag] = Delivery(entry, queue, None)
            queue.unacked += 1
        message = entry.message
        get_ok = frames.build(
            commands.Basic.GetOk,
            delivery_tag=tag,
            redelivered=entry.redelivered,
            exchange=message.exchange,
            routing_key=message.routing_key,
            message_count=queue.message_count,
        )
        self.connection.send_content(self.number, frames.encode_method(get_ok), message)

    # -- basic: acknowledgements ------------------------------------------------------

    def _take_deliveries(self, delivery_tag: int, multiple: bool) -> list[Delivery]:
        unacked = self.unacked
        if multiple and (delivery_tag == 0 or delivery_tag in unacked):
            taken = []
            while unacked:
                tag = next(iter(unacked))
                if delivery_tag and tag > delivery_tag:
                    break
                taken.append(unacked.popitem(last=False)[1])
            return taken
        if not multiple:
            delivery = unacked.pop(delivery_tag, None)
            if delivery is not None:
                return [delivery]
        raise errors.ChannelError(
            errors.PRECONDITION_FAILED, f"unknown delivery tag {delivery_tag}"
        )

    def on_basic_ack(self, method: commands.Basic.Ack) -> None:
        if self.tx is not None:
            self._check_known(method.delivery_tag, method.multiple)
            self.tx.append(method)
            return
        self._ack(method.delivery_tag, method.multiple)

    def _ack(self, delivery_tag: int, multiple: bool) -> None:
        self._discard(self._take_deliveries(delivery_tag, multiple))

    def _discard(self, deliveries: list[Delivery]) -> None:
        """Deliveries settled for good (acked, or rejected without requeue)."""
        queues: dict[Queue, None] = {}
        for delivery in deliveries:
            self._settled(delivery)
            delivery.queue.discard(delivery.entry)
            queues[delivery.queue] = None
        for queue in queues:
            queue.dispatch()

    def _check_known(self, delivery_tag: int, multiple: bool) -> None:
        if multiple and delivery_tag == 0:
            return
        if delivery_tag not in self.unacked:
            raise errors.ChannelError(
                errors.PRECONDITION_FAILED, f"unknown delivery tag {delivery_tag}"
            )

    def on_basic_nack(self, method: commands.Basic.Nack) -> None:
        self._reject(method, method.delivery_tag, method.multiple, method.requeue)

    def on_basic_reject(self, method: commands.Basic.Reject) -> None:
        self._reject(method, method.delivery_tag, False, method.requeue)

    def _reject(self, method, delivery_tag: int, multiple: bool, requeue: bool) -> None:
        if self.tx is not None:
            self._check_known(delivery_tag, multiple)
            self.tx.append(method)
            return
        deliveries = self._take_deliveries(delivery_tag, multiple)
        if requeue:
            self._requeue(deliveries)
        else:
            for delivery in deliveries:
                delivery.queue.rejected(delivery.entry)  # dead-lettered, if it has a DLX
            self._discard(deliveries)

    def on_basic_recover(self, method) -> None:
        if not method.requeue:
            raise errors.ConnectionError(errors.NOT_IMPLEMENTED, "requeue=false")
        if isinstance(method, commands.Basic.Recover):
            self.reply(commands.Basic.RecoverOk())  # RabbitMQ answers before redelivering
        deliveries = list(self.unacked.values())
        self.unacked.clear()
        self._requeue(deliveries)

    # -- basic: publishing ------------------------------------------------------------

    def on_publish(self, method: commands.Basic.Publish, raw_properties: bytes, body: bytes):
        exchange = self.vhost.exchanges.get(method.exchange)
        if exchange is None:
            raise errors.ChannelError(
                errors.NOT_FOUND, f"no exchange '{method.exchange}' in vhost '{self.vhost.name}'"
            )
        if exchange.internal:
            raise errors.ChannelError(
                errors.ACCESS_REFUSED,
                f"cannot publish to internal exchange '{method.exchange}' in vhost "
                f"'{self.vhost.name}'",
            )
        if method.immediate:
            raise errors.ConnectionError(errors.NOT_IMPLEMENTED, "immediate=true")
        limit = self.connection.broker.max_message_size
        if len(body) > limit:
            raise errors.ChannelError(
                errors.PRECONDITION_FAILED,
                f"message size {len(body)} is larger than configured max size {limit}",
            )
        if _REPLY_TO_BYTES in raw_properties:
            raw_properties = self._direct_reply_to(raw_properties)
        message = Message(method.exchange, method.routing_key, raw_properties, body)
        if properties.has_user_id(raw_properties):
            user_id = message.properties.user_id
            if user_id != self.connection.user.name:
                raise errors.ChannelError(
                    errors.PRECONDITION_FAILED,
                    f"user_id property set to '{user_id}' but authenticated user was "
                    f"'{self.connection.user.name}'",
                )
        if properties.has_expiration(raw_properties):
            message.ttl = parse_expiration(message.properties.expiration)
        if self.tx is not None:
            self.tx.append((exchange, message, method.mandatory))
            return
        # A confirm (or any later reply) waits until the message is on disk.
        self._refused = False
        self.connection.hold_output_until(self._route(exchange, message, method.mandatory))
        if self.confirm:
            self.publish_seq += 1
            if self._refused:
                self.nacked.append(self.publish_seq)
            self.connection.confirms_pending(self)

    def _route(self, exchange, message: Message, mandatory: bool) -> int:
        """Enqueue where the exchange routes; returns the store write to wait for."""
        queues = self.vhost.route(exchange, message)
        if not queues:
            if mandatory:
                returned = frames.build(
                    commands.Basic.Return,
                    reply_code=errors.NO_ROUTE,
                    reply_text=_NO_ROUTE_TEXT,
                    exchange=message.exchange,
                    routing_key=message.routing_key,
                )
                self.connection.send_content(self.number, frames.encode_method(returned), message)
            return 0
        write = 0
        message = message.without_bcc()
        for queue in queues:
            queue_write = queue.enqueue(message)
            if queue_write == REFUSED:
                self._refused = True
            elif queue_write > write:
                write = queue_write
        return write

    def send_confirms(self) -> None:
        """Confirm every publish routed since the last call: one basic.ack, or, when a
        queue refused some, a basic.ack or basic.nack per run of alike outcomes (with
        ``multiple`` when the run is longer than one)."""
        seq = self.publish_seq
        if seq <= self.confirmed_seq or self.closing:
            return
        if self.nacked:
            self._send_mixed_confirms(seq)
            return
        multiple = seq - self.confirmed_seq > 1
        self.confirmed_seq = seq
        self.reply(commands.Basic.Ack(delivery_tag=seq, multiple=multiple))

    def _send_mixed_confirms(self, seq: int) -> None:
        nacked = set(self.nacked)
        first = self.confirmed_seq + 1
        while first <= seq:
            refused = first in nacked
            last = first
            while last < seq and ((last + 1) in nacked) == refused:
                last += 1
            kind = commands.Basic.Nack if refused else commands.Basic.Ack
            self.reply(kind(delivery_tag=last, multiple=last > first))
            first = last + 1
        self.nacked.clear()
        self.confirmed_seq = seq

    # -- confirm and tx ---------------------------------------------------------------

    def on_confirm_select(self, method: commands.Confirm.Select) -> None:
        if self.tx is not None:
            raise errors.ChannelError(
                errors.PRECONDITION_FAILED, "cannot switch from tx to confirm mode"
            )
        self.confirm = True
        if not method.nowait:
            self.reply(commands.Confirm.SelectOk())

    def on_tx_select(self, method: commands.Tx.Select) -> None:
        if self.confirm:
            raise errors.ChannelError(
                errors.PRECONDITION_FAILED, "cannot switch from confirm to tx mode"
            )
        if self.tx is None:
            self.tx = []
        self.reply(commands.Tx.SelectOk())

    def _require_tx(self) -> list:
        if self.tx is None:
            raise errors.ChannelError(errors.PRECONDITION_FAILED, "channel is not transactional")
        return self.tx

    def on_tx_commit(self, method: commands.Tx.Commit) -> None:
        pending = self._require_tx()
        self.tx = None  # apply for real, then back to tx mode
        try:
            for item in pending:
                if isinstance(item, tuple):
                    self.connection.hold_output_until(self._route(*item))
                elif isinstance(item, commands.Basic.Ack):
                    self._ack(item.delivery_tag, item.multiple)
                elif isinstance(item, commands.Basic.Nack):
                    self._reject(item, item.delivery_tag, item.multiple, item.requeue)
                else:
                    self._reject(item, item.delivery_tag, False, item.requeue)
        finally:
            self.tx = []
        self.reply(commands.Tx.CommitOk())

    def on_tx_rollback(self, method: commands.Tx.Rollback) -> None:
        self._require_tx().clear()
        self.reply(commands.Tx.RollbackOk())
