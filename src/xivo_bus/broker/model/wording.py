"""RabbitMQ's error wording: every reply text the broker sends with a channel or
connection close, built in one place, in RabbitMQ 3.10's words (probed on a real node).

Each function returns the error to raise; where it is raised, the connection fills in
the class and method ids of the method being served. Erlang terms in texts (``{a,b}``,
``"string"``) are printed as Erlang's ``~p`` prints them.
"""

from __future__ import annotations

import datetime
import decimal
from typing import Any

from xivo_bus.amqp import errors
from xivo_bus.amqp.errors import ChannelError, ConnectionError

# -- how RabbitMQ names things ------------------------------------------------------------


def resource(kind: str, name: str, vhost: str) -> str:
    """``queue 'q' in vhost '/'``: RabbitMQ's name of a resource."""
    return f"{kind} '{name}' in vhost '{vhost}'"


def type_name(value: Any) -> str:
    """The AMQP field type RabbitMQ names in its texts, guessed from the decoded value
    (clients choose integer widths; pika sends 32-bit signed ints when they fit)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "signedint" if -(2**31) <= value < 2**31 else "long"
    if isinstance(value, float):
        return "double"
    if isinstance(value, (str, bytes)):  # bytes: a long string that is not UTF-8
        return "longstr"
    if isinstance(value, bytearray):  # a byte array ('x')
        return "binary"
    if isinstance(value, dict):
        return "table"
    if isinstance(value, list):
        return "array"
    if isinstance(value, decimal.Decimal):
        return "decimal"
    if isinstance(value, datetime.datetime):
        return "timestamp"
    return "void"


def shown(value: Any) -> str:
    """A field value as RabbitMQ shows it in an inequivalence text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


class Quoted:
    """An Erlang string (printed with double quotes) inside an error term."""

    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text


def erlang_term(value: Any) -> str:
    """A Python stand-in for an Erlang term, printed as ``~p`` prints it (flat): tuples
    as ``{...}``, ``str`` as atoms, ``Quoted`` as strings."""
    if isinstance(value, tuple):
        return "{" + ",".join(erlang_term(v) for v in value) + "}"
    if isinstance(value, str):
        return value
    if isinstance(value, Quoted):
        return '"' + value.text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(value)


def pretty(prefix: str, term: Any, width: int = 80) -> str:
    """``prefix`` then ``term`` as Erlang's ``~p`` lays it out: a tuple that does not
    fit on the line breaks after its first element, aligned under it."""
    flat = erlang_term(term)
    if not isinstance(term, tuple) or len(prefix) + len(flat) <= width:
        return prefix + flat
    indent = "\n" + " " * (len(prefix) + 1)
    rest = ",".join(erlang_term(v) for v in term[1:])
    return f"{prefix}{{{erlang_term(term[0])},{indent}{rest}}}"


# -- lookups and locks ----------------------------------------------------------------------


def not_found(kind: str, name: str, vhost: str) -> ChannelError:
    return ChannelError(errors.NOT_FOUND, f"no {resource(kind, name, vhost)}")


def no_previous_queue() -> ChannelError:
    return ChannelError(errors.NOT_FOUND, "no previously declared queue")


def locked(queue: str, vhost: str) -> ChannelError:
    return ChannelError(
        errors.RESOURCE_LOCKED,
        f"cannot obtain exclusive access to locked {resource('queue', queue, vhost)}. It "
        "could be originally declared on another connection or the exclusive property value "
        "does not match that of the original declaration.",
    )


def exclusive_use(queue: str, vhost: str) -> ChannelError:
    return ChannelError(
        errors.ACCESS_REFUSED, f"{resource('queue', queue, vhost)} in exclusive use"
    )


def in_use(kind: str, name: str, vhost: str) -> ChannelError:
    return ChannelError(errors.PRECONDITION_FAILED, f"{resource(kind, name, vhost)} in use")


def not_empty(queue: str, vhost: str) -> ChannelError:
    return ChannelError(errors.PRECONDITION_FAILED, f"{resource('queue', queue, vhost)} not empty")


# -- access control -------------------------------------------------------------------------


def access_refused(kind: str, name: str, vhost: str, user: str) -> ChannelError:
    return ChannelError(
        errors.ACCESS_REFUSED, f"access to {resource(kind, name, vhost)} refused for user '{user}'"
    )


def topic_access_refused(routing_key: str, exchange: str, vhost: str, user: str):
    return ChannelError(
        errors.ACCESS_REFUSED,
        f"access to topic '{routing_key}' in exchange '{exchange}' in vhost '{vhost}' refused "
        f"for user '{user}'",
    )


def queue_limit(queue: str, vhost: str, limit: int) -> ChannelError:
    return ChannelError(
        errors.PRECONDITION_FAILED,
        f"cannot declare queue '{queue}': queue limit in vhost '{vhost}' ({limit}) is reached",
    )


def vhost_connection_limit(vhost: str, user: str, limit: int) -> ConnectionError:
    return ConnectionError(
        errors.NOT_ALLOWED,
        f"access to vhost '{vhost}' refused for user '{user}': connection limit ({limit}) is "
        "reached",
        10,
        40,
    )


def user_connection_limit(user: str, limit: int) -> ConnectionError:
    return ConnectionError(
        errors.NOT_ALLOWED,
        f"connection refused for user '{user}': user connection limit ({limit}) is reached",
        10,
        40,
    )


def user_channel_limit(user: str, limit: int) -> ConnectionError:
    return ConnectionError(
        errors.NOT_ALLOWED,
        f"number of channels opened for user '{user}' has reached the maximum allowed user "
        f"limit of ({limit})",
    )


def vhost_access_refused(vhost: str, user: str) -> ConnectionError:
    return ConnectionError(
        errors.NOT_ALLOWED, f"access to vhost '{vhost}' refused for user '{user}'", 10, 40
    )


# -- names and exchanges --------------------------------------------------------------------


def default_exchange_refused() -> ChannelError:
    return ChannelError(errors.ACCESS_REFUSED, "operation not permitted on the default exchange")


def reserved_prefix(kind: str, name: str) -> ChannelError:
    return ChannelError(
        errors.ACCESS_REFUSED, f"{kind} name '{name}' contains reserved prefix 'amq.*'"
    )


def system_exchange_deletion(name: str, vhost: str) -> ChannelError:
    return ChannelError(
        errors.ACCESS_REFUSED,
        f"deletion of system exchange '{name}' in vhost '{vhost}' not allowed",
    )


def exchange_type(type_name_: str) -> ConnectionError:
    adjective = "unknown" if type_name_.startswith("x-") else "invalid"
    return ConnectionError(
        errors.COMMAND_INVALID, f"{adjective} exchange type '{type_name_}'", 40, 10
    )


def internal_exchange(name: str, vhost: str) -> ChannelError:
    return ChannelError(
        errors.ACCESS_REFUSED,
        f"cannot publish to internal exchange '{name}' in vhost '{vhost}'",
    )


def invalid_x_match(mode: Any) -> ChannelError:
    text = mode.decode(errors="replace") if isinstance(mode, bytes) else mode
    return ChannelError(
        errors.PRECONDITION_FAILED,
        f'Invalid x-match field value <<"{text}">>; expected all, any, all-with-x, or any-with-x',
    )


# -- declarations ---------------------------------------------------------------------------


def inequivalent(kind: str, name: str, vhost: str, arg: str, received: Any, current: Any):
    """A redeclaration that differs in a property (type, durable, auto_delete...)."""
    return ChannelError(
        errors.PRECONDITION_FAILED,
        f"inequivalent arg '{arg}' for {resource(kind, name, vhost)}: "
        f"received '{shown(received)}' but current is '{shown(current)}'",
    )


def inequivalent_argument(
    kind: str, name: str, vhost: str, key: str, received: dict, current: dict
) -> ChannelError:
    """A redeclaration whose argument ``key`` differs (or is present on one side only)."""
    where = f"inequivalent arg '{key}' for {resource(kind, name, vhost)}"
    if key not in current:
        got = received[key]
        text = (
            f"{where}: received the value '{shown(got)}' of type '{type_name(got)}' "
            "but current is none"
        )
    elif key not in received:
        cur = current[key]
        text = (
            f"{where}: received none but current is the value '{shown(cur)}' of type "
            f"'{type_name(cur)}'"
        )
    else:
        text = f"{where}: received '{shown(received[key])}' but current is '{shown(current[key])}'"
    return ChannelError(errors.PRECONDITION_FAILED, text)


def invalid_argument(key: str, queue: str, vhost: str, term: Any) -> ChannelError:
    """An argument its validator refused; ``term`` is RabbitMQ's error term."""
    return ChannelError(
        errors.PRECONDITION_FAILED,
        pretty(f"invalid arg '{key}' for {resource('queue', queue, vhost)}: ", term, 255),
    )


def invalid_argument_type(key: str, value: Any, queue: str, vhost: str) -> ChannelError:
    return ChannelError(
        errors.PRECONDITION_FAILED,
        f"invalid type '{type_name(value)}' for arg '{key}' in {resource('queue', queue, vhost)}",
    )


def argument_of_other_type(key: str, queue: str, vhost: str, module: str) -> ChannelError:
    return ChannelError(
        errors.PRECONDITION_FAILED,
        f"invalid arg '{key}' for {resource('queue', queue, vhost)} of queue type {module}",
    )


def invalid_property(prop: str, queue: str, vhost: str) -> ChannelError:
    return ChannelError(
        errors.PRECONDITION_FAILED,
        f"invalid property '{prop}' for {resource('queue', queue, vhost)}",
    )


def invalid_expiration(text: str, term: Any) -> ChannelError:
    return ChannelError(errors.PRECONDITION_FAILED, pretty(f"invalid expiration '{text}': ", term))


def unacceptable_header_type(header: str, value: Any) -> ChannelError:
    return ChannelError(
        errors.PRECONDITION_FAILED,
        f'invalid message: {{unacceptable_type_in_header,"{header}",{type_name(value)}}}',
    )


# -- publishing, consuming, settling ----------------------------------------------------------


def message_too_large(size: int, limit: int) -> ChannelError:
    return ChannelError(
        errors.PRECONDITION_FAILED,
        f"message size {size} is larger than configured max size {limit}",
    )


def user_id_mismatch(user_id: Any, user: str) -> ChannelError:
    return ChannelError(
        errors.PRECONDITION_FAILED,
        f"user_id property set to '{user_id}' but authenticated user was '{user}'",
    )


def consumer_tag_reused(tag: str) -> ConnectionError:
    return ConnectionError(errors.NOT_ALLOWED, f"attempt to reuse consumer tag '{tag}'")


def unknown_delivery_tag(tag: int) -> ChannelError:
    return ChannelError(errors.PRECONDITION_FAILED, f"unknown delivery tag {tag}")


def consumer_timed_out(channel: int, timeout: int) -> ChannelError:
    return ChannelError(
        errors.PRECONDITION_FAILED,
        f"delivery acknowledgement on channel {channel} timed out. Timeout value used: "
        f"{timeout} ms. This timeout value can be configured, see consumers doc guide to "
        "learn more",
    )


def precondition(text: str) -> ChannelError:
    """The short 406 texts (``reply consumer already set``, ``channel is not
    transactional``...)."""
    return ChannelError(errors.PRECONDITION_FAILED, text)


def not_implemented(text: str) -> ConnectionError:
    """540: ``immediate=true``, ``active=false``, ``prefetch_size!=0 (N)``..."""
    return ConnectionError(errors.NOT_IMPLEMENTED, text)


# -- the connection ---------------------------------------------------------------------------


def channel_expected(class_id: int = 0, method_id: int = 0) -> ConnectionError:
    return ConnectionError(errors.CHANNEL_ERROR, "expected 'channel.open'", class_id, method_id)


def second_channel_open() -> ConnectionError:
    return ConnectionError(errors.CHANNEL_ERROR, "second 'channel.open' seen", 20, 10)


def unexpected_in_state(state_name: str, class_id: int, method_id: int) -> ConnectionError:
    return ConnectionError(
        errors.CHANNEL_ERROR,
        f"unexpected method in connection state {state_name}",
        class_id,
        method_id,
    )


def unexpected_frame(octets: str) -> ConnectionError:
    return ConnectionError(errors.UNEXPECTED_FRAME, f"type 1, all octets = {octets}")


def unimplemented_method(class_id: int, method_id: int) -> ConnectionError:
    return ConnectionError(errors.COMMAND_INVALID, "unimplemented method", class_id, method_id)


def login_refused(mechanism: str) -> ConnectionError:
    return ConnectionError(
        errors.ACCESS_REFUSED,
        f"Login was refused using authentication mechanism {mechanism}. "
        "For details see the broker logfile.",
    )


def vhost_not_found(vhost: str) -> ConnectionError:
    return ConnectionError(errors.NOT_ALLOWED, f"vhost {vhost} not found", 10, 40)


def frame_max_too_small(frame_max: int, minimum: int) -> ConnectionError:
    return ConnectionError(
        errors.NOT_ALLOWED, f"frame_max={frame_max} < {minimum} min size", 10, 31
    )


def frame_max_too_large(frame_max: int, maximum: int) -> ConnectionError:
    return ConnectionError(
        errors.NOT_ALLOWED, f"frame_max={frame_max} > {maximum} max size", 10, 31
    )


def channel_max_too_large(channel_max: int, maximum: int) -> ConnectionError:
    return ConnectionError(
        errors.NOT_ALLOWED,
        f"negotiated channel_max = {channel_max} is higher than the maximum allowed value "
        f"({maximum})",
        10,
        31,
    )


def too_many_channels(opened: int, channel_max: int) -> ConnectionError:
    return ConnectionError(
        errors.NOT_ALLOWED,
        f"number of channels opened ({opened}) has reached the negotiated channel_max "
        f"({channel_max})",
    )


SHUTDOWN = "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'"
