"""Routing by each exchange type: direct, fanout, topic (wildcards and edge cases),
headers (x-match all/any and their variants), and the default exchange."""

from __future__ import annotations

import pika

from ..harness import bodies, get_all, own_exchange, pika_scenario, sync


def _routes(exchange_type: str, bindings, messages):
    """Bind one queue per ``(routing_key, arguments)``, publish each ``(routing_key,
    headers)``; the observation is which queue got which message."""

    def body(ch, p):
        with own_exchange(ch, p, exchange_type):
            return _route(ch, p)

    def _route(ch, p):
        queues = []
        for index, (routing_key, arguments) in enumerate(bindings):
            queue = ch.queue_declare(f"{p}-{index}", exclusive=True).method.queue
            ch.queue_bind(queue, p, routing_key, arguments=arguments)
            queues.append(queue)
        for index, (routing_key, headers) in enumerate(messages):
            properties = pika_properties(headers)
            ch.basic_publish(p, routing_key, str(index).encode(), properties=properties)
        sync(ch)
        return {
            f"{key!r} {args}": bodies(ch, q)
            for (key, args), q in zip(bindings, queues, strict=True)
        }

    return body


def pika_properties(headers):
    return pika.BasicProperties(headers=headers) if headers is not None else None


ROUTES = {
    "direct_exact_key": (
        "direct",
        [("a", None), ("b", None), ("", None)],
        [("a", None), ("b", None), ("A", None), ("", None)],
    ),
    "direct_multiple_keys_same_queue": ("direct", [("a", None), ("a", {"x": 1})], [("a", None)]),
    "fanout_ignores_key": ("fanout", [("a", None), ("whatever", None)], [("z", None), ("", None)]),
    "topic_star": (
        "topic",
        [("a.*", None)],
        [("a.b", None), ("a", None), ("a.b.c", None), ("a.", None), ("b.a", None)],
    ),
    "topic_hash": (
        "topic",
        [("a.#", None)],
        [("a", None), ("a.b", None), ("a.b.c", None), ("b.a", None), ("ab", None)],
    ),
    "topic_hash_alone": (
        "topic",
        [("#", None)],
        [("", None), ("a", None), ("a.b.c", None), (".", None)],
    ),
    "topic_star_alone": (
        "topic",
        [("*", None)],
        [("", None), ("a", None), ("a.b", None), (".", None)],
    ),
    "topic_empty_binding_key": ("topic", [("", None)], [("", None), ("a", None), (".", None)]),
    "topic_hash_in_middle": (
        "topic",
        [("a.#.z", None)],
        [("a.z", None), ("a.b.z", None), ("a.b.c.z", None), ("a.z.b", None)],
    ),
    "topic_hash_hash": (
        "topic",
        [("#.#", None), ("a.#.#", None)],
        [("", None), ("a", None), ("a.b", None)],
    ),
    "topic_star_hash": (
        "topic",
        [("*.#", None), ("#.*", None)],
        [("", None), ("a", None), ("a.b", None)],
    ),
    "topic_empty_words": (
        "topic",
        [("a..b", None), ("a.*.b", None), ("*..*", None)],
        [("a..b", None), ("a.x.b", None), ("..", None)],
    ),
    "topic_literal_words": (
        "topic",
        [("status.user", None), ("calls.call.created", None)],
        [("status.user", None), ("status.users", None), ("calls.call.created", None)],
    ),
    "topic_wildcards_inside_words": (
        "topic",
        [("a*.b", None), ("a#", None)],
        [("a*.b", None), ("ab.b", None), ("a#", None), ("ax", None)],
    ),
    "headers_all_default": (
        "headers",
        [("", {"name": "call_form_result", "v": 1})],
        [
            ("", {"name": "call_form_result", "v": 1}),
            ("", {"name": "call_form_result"}),
            ("", {"name": "call_form_result", "v": 1, "extra": "y"}),
            ("", None),
        ],
    ),
    "headers_any": (
        "headers",
        [("", {"x-match": "any", "a": "1", "b": "2"})],
        [("", {"a": "1"}), ("", {"b": "2", "c": 3}), ("", {"a": "2"}), ("", {})],
    ),
    "headers_all_explicit": (
        "headers",
        [("", {"x-match": "all", "a": "1", "b": "2"})],
        [("", {"a": "1", "b": "2"}), ("", {"a": "1"})],
    ),
    "headers_empty_binding": (
        "headers",
        [("", {}), ("", {"x-match": "any"})],
        [("", {"a": 1}), ("", None)],
    ),
    "headers_value_types": (
        "headers",
        [("", {"n": 1}), ("", {"s": "1"}), ("", {"t": True})],
        [("", {"n": 1}), ("", {"n": "1"}), ("", {"s": "1"}), ("", {"t": True}), ("", {"t": 1})],
    ),
    "headers_void_value": (
        "headers",
        [("", {"k": None})],
        [("", {"k": None}), ("", {"k": "v"}), ("", {})],
    ),
    "headers_x_arguments_ignored": (
        "headers",
        [("", {"x-foo": "bar", "a": "1"})],
        [("", {"a": "1"}), ("", {"x-foo": "bar"}), ("", {"a": "1", "x-foo": "other"})],
    ),
    "headers_routing_key_ignored": (
        "headers",
        [("key", {"a": "1"})],
        [("other", {"a": "1"}), ("key", {"b": "1"})],
    ),
    "headers_all_with_x": (
        "headers",
        [("", {"x-match": "all-with-x", "x-foo": "bar"})],
        [("", {"x-foo": "bar"}), ("", {"x-foo": "baz"})],
    ),
    "headers_any_with_x": (
        "headers",
        [("", {"x-match": "any-with-x", "x-foo": "bar", "a": "1"})],
        [("", {"x-foo": "bar"}), ("", {"a": "1"}), ("", {"b": "1"})],
    ),
    "headers_nested_table_value": (
        "headers",
        [("", {"t": {"a": 1}})],
        [("", {"t": {"a": 1}}), ("", {"t": {"a": 2}})],
    ),
}

for _name, (_type, _bindings, _messages) in ROUTES.items():
    pika_scenario("exchange.declare", "queue.bind", "basic.publish", name=f"route_{_name}")(
        _routes(_type, _bindings, _messages)
    )


@pika_scenario("exchange.declare", "queue.bind", "basic.publish")
def headers_invalid_x_match(ch, p):
    with own_exchange(ch, p, "headers"):
        queue = ch.queue_declare("", exclusive=True).method.queue
        return ch.queue_bind(queue, p, "", arguments={"x-match": "some"})


@pika_scenario(
    "basic.publish",
    "basic.get",
    expect={"ok": [{"exchange": "", "routing_key": lambda k: k.endswith("-q")}]},
)
def default_exchange_routes_by_queue_name(ch, p):
    ch.queue_declare(p + "-q", exclusive=True)
    ch.basic_publish("", p + "-q", b"direct to queue")
    ch.basic_publish("", p + "-missing", b"lost")
    sync(ch)
    return [{k: m[k] for k in ("exchange", "routing_key")} for m in get_all(ch, p + "-q")]


@pika_scenario("queue.unbind", "basic.publish", expect={"ok": ["before"]})
def unbind_stops_routing(ch, p):
    ch.queue_declare(p, exclusive=True)
    ch.queue_bind(p, "amq.topic", p + ".#")
    ch.basic_publish("amq.topic", p + ".x", b"before")
    ch.queue_unbind(p, "amq.topic", p + ".#")
    ch.basic_publish("amq.topic", p + ".x", b"after")
    sync(ch)
    return bodies(ch, p)
