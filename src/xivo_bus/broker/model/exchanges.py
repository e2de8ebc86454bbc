"""Exchange types: one small class per type, each a ``route(message, routing_key) ->
destinations``.

A destination is a queue or, with exchange-to-exchange bindings, another exchange (the
vhost follows those). Bindings are identified, as in RabbitMQ, by (destination, routing
key, arguments).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from xivo_bus.broker.model import wording
from xivo_bus.broker.model.arguments import name_argument
from xivo_bus.broker.model.stats import MessageStats

if TYPE_CHECKING:
    from xivo_bus.broker.model.message import Message

    # A queue, or another exchange (exchange-to-exchange bindings): exchanges only hold
    # destinations and hand them back; the vhost tells them apart.
    Destination = Any


def freeze(value: Any) -> Any:
    """A hashable, order-independent form of a field table, for binding identity."""
    if isinstance(value, dict):
        return frozenset((k, freeze(v)) for k, v in value.items())
    if isinstance(value, list):
        return tuple(freeze(v) for v in value)
    if isinstance(value, bytearray):
        return bytes(value)
    return value


class Binding:
    __slots__ = ("destination", "routing_key", "arguments", "key")

    def __init__(self, destination: Destination, routing_key: str, arguments: dict):
        self.destination = destination
        self.routing_key = routing_key
        self.arguments = arguments
        self.key = (destination, routing_key, freeze(arguments))


class Exchange:
    """Base class: declaration attributes and the binding set."""

    type_name = ""

    def __init__(
        self,
        name: str,
        durable: bool = False,
        auto_delete: bool = False,
        internal: bool = False,
        arguments: dict | None = None,
    ):
        self.name = name
        self.durable = durable
        self.auto_delete = auto_delete
        self.internal = internal
        self.arguments = arguments or {}
        self.alternate_exchange = name_argument(self.arguments.get("alternate-exchange"))
        self.bindings: dict[tuple, Binding] = {}
        self.exchange_bindings = 0  # bindings whose destination is an exchange
        self.stats = MessageStats()  # publish_in, publish_out

    @property
    def simple(self) -> bool:
        """Routes straight to queues: no exchange destinations, no alternate exchange."""
        return not self.exchange_bindings and not self.alternate_exchange

    def check_binding(self, arguments: dict) -> None:
        """Refuse binding arguments the type cannot use (``ChannelError``)."""

    def bind(self, destination: Destination, routing_key: str, arguments: dict) -> bool:
        """Add a binding; False when it already existed."""
        binding = Binding(destination, routing_key, arguments)
        if binding.key in self.bindings:
            return False
        self.bindings[binding.key] = binding
        if isinstance(destination, Exchange):
            self.exchange_bindings += 1
        self._add(binding)
        return True

    def has_binding(self, destination: Destination, routing_key: str, arguments: dict) -> bool:
        return (destination, routing_key, freeze(arguments)) in self.bindings

    def unbind(self, destination: Destination, routing_key: str, arguments: dict) -> bool:
        binding = self.bindings.pop((destination, routing_key, freeze(arguments)), None)
        if binding is None:
            return False
        self._forget(binding)
        return True

    def unbind_all(self, destination: Destination) -> bool:
        """Remove every binding to ``destination``; whether there was any."""
        keys = [key for key in self.bindings if key[0] is destination]
        for key in keys:
            self._forget(self.bindings.pop(key))
        return bool(keys)

    def _forget(self, binding: Binding) -> None:
        if isinstance(binding.destination, Exchange):
            self.exchange_bindings -= 1
        self._remove(binding)

    def route(self, message: Message, routing_key: str) -> list[Destination]:
        raise NotImplementedError

    def _add(self, binding: Binding) -> None:
        pass

    def _remove(self, binding: Binding) -> None:
        pass


class DirectExchange(Exchange):
    """Routes to queues bound with exactly the message's routing key."""

    type_name = "direct"

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        # routing key -> destinations (a dict as an ordered set; one bound twice with
        # other arguments still gets one copy)
        self._by_key: dict[str, dict[Destination, int]] = {}

    def _add(self, binding: Binding) -> None:
        destinations = self._by_key.setdefault(binding.routing_key, {})
        destinations[binding.destination] = destinations.get(binding.destination, 0) + 1

    def _remove(self, binding: Binding) -> None:
        destinations = self._by_key[binding.routing_key]
        count = destinations[binding.destination] - 1
        if count:
            destinations[binding.destination] = count
        else:
            del destinations[binding.destination]
            if not destinations:
                del self._by_key[binding.routing_key]

    def route(self, message: Message, routing_key: str) -> list[Destination]:
        destinations = self._by_key.get(routing_key)
        return list(destinations) if destinations else []


class DefaultExchange(Exchange):
    """The nameless direct exchange every queue is implicitly bound to by its name."""

    type_name = "direct"

    def __init__(self, queues: dict[str, Destination], reply_queues: dict[str, Destination]):
        super().__init__("", durable=True)
        self._queues = queues
        self._reply_queues = reply_queues  # direct reply-to: amq.rabbitmq.reply-to.*

    def route(self, message: Message, routing_key: str) -> list[Destination]:
        queue = self._queues.get(routing_key) or self._reply_queues.get(routing_key)
        return [queue] if queue is not None else []


class FanoutExchange(Exchange):
    type_name = "fanout"

    def route(self, message: Message, routing_key: str) -> list[Destination]:
        return list(dict.fromkeys(b.destination for b in self.bindings.values()))


class _TopicNode:
    __slots__ = ("children", "destinations")

    def __init__(self) -> None:
        self.children: dict[str, _TopicNode] = {}
        self.destinations: dict[Destination, int] = {}


def _words(key: str) -> list[str]:
    """A topic key's words; as in RabbitMQ, the empty key has none (not one empty word)."""
    return key.split(".") if key else []


class TopicExchange(Exchange):
    """Routing keys are dot-separated words; ``*`` matches one word, ``#`` zero or more."""

    type_name = "topic"

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._root = _TopicNode()

    def _add(self, binding: Binding) -> None:
        node = self._root
        for word in _words(binding.routing_key):
            node = node.children.setdefault(word, _TopicNode())
        node.destinations[binding.destination] = node.destinations.get(binding.destination, 0) + 1

    def _remove(self, binding: Binding) -> None:
        path = [self._root]
        words = _words(binding.routing_key)
        for word in words:
            path.append(path[-1].children[word])
        node = path[-1]
        count = node.destinations[binding.destination] - 1
        if count:
            node.destinations[binding.destination] = count
            return
        del node.destinations[binding.destination]
        # prune empty branches
        for parent, word, child in zip(
            reversed(path[:-1]), reversed(words), reversed(path[1:]), strict=True
        ):
            if child.destinations or child.children:
                break
            del parent.children[word]

    def route(self, message: Message, routing_key: str) -> list[Destination]:
        found: dict[Destination, None] = {}
        self._match(self._root, _words(routing_key), 0, found, set())
        return list(found)

    def _match(self, node: _TopicNode, words: list[str], i: int, found: dict, seen: set) -> None:
        if i == len(words):
            found.update(dict.fromkeys(node.destinations))
            hash_node = node.children.get("#")
            if hash_node is not None:
                self._swallow(hash_node, words, i, found, seen)
            return
        child = node.children.get(words[i])
        if child is not None:
            self._match(child, words, i + 1, found, seen)
        star = node.children.get("*")
        if star is not None:
            self._match(star, words, i + 1, found, seen)
        hash_node = node.children.get("#")
        if hash_node is not None:
            # '#' swallows zero or more words
            for j in range(i, len(words) + 1):
                self._swallow(hash_node, words, j, found, seen)

    def _swallow(
        self, hash_node: _TopicNode, words: list[str], i: int, found: dict, seen: set
    ) -> None:
        """Match from a '#' at word ``i``, once: many '#' in a binding key reach the same
        place by many paths, and matching each would take exponential time (one client's
        binding "#.#.#.#.#.#.#.#" and a key of 30 words would hold the broker for hours)."""
        key = (id(hash_node), i)
        if key not in seen:
            seen.add(key)
            self._match(hash_node, words, i, found, seen)


_MISSING = object()
X_MATCH_MODES = ("all", "any", "all-with-x", "any-with-x")


def _text(value: Any) -> Any:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _same_value(a: Any, b: Any) -> bool:
    """Field values are equal as RabbitMQ (Erlang) sees them: a boolean is never a
    number, strings compare as bytes."""
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    if isinstance(a, str):
        a = a.encode()
    if isinstance(b, str):
        b = b.encode()
    return a == b


class HeadersExchange(Exchange):
    """Matches message headers against binding arguments; ``x-match`` is all (default),
    any, all-with-x or any-with-x."""

    type_name = "headers"

    def check_binding(self, arguments: dict) -> None:
        mode = arguments.get("x-match", "all")
        if _text(mode) not in X_MATCH_MODES:
            raise wording.invalid_x_match(mode)

    def route(self, message: Message, routing_key: str) -> list[Destination]:
        headers = message.headers
        found: dict[Destination, None] = {}
        for binding in self.bindings.values():
            if binding.destination not in found and self._matches(binding.arguments, headers):
                found[binding.destination] = None
        return list(found)

    @staticmethod
    def _matches(arguments: dict, headers: dict) -> bool:
        mode = _text(arguments.get("x-match", "all"))
        with_x = mode.endswith("-with-x")
        want_all = mode.startswith("all")
        matched = False
        for key, expected in arguments.items():
            if key.startswith("x-") and (key == "x-match" or not with_x):
                continue
            actual = headers.get(key, _MISSING)
            ok = actual is not _MISSING and (expected is None or _same_value(actual, expected))
            if want_all and not ok:
                return False
            if ok:
                matched = True
                if not want_all:
                    return True
        return want_all or matched


EXCHANGE_TYPES: dict[str, type[Exchange]] = {
    "direct": DirectExchange,
    "fanout": FanoutExchange,
    "topic": TopicExchange,
    "headers": HeadersExchange,
}


def exchange_class(type_name: str) -> type[Exchange]:
    cls = EXCHANGE_TYPES.get(type_name)
    if cls is None:
        raise wording.exchange_type(type_name)
    return cls
