"""Queue and consumer arguments: validated as RabbitMQ 3.10 validates them (same order,
same reply texts), then turned into the settings a queue runs with.

Only classic queues exist here: ``x-queue-type`` ``quorum`` and ``stream`` get
RabbitMQ's checks for those types (arguments, then properties) and, when those pass, are
refused as RabbitMQ refuses a queue type it does not know.
"""

from __future__ import annotations

import re
from typing import Any

from xivo_bus.broker.model import wording
from xivo_bus.broker.model.wording import Quoted, type_name

# RabbitMQ's ceiling on TTLs and expiries (ten years, in milliseconds).
MAX_EXPIRY = 315_360_000_000
MAX_PRIORITY = 255
OVERFLOW_MODES = ("drop-head", "reject-publish", "reject-publish-dlx")
DLX = "x-dead-letter-exchange"


# -- validators: each returns None or RabbitMQ's error term -------------------------------


def _int(value: Any, _arguments: dict):
    if isinstance(value, int) and not isinstance(value, bool):
        return None
    return Quoted(f"expected integer, got {type_name(value)}")


def _non_neg_int(value: Any, arguments: dict):
    error = _int(value, arguments)
    if error is None and value < 0:
        return ("value_negative", value)
    return error


def _expiry(value: int):
    if value > MAX_EXPIRY:
        return ("value_too_large", value)
    if value < 0:
        return ("value_negative", value)
    return None


def _expires(value: Any, arguments: dict):
    error = _int(value, arguments)
    if error is not None:
        return error
    return ("value_zero", 0) if value == 0 else _expiry(value)


def _message_ttl(value: Any, arguments: dict):
    return _int(value, arguments) or _expiry(value)


def _max_priority(value: Any, arguments: dict):
    error = _non_neg_int(value, arguments)
    if error is None and value > MAX_PRIORITY:
        return ("max_value_exceeded", value)
    return error


def _non_zero_size(value: Any, arguments: dict):
    error = _non_neg_int(value, arguments)
    if error is None and value == 0:
        return ("value_zero", 0)
    return error


def _bool(value: Any, _arguments: dict):
    return None if isinstance(value, bool) else ("unacceptable_type", type_name(value))


def _one_of(choices: tuple[str, ...], error: Any):
    def check(value: Any, _arguments: dict):
        text = name_argument(value)
        if text is None:
            return ("unacceptable_type", type_name(value))
        return None if text in choices else error(text)

    return check


def _dlx_routing_key(value: Any, arguments: dict):
    if name_argument(value) is None:
        return ("unacceptable_type", type_name(value))
    return None if DLX in arguments else "routing_key_but_no_dlx_defined"


def _queue_version(value: Any, arguments: dict):
    error = _non_neg_int(value, arguments)
    if error is None and value not in (1, 2):
        return Quoted(f"unsupported queue version '{value}'")
    return error


_MAX_AGE = re.compile(r"([0-9]+)([YMDhms])")


def _max_age(value: Any, _arguments: dict):
    text = name_argument(value)
    if text is None:
        return ("unacceptable_type", type_name(value))
    match = _MAX_AGE.fullmatch(text)
    return None if match and int(match.group(1)) > 0 else "invalid_max_age"


QUEUE_TYPES = ("classic", "quorum", "stream")

# Every queue argument RabbitMQ 3.10 knows, in its order (rabbit_amqqueue:declare_args/0):
# the validator (None: checked elsewhere, or not at all) and whether a redeclaration must
# repeat it (equivalence). x-dead-letter-exchange's type is checked before all of them.
QUEUE_ARGUMENTS: tuple[tuple[str, Any, bool], ...] = (
    ("x-expires", _expires, True),
    ("x-message-ttl", _message_ttl, True),
    (DLX, None, True),
    ("x-dead-letter-routing-key", _dlx_routing_key, True),
    (
        "x-dead-letter-strategy",
        _one_of(("at-most-once", "at-least-once"), lambda value: "invalid_dlx_strategy"),
        False,
    ),
    ("x-max-length", _non_neg_int, True),
    ("x-max-length-bytes", _non_neg_int, True),
    ("x-max-in-memory-length", _non_neg_int, True),
    ("x-max-in-memory-bytes", _non_neg_int, True),
    ("x-max-priority", _max_priority, True),
    ("x-overflow", _one_of(OVERFLOW_MODES, lambda value: "invalid_overflow"), True),
    (
        "x-queue-mode",
        _one_of(("default", "lazy"), lambda value: Quoted(f"unsupported queue mode '{value}'")),
        True,
    ),
    ("x-queue-version", _queue_version, False),
    ("x-single-active-consumer", _bool, True),
    ("x-queue-type", None, True),  # validated first, on its own
    ("x-quorum-initial-group-size", _non_zero_size, True),
    ("x-max-age", _max_age, True),
    ("x-stream-max-segment-size-bytes", _non_neg_int, False),
    ("x-initial-cluster-size", _non_zero_size, True),
    (
        "x-queue-leader-locator",
        _one_of(("client-local", "balanced"), lambda value: "invalid_queue_locator_arg"),
        True,
    ),
    ("x-delivery-limit", _non_neg_int, True),
    ("x-queue-master-locator", None, True),
)
# What a redeclaration must repeat; for exchanges RabbitMQ compares only this one.
QUEUE_EQUIVALENCE = tuple(key for key, _, equivalent in QUEUE_ARGUMENTS if equivalent)
EXCHANGE_EQUIVALENCE = ("alternate-exchange",)

# The arguments each queue type knows (RabbitMQ 3.10); another type's are refused.
TYPE_ARGUMENTS = {
    "classic": {
        "x-expires",
        "x-message-ttl",
        "x-dead-letter-exchange",
        "x-dead-letter-routing-key",
        "x-max-length",
        "x-max-length-bytes",
        "x-max-priority",
        "x-overflow",
        "x-queue-mode",
        "x-queue-version",
        "x-single-active-consumer",
        "x-queue-type",
        "x-queue-master-locator",
    },
    "quorum": {
        "x-expires",
        "x-message-ttl",
        "x-dead-letter-exchange",
        "x-dead-letter-routing-key",
        "x-dead-letter-strategy",
        "x-max-length",
        "x-max-length-bytes",
        "x-max-in-memory-length",
        "x-max-in-memory-bytes",
        "x-overflow",
        "x-single-active-consumer",
        "x-queue-type",
        "x-quorum-initial-group-size",
        "x-delivery-limit",
        "x-queue-leader-locator",
    },
    "stream": {
        "x-queue-type",
        "x-max-length-bytes",
        "x-max-age",
        "x-stream-max-segment-size-bytes",
        "x-initial-cluster-size",
        "x-queue-leader-locator",
    },
}
_ALL_TYPE_ARGUMENTS = set().union(*TYPE_ARGUMENTS.values())
_TYPE_MODULES = {
    "classic": "rabbit_classic_queue",
    "quorum": "rabbit_quorum_queue",
    "stream": "rabbit_stream_queue",
}


def check_queue_declare(
    name: str, vhost: str, arguments: dict, durable: bool, exclusive: bool, auto_delete: bool
) -> None:
    """Refuse a queue.declare whose arguments or properties RabbitMQ would refuse."""
    if DLX in arguments and name_argument(arguments[DLX]) is None:
        raise wording.invalid_argument_type(DLX, arguments[DLX], name, vhost)

    def check(key: str, validator) -> None:
        if key in arguments:
            error = validator(arguments[key], arguments)
            if error is not None:
                raise wording.invalid_argument(key, name, vhost, error)

    queue_type = arguments.get("x-queue-type", "classic")
    check("x-queue-type", _one_of(QUEUE_TYPES, _unsupported_type))
    known = TYPE_ARGUMENTS[queue_type]
    for key, validator, _ in QUEUE_ARGUMENTS:
        if validator is not None and key in known:
            check(key, validator)
    for key in arguments:
        if key in _ALL_TYPE_ARGUMENTS and key not in known:
            raise wording.argument_of_other_type(key, name, vhost, _TYPE_MODULES[queue_type])
    if queue_type == "classic":
        return
    for refused, prop in ((auto_delete, "auto-delete"), (exclusive, "exclusive-owner")):
        if refused:
            raise wording.invalid_property(prop, name, vhost)
    if not durable:
        raise wording.invalid_property("non-durable", name, vhost)
    # This broker has classic queues only: refused as RabbitMQ refuses an unknown type.
    raise wording.invalid_argument("x-queue-type", name, vhost, _unsupported_type(queue_type))


def check_equivalent(
    kind: str,
    name: str,
    vhost: str,
    received: dict[str, Any],
    current: dict[str, Any],
    arguments: tuple[dict, dict],
) -> None:
    """A redeclaration must repeat the declaration: the properties in ``received`` /
    ``current`` (in order: type, durable, auto_delete...), then the arguments RabbitMQ
    compares for that kind (``arguments`` is (received, current))."""
    for prop, got in received.items():
        if got != current[prop]:
            raise wording.inequivalent(kind, name, vhost, prop, got, current[prop])
    got_args, current_args = arguments
    for key in QUEUE_EQUIVALENCE if kind == "queue" else EXCHANGE_EQUIVALENCE:
        if got_args.get(key) != current_args.get(key):
            raise wording.inequivalent_argument(kind, name, vhost, key, got_args, current_args)


def name_argument(value: Any) -> str | None:
    """The text of a long string argument (the exchange alternate-exchange and
    x-dead-letter-exchange name, a routing key, a mode), None for any other type. One
    that is not UTF-8 (decoded as bytes) keeps its bytes as surrogates, so that it names
    no exchange (names are UTF-8) and matches no mode, as in RabbitMQ, where names are
    bytes."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return None


def _unsupported_type(value: str) -> Quoted:
    return Quoted(f"unsupported queue type '{value}'")


def consumer_priority(queue: str, vhost: str, arguments: dict | None) -> int:
    """The ``x-priority`` of a basic.consume (0 without one), validated as RabbitMQ does."""
    if not arguments:
        return 0
    for key, validator in (("x-priority", _int), ("x-cancel-on-ha-failover", _bool)):
        if key in arguments:
            error = validator(arguments[key], arguments)
            if error is not None:
                raise wording.invalid_argument(key, queue, vhost, error)
    return arguments.get("x-priority", 0)


def parse_expiration(value: Any) -> int:
    """The ``expiration`` property in milliseconds; 406 with RabbitMQ's text when it is
    not what Erlang's ``string:to_integer`` reads as a TTL."""
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    match = re.match(r"[+-]?[0-9]+", text)
    if match is None:
        error: Any = "no_integer"
    elif match.end() != len(text):
        error = ("leftover_string", Quoted(text[match.end() :]))
    else:
        ttl = int(match.group())
        error = _expiry(ttl)
        if error is None:
            return ttl
    raise wording.invalid_expiration(text, error)


class QueueSettings:
    """What a queue's arguments ask of it, read once when it is declared."""

    __slots__ = (
        "message_ttl",
        "expires",
        "max_length",
        "max_length_bytes",
        "overflow",
        "dead_letter_exchange",
        "dead_letter_routing_key",
        "max_priority",
        "single_active_consumer",
    )

    def __init__(self, arguments: dict):
        def integer(key: str) -> int | None:
            value = arguments.get(key)
            return value if isinstance(value, int) and not isinstance(value, bool) else None

        self.message_ttl = integer("x-message-ttl")
        self.expires = integer("x-expires")
        self.max_length = integer("x-max-length")
        self.max_length_bytes = integer("x-max-length-bytes")
        overflow = arguments.get("x-overflow")
        self.overflow = overflow if overflow in OVERFLOW_MODES else "drop-head"
        dlx = arguments.get(DLX)
        self.dead_letter_exchange = name_argument(dlx)
        dlrk = arguments.get("x-dead-letter-routing-key")
        self.dead_letter_routing_key = name_argument(dlrk)
        self.max_priority = integer("x-max-priority")
        self.single_active_consumer = arguments.get("x-single-active-consumer") is True

    @property
    def limited(self) -> bool:
        return self.max_length is not None or self.max_length_bytes is not None
