"""A published message: immutable once published, shared by reference across queues."""

from __future__ import annotations

from typing import Protocol

from pamqp import commands

from xivo_bus.amqp import fields, frames, properties
from xivo_bus.broker.model import wording


class PendingConfirm(Protocol):
    """A publisher's confirm that waits for the queues that stored a message."""

    def copy_settled(self) -> None:
        """One of those queues is done with the message (acked, dropped, purged)."""


class Message:
    """What a publisher sent: exchange, routing key, raw properties and body.

    The exchange and routing key are kept pre-encoded as AMQP short strings so that a
    delivery never re-encodes them; the properties are decoded only when asked for.
    """

    __slots__ = (
        "exchange",
        "routing_key",
        "exchange_ss",
        "routing_key_ss",
        "raw_properties",
        "body",
        "persistent",
        "store_id",
        "ttl",
        "bcc",
        "pending_confirm",
        "_properties",
    )

    def __init__(self, exchange: str, routing_key: str, raw_properties: bytes, body: bytes):
        self.exchange = exchange
        self.routing_key = routing_key
        self.exchange_ss = frames.short_str(exchange)
        self.routing_key_ss = frames.short_str(routing_key)
        self.raw_properties = raw_properties
        self.body = body
        self.persistent = properties.delivery_mode(raw_properties) == 2
        self.store_id: int | None = None  # its row in the store, once written there
        self.ttl: int | None = None  # the expiration property, in ms, when it has one
        # The BCC keys taken out of the headers: a dead-lettered copy is routed with them.
        self.bcc: list[str] | None = None
        # its publisher's confirm, while it waits for the disk or for the durable queues
        # that stored the message to be done with it (``session.confirms``)
        self.pending_confirm: PendingConfirm | None = None
        self._properties: commands.Basic.Properties | None = None

    @classmethod
    def from_store(
        cls,
        store_id: int,
        exchange: str,
        routing_key: str,
        raw_properties: bytes,
        body: bytes,
        names: dict[str, bytes],
    ) -> Message:
        """A persistent message read back at start-up; ``names`` caches encoded exchange
        names and routing keys, which many messages share."""
        message = cls.__new__(cls)
        message.exchange = exchange
        message.routing_key = routing_key
        message.exchange_ss = names.get(exchange) or names.setdefault(
            exchange, frames.short_str(exchange)
        )
        message.routing_key_ss = names.get(routing_key) or names.setdefault(
            routing_key, frames.short_str(routing_key)
        )
        message.raw_properties = raw_properties
        message.body = body
        message.persistent = True
        message.store_id = store_id
        message.ttl = None
        message.bcc = None
        message.pending_confirm = None
        message._properties = None
        return message

    def written_as(self, store_id: int) -> None:
        """The store gave this message its row (when a first durable queue holds it); the
        store counts the durable queues holding it (``Store.hold``, ``Store.release``)."""
        self.store_id = store_id

    @property
    def properties(self) -> commands.Basic.Properties:
        if self._properties is None:
            self._properties = properties.decode(self.raw_properties)
        return self._properties

    def sender_routes(self) -> list[str] | None:
        """The extra routing keys of the CC and BCC headers (sender-selected
        distribution), or None when there are none."""
        raw = self.raw_properties
        if b"CC" not in raw or not properties.has_headers(raw):  # cheap: usually no
            return list(self.bcc) if self.bcc else None
        headers = self.headers
        keys = list(self.bcc or ())
        for name in ("CC", "BCC"):
            if name not in headers:
                continue
            value = headers[name]
            if not isinstance(value, list):  # a void one too, as in RabbitMQ
                raise wording.unacceptable_header_type(name, value)
            keys += [_routing_key(key) for key in value if isinstance(key, (str, bytes))]
        return keys or None

    def without_bcc(self) -> Message:
        """The message as delivered: the BCC header is never shown to consumers."""
        if b"BCC" not in self.raw_properties or "BCC" not in self.headers:
            return self
        headers = self.headers
        # the other headers and properties keep their bytes
        kept = [
            (key, value)
            for key, value in fields.table_items(properties.raw_headers(self.raw_properties))
            if key != b"BCC"
        ]
        raw = properties.replace(self.raw_properties, headers=fields.encode_table(kept))
        copy = Message(self.exchange, self.routing_key, raw, self.body)
        copy.ttl = self.ttl
        copy.bcc = [_routing_key(key) for key in headers["BCC"] if isinstance(key, (str, bytes))]
        return copy

    @property
    def headers(self) -> dict:
        return self.properties.headers or {}

    @property
    def size(self) -> int:
        return len(self.body)


def _routing_key(key: str | bytes) -> str:
    """A CC or BCC routing key; one that is not UTF-8 (a long string may be anything)
    keeps its bytes as surrogates, so that it matches no binding, as in RabbitMQ."""
    return key.decode("utf-8", "surrogateescape") if isinstance(key, bytes) else key


class Entry:
    """A message's place in one queue: its sequence number there, its redelivered flag,
    and whether the store has it."""

    __slots__ = ("message", "seq", "redelivered", "stored", "expires")

    def __init__(self, message: Message, seq: int, redelivered: bool = False):
        self.message = message
        self.seq = seq
        self.redelivered = redelivered
        self.stored = False
        self.expires: float | None = None  # loop time past which it expires (TTL)
