"""A channel's deliveries awaiting their ack, by delivery tag, and its delivery tags."""

from __future__ import annotations

from collections import OrderedDict

from xivo_bus.broker.model import wording
from xivo_bus.broker.model.queue import Delivery


class Unacked:
    """Delivery tags count up from 1 on each channel; unacked deliveries are kept in tag
    order, so that ``multiple`` settles a prefix."""

    __slots__ = ("_deliveries", "last_tag")

    def __init__(self) -> None:
        self._deliveries: OrderedDict[int, Delivery] = OrderedDict()
        self.last_tag = 0  # the latest delivery tag handed out

    def __len__(self) -> int:
        return len(self._deliveries)

    def __bool__(self) -> bool:
        return bool(self._deliveries)

    def add(self, delivery: Delivery | None) -> int:
        """The next delivery tag, for ``delivery`` (kept until settled; None: no-ack)."""
        tag = self.last_tag = self.last_tag + 1
        if delivery is not None:
            self._deliveries[tag] = delivery
        return tag

    def take(self, tag: int, multiple: bool) -> list[Delivery]:
        """The deliveries an ack, nack or reject settles: ``tag`` alone, or with
        ``multiple`` every one up to it (0: all). 406 for a tag not awaiting its ack."""
        deliveries = self._deliveries
        if multiple and (tag == 0 or tag in deliveries):
            taken = []
            while deliveries:
                first = next(iter(deliveries))
                if tag and first > tag:
                    break
                taken.append(deliveries.popitem(last=False)[1])
            return taken
        if not multiple:
            delivery = deliveries.pop(tag, None)
            if delivery is not None:
                return [delivery]
        raise wording.unknown_delivery_tag(tag)

    def check_known(self, tag: int, multiple: bool) -> None:
        """406 now for a tag that ``take`` would refuse later (in a transaction)."""
        if multiple and tag == 0:
            return
        if tag not in self._deliveries:
            raise wording.unknown_delivery_tag(tag)

    def take_all(self) -> list[Delivery]:
        taken = list(self._deliveries.values())
        self._deliveries.clear()
        return taken

    def oldest_tag(self) -> int | None:
        return next(iter(self._deliveries), None)
