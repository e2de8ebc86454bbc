"""Exchange class: declare, delete, their flags, equivalence, reserved names."""

from __future__ import annotations

from pamqp import commands

from ..harness import (
    channel_closed,
    connection_closed,
    outcome,
    pika_scenario,
    raw,
    scenario,
    sync,
)

DEFAULT_REFUSED = channel_closed(
    403, "ACCESS_REFUSED - operation not permitted on the default exchange"
)
OK_DECLARE = {"ok": {"method": "Exchange.DeclareOk"}}


def _inequivalent(kind: str, name: str, arg: str, received: str, current: str) -> str:
    return (
        f"PRECONDITION_FAILED - inequivalent arg '{arg}' for {kind} '{name}' in vhost '/': "
        f"received {received} but current is {current}"
    )


for _type in ("direct", "fanout", "topic", "headers"):
    pika_scenario(
        "exchange.declare",
        "exchange.declare-ok",
        name=f"exchange_declare_{_type}",
        expect=OK_DECLARE,
    )(lambda ch, p, t=_type: ch.exchange_declare(p, t))

for _name, _type, _text in (
    ("exchange_declare_invalid_type", "foo", "invalid exchange type 'foo'"),
    ("exchange_declare_unknown_x_type", "x-foo", "unknown exchange type 'x-foo'"),
    ("exchange_declare_empty_type", "", "invalid exchange type ''"),
):
    pika_scenario(
        "exchange.declare", name=_name, expect=connection_closed(503, f"COMMAND_INVALID - {_text}")
    )(lambda ch, p, t=_type: ch.exchange_declare(p, t))


@pika_scenario(
    "exchange.declare",
    expect={"channel_closed": [403, lambda t: "contains reserved prefix 'amq.*'" in t]},
)
def exchange_declare_reserved_prefix(ch, p):
    return ch.exchange_declare("amq." + p, "direct")


@pika_scenario(
    "exchange.declare", expect={"channel_closed": [404, lambda t: t.startswith("NOT_FOUND")]}
)
def exchange_declare_reserved_prefix_passive(ch, p):
    return ch.exchange_declare("amq." + p, passive=True)


@pika_scenario("exchange.declare", "exchange.delete", expect=OK_DECLARE)
def exchange_declare_reserved_prefix_is_case_sensitive(ch, p):
    result = ch.exchange_declare("AMQ." + p, "direct", auto_delete=True)
    ch.exchange_delete("AMQ." + p)
    return result


@pika_scenario("exchange.declare", expect=OK_DECLARE)
def exchange_redeclare_predeclared_equivalent(ch, p):
    return ch.exchange_declare("amq.direct", "direct", durable=True)


for _name, _kwargs, _arg, _got, _cur in (
    ("predeclared_durable", {"exchange_type": "direct"}, "durable", "'false'", "'true'"),
    (
        "predeclared_type",
        {"exchange_type": "fanout", "durable": True},
        "type",
        "'fanout'",
        "'direct'",
    ),
    (
        "predeclared_arguments",
        {"exchange_type": "direct", "durable": True, "arguments": {"alternate-exchange": "x"}},
        "alternate-exchange",
        "the value 'x' of type 'longstr'",
        "none",
    ),
):
    pika_scenario(
        "exchange.declare",
        name=f"exchange_redeclare_{_name}",
        expect=channel_closed(406, _inequivalent("exchange", "amq.direct", _arg, _got, _cur)),
    )(lambda ch, p, kw=_kwargs: ch.exchange_declare("amq.direct", **kw))


@pika_scenario("exchange.declare", expect={"channel_closed": [404, lambda t: "no exchange" in t]})
def exchange_declare_passive_missing(ch, p):
    return ch.exchange_declare(p, passive=True)


@pika_scenario("exchange.declare", expect=OK_DECLARE)
def exchange_declare_passive_ignores_flags(ch, p):
    ch.exchange_declare(p, "direct", auto_delete=True)
    return ch.exchange_declare(p, "fanout", passive=True, durable=True)


REDECLARE = (
    ("type", {}, {"exchange_type": "fanout"}),
    ("durable", {}, {"durable": True}),
    ("auto_delete", {}, {"auto_delete": True}),
    ("internal", {}, {"internal": True}),
    (
        "alternate_exchange",
        {"arguments": {"alternate-exchange": "ae1"}},
        {"arguments": {"alternate-exchange": "ae2"}},
    ),
    ("alternate_exchange_added", {}, {"arguments": {"alternate-exchange": "ae2"}}),
    ("unknown_argument", {"arguments": {"x-foo": 1}}, {"arguments": {"x-foo": 2}}),
)


def _redeclare(first, second):
    def body(ch, p):
        ch.exchange_declare(p, **{"exchange_type": "direct", "auto_delete": False, **first})
        try:
            return ch.exchange_declare(p, **{"exchange_type": "direct", **second})
        finally:
            ch.connection.channel().exchange_delete(p)

    return body


for _arg, _first, _second in REDECLARE:
    pika_scenario("exchange.declare", name=f"exchange_redeclare_different_{_arg}")(
        _redeclare(_first, _second)
    )


@pika_scenario(
    "exchange.delete", "exchange.delete-ok", expect={"ok": {"method": "Exchange.DeleteOk"}}
)
def exchange_delete_missing(ch, p):
    return ch.exchange_delete(p, if_unused=True)


@pika_scenario(
    "exchange.delete",
    "queue.bind",
    expect={"channel_closed": [406, lambda t: t.endswith("in use")]},
)
def exchange_delete_if_unused_when_bound(ch, p):
    ch.exchange_declare(p, "direct", auto_delete=False)
    queue = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(queue, p, "k")
    try:
        return ch.exchange_delete(p, if_unused=True)
    finally:
        ch.connection.channel().exchange_delete(p)


@pika_scenario("exchange.delete", expect={"ok": {"delete": {"method": "Exchange.DeleteOk"}}})
def exchange_delete_if_unused_when_unbound(ch, p):
    ch.exchange_declare(p, "topic")
    deleted = ch.exchange_delete(p, if_unused=True)
    return {"delete": deleted, "after": outcome(ch.exchange_declare, p, passive=True)}


for _name, _exchange in (("system", "amq.direct"), ("reserved_missing", "amq.")):
    pika_scenario(
        "exchange.delete",
        name=f"exchange_delete_{_name}",
        expect={"channel_closed": [403, lambda t: "deletion of system exchange" in t]},
    )(lambda ch, p, x=_exchange: ch.exchange_delete(x if x == "amq.direct" else x + p))

pika_scenario("exchange.delete", name="exchange_delete_default", expect=DEFAULT_REFUSED)(
    lambda ch, p: ch.exchange_delete("")
)
for _passive in (False, True):
    pika_scenario(
        "exchange.declare",
        name=f"exchange_declare_default{'_passive' if _passive else ''}",
        expect=DEFAULT_REFUSED,
    )(lambda ch, p, passive=_passive: ch.exchange_declare("", "direct", passive=passive))


@pika_scenario(
    "exchange.declare", "basic.publish", expect={"channel_closed": [403, lambda t: "internal" in t]}
)
def publish_to_internal_exchange(ch, p):
    ch.exchange_declare(p, "fanout", internal=True, auto_delete=False)
    try:
        ch.basic_publish(p, "", b"x")
        return sync(ch)
    finally:
        ch.connection.channel().exchange_delete(p)


@pika_scenario("exchange.declare", "exchange.delete", expect={"ok": [OK_DECLARE["ok"]] * 2})
def exchange_names_odd_and_long(ch, p):
    names = [p + " a b/c#*$%é", (p + "-" * 255)[:255]]
    seen = [ch.exchange_declare(name, "direct", passive=False) for name in names]
    for name in names:
        ch.exchange_delete(name)
    return seen


@pika_scenario("exchange.declare", "queue.unbind", "queue.bind")
def exchange_auto_delete_after_last_unbind(ch, p):
    ch.exchange_declare(p, "direct", auto_delete=True)
    queue = ch.queue_declare("", exclusive=True).method.queue
    before = outcome(ch.exchange_declare, p, passive=True)
    ch.queue_bind(queue, p, "a")
    ch.queue_bind(queue, p, "b")
    ch.queue_unbind(queue, p, "a")
    middle = outcome(ch.exchange_declare, p, passive=True)
    ch.queue_unbind(queue, p, "b")
    after = outcome(ch.connection.channel().exchange_declare, p, passive=True)
    return {"before": before, "middle": middle, "after": after}


@pika_scenario(
    "exchange.declare", "queue.delete", expect={"ok": {"ok": {"method": "Exchange.DeclareOk"}}}
)
def auto_delete_exchange_survives_unrelated_queue_delete(ch, p):
    ch.exchange_declare(p, "direct", auto_delete=True)
    ch.queue_declare(p, exclusive=True)
    ch.queue_delete(p)
    seen = outcome(ch.exchange_declare, p, passive=True)
    ch.connection.channel().exchange_delete(p)
    return seen


@pika_scenario("exchange.declare")
def predeclared_exchanges(ch, p):
    names = ["amq.direct", "amq.fanout", "amq.topic", "amq.headers", "amq.match", "xivo-cti"]
    return {name: outcome(ch.exchange_declare, name, passive=True) for name in names}


@pika_scenario("exchange.declare")
def predeclared_trace_exchange(ch, p):
    return outcome(ch.exchange_declare, "amq.rabbitmq.trace", passive=True)


@pika_scenario("exchange.declare")
def xivo_cti_is_direct_and_durable(ch, p):
    same = outcome(ch.exchange_declare, "xivo-cti", "direct", durable=True)
    return {
        "same": same,
        "fanout": outcome(ch.exchange_declare, "xivo-cti", "fanout", durable=True),
    }


@pika_scenario("exchange.delete", "queue.bind", "basic.publish", expect={"ok": []})
def exchange_delete_removes_its_bindings(ch, p):
    queue = ch.queue_declare("", exclusive=True).method.queue
    ch.exchange_declare(p, "fanout")
    ch.queue_bind(queue, p)
    ch.exchange_delete(p)
    ch.exchange_declare(p, "fanout")
    ch.basic_publish(p, "", b"lost")
    sync(ch)
    try:
        return ch.basic_get(queue, auto_ack=True)[2] and ["delivered"] or []
    finally:
        ch.exchange_delete(p)


@scenario("exchange.declare", expect={"reply": {"method": "Channel.Close", "reply_code": 403}})
def exchange_declare_nowait_error(url, prefix):
    with raw(url) as session:
        method = commands.Exchange.Declare(exchange="amq." + prefix, nowait=True)
        return {"reply": session.call(method)}


@scenario("exchange.declare", expect={"between": []})
def exchange_declare_nowait_success(url, prefix):
    with raw(url) as session:
        session.send(1, commands.Exchange.Declare(exchange=prefix, nowait=True))
        seen = {
            "between": session.barrier(),
            "passive": session.call(commands.Exchange.Declare(exchange=prefix, passive=True)),
        }
        session.call(commands.Exchange.Delete(exchange=prefix))
        return seen
