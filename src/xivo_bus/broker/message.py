"""A published message: immutable once published, shared by reference across queues."""

from __future__ import annotations

from pamqp import commands

from xivo_bus.amqp import frames, properties


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
        "stored_refs",
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
        self.stored_refs = 0  # durable queues holding it on disk
        self._properties: commands.Basic.Properties | None = None

    @property
    def properties(self) -> commands.Basic.Properties:
        if self._properties is None:
            self._properties = properties.decode(self.raw_properties)
        return self._properties

    @property
    def headers(self) -> dict:
        return self.properties.headers or {}

    @property
    def size(self) -> int:
        return len(self.body)


class Entry:
    """A message's place in one queue: its sequence number there, its redelivered flag,
    and whether the store has it."""

    __slots__ = ("message", "seq", "redelivered", "stored")

    def __init__(self, message: Message, seq: int, redelivered: bool = False):
        self.message = message
        self.seq = seq
        self.redelivered = redelivered
        self.stored = False
