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
import struct
import time
from typing import Any

from pamqp import encode as pamqp_encode

from xivo_bus.amqp import properties
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

_FIXED_SIZES = {
    ord("t"): 1,
    ord("b"): 1,
    ord("B"): 1,
    ord("s"): 2,
    ord("u"): 2,
    ord("U"): 2,
    ord("I"): 4,
    ord("i"): 4,
    ord("f"): 4,
    ord("l"): 8,
    ord("L"): 8,
    ord("d"): 8,
    ord("T"): 8,
    ord("D"): 5,
    ord("V"): 0,
}
_long = struct.Struct(">I")


def _table_items(raw: bytes) -> list[tuple[bytes, bytes]]:
    """(encoded key, type octet and value) of each field of an encoded table's
    contents, as they are on the wire."""
    items = []
    offset = 0
    while offset < len(raw):
        key_end = offset + 1 + raw[offset]
        key = raw[offset + 1 : key_end]
        kind = raw[key_end]
        size = _FIXED_SIZES.get(kind)
        if size is None:  # S, x, A, F: a length then that many octets
            size = 4 + _long.unpack_from(raw, key_end + 1)[0]
        end = key_end + 1 + size
        items.append((key, raw[key_end:end]))
        offset = end
    return items


def _rewrite_table(raw_properties: bytes, changes: dict[str, Any], drop: tuple) -> bytes:
    """The message's headers table with ``changes`` set and ``drop`` removed, sorted by
    key as RabbitMQ leaves it; every other field keeps its wire encoding."""
    fields = dict(_table_items(properties.raw_headers(raw_properties)))
    for key in drop:
        fields.pop(key.encode(), None)
    for key, value in changes.items():
        fields[key.encode()] = encode_value(value)
    body = b"".join(bytes((len(k),)) + k + v for k, v in sorted(fields.items()))
    return _long.pack(len(body)) + body


def encode_value(value: Any) -> bytes:
    """A field value as RabbitMQ writes x-death: integers as long (``l``), strings as
    longstr, times as timestamps, arrays and tables of those."""
    if isinstance(value, bool):
        return b"t" + bytes((value,))
    if isinstance(value, int):
        return b"l" + struct.pack(">q", value)
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, (bytes, bytearray)):
        return b"S" + _long.pack(len(value)) + value
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.UTC)
        return b"T" + struct.pack(">Q", int(value.timestamp()))
    if isinstance(value, list):
        items = b"".join(encode_value(v) for v in value)
        return b"A" + _long.pack(len(items)) + items
    if isinstance(value, dict):
        items = b"".join(
            bytes((len(k.encode()),)) + k.encode() + encode_value(v) for k, v in value.items()
        )
        return b"F" + _long.pack(len(items)) + items
    return pamqp_encode.encode_table_value(value)
