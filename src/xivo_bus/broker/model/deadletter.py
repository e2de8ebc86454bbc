"""Dead-lettering's rewrite, as RabbitMQ 3.10 does it: a message rejected without
requeue, expired or pushed out by a length limit is republished (by its vhost), as a new
message, to its queue's dead-letter exchange, with an ``x-death`` history in its headers.

The copy has the original body (shared, not copied) and properties, less ``expiration``
(kept as ``original-expiration`` in its x-death entry); its headers are rewritten with
every other header kept as it was on the wire. It is routed with the original routing key
(and the CC header's keys), or with ``x-dead-letter-routing-key`` when the queue has one
(the CC header is then dropped). When the dead-letter exchange does not exist the message
is dropped. A message that would come back to a queue it already died in, with no
rejection on the way, is dropped for that queue (RabbitMQ's cycle detection).
"""

from __future__ import annotations

import datetime
import time
from typing import Any

from xivo_bus.amqp import fields, properties
from xivo_bus.broker.model.message import Message


def dead_lettered(
    message: Message, reason: str, queue_name: str, exchange_name: str, routing_key: str | None
) -> tuple[Message, list]:
    """The dead-lettered copy of ``message`` and its x-death list."""
    headers = message.headers
    entry: dict[str, Any] = {
        "count": 1,
        "reason": reason,
        "queue": queue_name,
        "time": datetime.datetime.fromtimestamp(int(time.time()), datetime.UTC),
        "exchange": message.exchange,
        "routing-keys": [message.routing_key, *_cc(headers)],
    }
    expiration = message.properties.expiration
    if expiration is not None:
        entry["original-expiration"] = expiration
    changes: dict[str, Any] = {}
    previous = headers.get("x-death")
    if previous is None:
        deaths = [entry]
        changes["x-first-death-reason"] = reason
        changes["x-first-death-queue"] = queue_name
        changes["x-first-death-exchange"] = message.exchange
    elif not isinstance(previous, list):
        deaths = [entry]  # not an array (a client rewrote it): started again
    else:
        deaths = _update(previous, entry)
    changes["x-death"] = deaths
    drop = ("CC",) if routing_key is not None else ()
    table = _rewrite_table(message.raw_properties, changes, drop)
    raw = properties.replace(message.raw_properties, headers=table, expiration=False)
    dead = Message(
        exchange_name,
        routing_key if routing_key is not None else message.routing_key,
        raw,
        message.body,
    )
    if routing_key is None:
        dead.bcc = message.bcc  # routed with its BCC keys again, as RabbitMQ does
    return dead, deaths


def _cc(headers: dict) -> list:
    cc = headers.get("CC")
    if not isinstance(cc, list):
        return []
    return [key for key in cc if isinstance(key, (str, bytes))]


def _update(deaths: list, entry: dict) -> list:
    """The x-death list with this death: a former entry for the same queue and reason
    has its count raised and moves to the front, else the new entry goes first."""
    for index, old in enumerate(deaths):
        if (
            isinstance(old, dict)
            and old.get("queue") == entry["queue"]
            and old.get("reason") == entry["reason"]
        ):
            updated = dict(old)
            count = updated.get("count")
            updated["count"] = count + 1 if isinstance(count, int) else 1
            return [dict(sorted(updated.items())), *deaths[:index], *deaths[index + 1 :]]
    return [dict(sorted(entry.items())), *deaths]


def is_cycle(queue_name: str, deaths: list) -> bool:
    """RabbitMQ's rule: the message already died in ``queue_name`` and every death since
    then (that one included) was automatic, none a rejection."""
    for death in deaths:
        if not isinstance(death, dict):
            return False  # something a client put there: not an automatic cycle
        if death.get("reason") == "rejected":
            return False
        if death.get("queue") == queue_name:
            return True
    return False


# -- field tables, rewritten without decoding what is not changed --------------------------


def _rewrite_table(raw_properties: bytes, changes: dict[str, Any], drop: tuple) -> bytes:
    """The message's headers table with ``changes`` set and ``drop`` removed, sorted by
    key as RabbitMQ leaves it; every other field keeps its wire encoding."""
    found = dict(fields.table_items(properties.raw_headers(raw_properties)))
    for key in drop:
        found.pop(key.encode(), None)
    for key, value in changes.items():
        found[key.encode()] = encode_value(value)
    return fields.encode_table(sorted(found.items()))


def encode_value(value: Any) -> bytes:
    """A field value as RabbitMQ writes x-death: integers as long (``l``), strings as
    longstr, times as timestamps, arrays and tables of those. Whatever else a client put
    in an x-death history it rewrote is written back as it was read (``fields``)."""
    return fields.encode_value(value)
