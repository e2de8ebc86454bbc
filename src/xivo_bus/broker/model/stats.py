"""Message counters, as RabbitMQ's ``message_stats``: each queue, channel and exchange
counts what passed through it (a plain integer increment on the message's path); the
management API turns them into totals and rates when it samples them, off that path.
"""

from __future__ import annotations

# RabbitMQ's message_stats fields, in its order; deliver_get is derived (see ``totals``).
FIELDS = (
    "publish",
    "publish_in",
    "publish_out",
    "confirm",
    "deliver",
    "deliver_no_ack",
    "get",
    "get_no_ack",
    "get_empty",
    "redeliver",
    "ack",
    "return_unroutable",
    "drop_unroutable",
)


class MessageStats:
    """The counters of one queue, channel or exchange (each uses the fields that apply
    to it, the others stay 0)."""

    __slots__ = FIELDS

    def __init__(self) -> None:
        for name in FIELDS:
            setattr(self, name, 0)

    def add(self, other: MessageStats) -> None:
        """Add ``other``'s counts to these (a closed channel's, kept in the totals)."""
        for name in FIELDS:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def totals(self) -> dict[str, int]:
        """The counts by RabbitMQ's field name, with ``deliver_get`` (every way a
        message left a queue for a client)."""
        counts = {name: getattr(self, name) for name in FIELDS}
        counts["deliver_get"] = (
            counts["deliver"] + counts["deliver_no_ack"] + counts["get"] + counts["get_no_ack"]
        )
        return counts


def summed(many) -> MessageStats:
    """One ``MessageStats`` holding the sum of ``many``."""
    total = MessageStats()
    for stats in many:
        total.add(stats)
    return total
