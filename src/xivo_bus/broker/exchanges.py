"""Exchange types: one small class per type, each a ``route(message) -> queues``.

Bindings are identified, as in RabbitMQ, by (destination, routing key, arguments).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from xivo_bus.amqp import errors

if TYPE_CHECKING:
    from xivo_bus.broker.message import Message
    from xivo_bus.broker.queue import Queue


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
    __slots__ = ("queue", "routing_key", "arguments", "key")

    def __init__(self, queue: Queue, routing_key: str, arguments: dict):
        self.queue = queue
        self.routing_key = routing_key
        self.arguments = arguments
        self.key = (queue, routing_key, freeze(arguments))


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
        self.bindings: dict[tuple, Binding] = {}

    def bind(self, queue: Queue, routing_key: str, arguments: dict) -> bool:
        """Add a binding; False when it already existed."""
        binding = Binding(queue, routing_key, arguments)
        if binding.key in self.bindings:
            return False
        self.bindings[binding.key] = binding
        self._add(binding)
        return True

    def has_binding(self, queue: Queue, routing_key: str, arguments: dict) -> bool:
        return (queue, routing_key, freeze(arguments)) in self.bindings

    def unbind(self, queue: Queue, routing_key: str, arguments: dict) -> bool:
        binding = self.bindings.pop((queue, routing_key, freeze(arguments)), None)
        if binding is None:
            return False
        self._remove(binding)
        return True

    def unbind_queue(self, queue: Queue) -> None:
        for key in [k for k in self.bindings if k[0] is queue]:
            self._remove(self.bindings.pop(key))

    def route(self, message: Message) -> list[Queue]:
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
        # routing key -> queues (a dict as an ordered set; a queue bound twice with other
        # arguments still gets one copy)
        self._by_key: dict[str, dict[Queue, int]] = {}

    def _add(self, binding: Binding) -> None:
        queues = self._by_key.setdefault(binding.routing_key, {})
        queues[binding.queue] = queues.get(binding.queue, 0) + 1

    def _remove(self, binding: Binding) -> None:
        queues = self._by_key[binding.routing_key]
        count = queues[binding.queue] - 1
        if count:
            queues[binding.queue] = count
        else:
            del queues[binding.queue]
            if not queues:
                del self._by_key[binding.routing_key]

    def route(self, message: Message) -> list[Queue]:
        queues = self._by_key.get(message.routing_key)
        return list(queues) if queues else []


class DefaultExchange(Exchange):
    """The nameless direct exchange every queue is implicitly bound to by its name."""

    type_name = "direct"

    def __init__(self, queues: dict[str, Queue]):
        super().__init__("", durable=True)
        self._queues = queues

    def route(self, message: Message) -> list[Queue]:
        queue = self._queues.get(message.routing_key)
        return [queue] if queue is not None else []


class FanoutExchange(Exchange):
    type_name = "fanout"

    def route(self, message: Message) -> list[Queue]:
        return list(dict.fromkeys(b.queue for b in self.bindings.values()))


class _TopicNode:
    __slots__ = ("children", "queues")

    def __init__(self) -> None:
        self.children: dict[str, _TopicNode] = {}
        self.queues: dict[Queue, int] = {}


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
        node.queues[binding.queue] = node.queues.get(binding.queue, 0) + 1

    def _remove(self, binding: Binding) -> None:
        path = [self._root]
        words = _words(binding.routing_key)
        for word in words:
            path.append(path[-1].children[word])
        node = path[-1]
        count = node.queues[binding.queue] - 1
        if count:
            node.queues[binding.queue] = count
            return
        del node.queues[binding.queue]
        # prune empty branches
        for parent, word, child in zip(
            reversed(path[:-1]), reversed(words), reversed(path[1:]), strict=True
        ):
            if child.queues or child.children:
                break
            del parent.children[word]

    def route(self, message: Message) -> list[Queue]:
        found: dict[Queue, None] = {}
        self._match(self._root, _words(message.routing_key), 0, found)
        return list(found)

    def _match(self, node: _TopicNode, words: list[str], i: int, found: dict) -> None:
        if i == len(words):
            found.update(dict.fromkeys(node.queues))
            hash_node = node.children.get("#")
            if hash_node is not None:
                self._match(hash_node, words, i, found)
            return
        child = node.children.get(words[i])
        if child is not None:
            self._match(child, words, i + 1, found)
        star = node.children.get("*")
        if star is not None:
            self._match(star, words, i + 1, found)
        hash_node = node.children.get("#")
        if hash_node is not None:
            # '#' swallows zero or more words
            for j in range(i, len(words) + 1):
                self._match(hash_node, words, j, found)


_MISSING = object()


class HeadersExchange(Exchange):
    """Matches message headers against binding arguments; ``x-match`` is all (default),
    any, all-with-x or any-with-x."""

    type_name = "headers"

    def route(self, message: Message) -> list[Queue]:
        headers = message.headers
        found: dict[Queue, None] = {}
        for binding in self.bindings.values():
            if binding.queue not in found and self._matches(binding.arguments, headers):
                found[binding.queue] = None
        return list(found)

    @staticmethod
    def _matches(arguments: dict, headers: dict) -> bool:
        mode = arguments.get("x-match", "all")
        if isinstance(mode, bytes):
            mode = mode.decode()
        with_x = mode.endswith("-with-x")
        want_all = mode.startswith("all")
        matched = False
        for key, expected in arguments.items():
            if key.startswith("x-") and (key == "x-match" or not with_x):
                continue
            actual = headers.get(key, _MISSING)
            ok = actual is not _MISSING and (expected is None or actual == expected)
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
        adjective = "unknown" if type_name.startswith("x-") else "invalid"
        raise errors.ConnectionError(
            errors.COMMAND_INVALID, f"{adjective} exchange type '{type_name}'", 40, 10
        )
    return cls
