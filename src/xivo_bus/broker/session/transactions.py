"""Transactions (tx.select): publishes and settlements wait on the channel until
tx.commit applies them in order, or tx.rollback drops them."""

from __future__ import annotations

from typing import Any, NamedTuple

from xivo_bus.broker.model.message import Message


class Publish(NamedTuple):
    exchange: Any  # model.exchanges.Exchange
    message: Message
    mandatory: bool


class Transaction:
    __slots__ = ("_pending",)

    def __init__(self) -> None:
        # Publish, or the basic.ack / basic.nack / basic.reject method to apply
        self._pending: list[Any] = []

    def publish(self, exchange: Any, message: Message, mandatory: bool) -> None:
        self._pending.append(Publish(exchange, message, mandatory))

    def settle(self, method: Any) -> None:
        self._pending.append(method)

    def commit(self) -> list[Any]:
        """What to apply, in order; the transaction starts again empty."""
        pending, self._pending = self._pending, []
        return pending

    def rollback(self) -> None:
        self._pending.clear()
