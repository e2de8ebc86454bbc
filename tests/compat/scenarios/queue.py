"""Queue class: declare variants, exclusivity, bind/unbind/purge/delete and their errors."""

from __future__ import annotations

from pamqp import commands

from ..harness import (
    channel_closed,
    connect,
    get_all,
    outcome,
    own_exchange,
    pika_channel,
    pika_scenario,
    publish_all,
    raw,
    ready_count,
    scenario,
    sync,
)

NO_PREVIOUS = channel_closed(404, "NOT_FOUND - no previously declared queue")
LOCKED = {
    "channel_closed": [405, lambda t: t.startswith("RESOURCE_LOCKED - cannot obtain exclusive")]
}


@pika_scenario(
    "queue.declare",
    "queue.declare-ok",
    expect={
        "ok": {"queue": lambda q: q.startswith("amq.gen-") and len(q) == 30, "message_count": 0}
    },
)
def queue_declare_server_named(ch, p):
    return ch.queue_declare("", exclusive=True)


@pika_scenario("queue.declare", "basic.get", "basic.consume")
def queue_declare_ok_counts(ch, p):
    ch.queue_declare(p, exclusive=True)
    publish_all(ch, "", p, [b"1", b"2", b"3", b"4", b"5"])
    counts = [ready_count(ch, p, 5)]
    ch.basic_get(p)
    ch.basic_get(p)
    counts.append(ready_count(ch, p, 3))
    ch.basic_qos(prefetch_count=1)
    ch.basic_consume(p, lambda *args: None)
    # Delivery to the consumer is asynchronous too: one of the three leaves.
    counts.append(ready_count(ch, p, 2))
    return counts


@pika_scenario("queue.declare", expect={"channel_closed": [404, lambda t: "no queue" in t]})
def queue_declare_passive_missing(ch, p):
    return ch.queue_declare(p, passive=True)


@pika_scenario("queue.declare", expect=channel_closed(404, "NOT_FOUND - no queue '' in vhost '/'"))
def queue_declare_passive_empty_name(ch, p):
    ch.queue_declare("", exclusive=True)
    return ch.queue_declare("", passive=True)


REDECLARE = (
    ("durable", {}, {"durable": True}),
    ("durable_reversed", {"durable": True, "auto_delete": True}, {"auto_delete": True}),
    ("auto_delete", {}, {"auto_delete": True}),
    ("exclusive", {}, {"exclusive": True}),
    ("not_exclusive", {"exclusive": True}, {}),
    ("message_ttl", {"arguments": {"x-message-ttl": 1000}}, {"arguments": {"x-message-ttl": 2000}}),
    ("message_ttl_added", {}, {"arguments": {"x-message-ttl": 2000}}),
    ("max_length_removed", {"arguments": {"x-max-length": 10}}, {}),
    (
        "dead_letter_exchange",
        {"arguments": {"x-dead-letter-exchange": "a"}},
        {"arguments": {"x-dead-letter-exchange": "b"}},
    ),
    ("unknown_argument", {"arguments": {"x-foo": 1}}, {"arguments": {"x-foo": "2"}}),
    ("same_arguments", {"arguments": {"x-max-length": 5}}, {"arguments": {"x-max-length": 5}}),
    (
        "passive_ignores_flags",
        {},
        {"passive": True, "durable": True, "arguments": {"x-max-length": 1}},
    ),
)


def _redeclare(first, second):
    def body(ch, p):
        ch.queue_declare(p, **{"auto_delete": True, **first})
        try:
            return ch.queue_declare(p, **{"auto_delete": True, **second})
        finally:
            ch.connection.channel().queue_delete(p)

    return body


for _arg, _first, _second in REDECLARE:
    pika_scenario("queue.declare", name=f"queue_redeclare_{_arg}")(_redeclare(_first, _second))


@pika_scenario(
    "queue.declare", expect={"channel_closed": [403, lambda t: "reserved prefix 'amq.*'" in t]}
)
def queue_declare_reserved_prefix(ch, p):
    return ch.queue_declare("amq." + p)


@pika_scenario("queue.declare", expect={"channel_closed": [404, lambda t: "no queue" in t]})
def queue_declare_reserved_prefix_passive(ch, p):
    return ch.queue_declare("amq." + p, passive=True)


@pika_scenario("queue.declare", expect={"channel_closed": [403, lambda t: "reserved prefix" in t]})
def queue_redeclare_server_named(ch, p):
    queue = ch.queue_declare("", exclusive=True).method.queue
    return ch.queue_declare(queue, exclusive=True)


@pika_scenario("queue.declare", "queue.delete")
def queue_declare_exclusive_durable_and_long_name(ch, p):
    names = [p + "-durable", (p + "-" * 255)[:255]]
    seen = [ch.queue_declare(names[0], durable=True, exclusive=True)]
    seen.append(ch.queue_declare(names[1], auto_delete=True))
    seen.append(ch.queue_delete(names[1]))
    return seen


@scenario("queue.declare", expect={"after": {"channel_closed": [404, lambda t: "no queue" in t]}})
def exclusive_queue_deleted_with_connection(url, prefix):
    owner = connect(url)
    owner.channel().queue_declare(prefix, exclusive=True)
    owner.close()
    with pika_channel(url) as (_connection, channel):
        return {"after": outcome(channel.queue_declare, prefix, passive=True)}


LOCKED_OPERATIONS = {
    "declare": lambda ch, q: ch.queue_declare(q, exclusive=True),
    "declare_not_exclusive": lambda ch, q: ch.queue_declare(q),
    "declare_passive": lambda ch, q: ch.queue_declare(q, passive=True),
    "bind": lambda ch, q: ch.queue_bind(q, "amq.direct", "other"),
    "unbind": lambda ch, q: ch.queue_unbind(q, "amq.direct", "k"),
    "unbind_missing_binding": lambda ch, q: ch.queue_unbind(q, "amq.direct", "missing"),
    "consume": lambda ch, q: ch.basic_consume(q, lambda *a: None),
    "purge": lambda ch, q: ch.queue_purge(q),
    "delete": lambda ch, q: ch.queue_delete(q),
    "get": lambda ch, q: ch.basic_get(q),
    "publish_default_exchange": lambda ch, q: (ch.basic_publish("", q, b"x"), sync(ch))[1],
}


def _locked(operation):
    def run(url, prefix):
        with pika_channel(url) as (_owner, owner_channel):
            owner_channel.queue_declare(prefix, exclusive=True)
            owner_channel.queue_bind(prefix, "amq.direct", "k")
            with pika_channel(url) as (_other, channel):
                seen = outcome(operation, channel, prefix)
            return {
                "other": seen,
                "owner": outcome(owner_channel.queue_declare, prefix, passive=True),
            }

    return run


for _op, _func in LOCKED_OPERATIONS.items():
    scenario(
        "queue.declare",
        "queue.bind",
        "queue.unbind",
        "queue.purge",
        "queue.delete",
        "basic.consume",
        "basic.get",
        name=f"exclusive_queue_from_other_connection_{_op}",
        expect=None if _op.endswith(("missing_binding", "exchange")) else {"other": LOCKED},
    )(_locked(_func))


def _queue_with(ch, p, ready=0, unacked=0, consumer=False):
    ch.queue_declare(p, exclusive=True)
    publish_all(ch, "", p, [b"m%d" % i for i in range(ready + unacked)])
    for _ in range(unacked):
        ch.basic_get(p)
    if consumer:
        ch.basic_consume(p, lambda *a: None, consumer_tag="c")


DELETE = (
    (
        "if_unused_with_consumer",
        {"consumer": True},
        {"if_unused": True},
        {"channel_closed": [406, lambda t: t.endswith("in use")]},
    ),
    (
        "if_empty_with_ready",
        {"ready": 1},
        {"if_empty": True},
        {"channel_closed": [406, lambda t: t.endswith("not empty")]},
    ),
    (
        "if_empty_with_only_unacked",
        {"unacked": 1},
        {"if_empty": True},
        {"ok": {"message_count": 0}},
    ),
    ("counts_ready_only", {"ready": 2, "unacked": 1}, {}, {"ok": {"message_count": 2}}),
)
for _name, _setup, _flags, _expect in DELETE:
    pika_scenario("queue.delete", "queue.delete-ok", name=f"queue_delete_{_name}", expect=_expect)(
        lambda ch, p, s=_setup, f=_flags: (_queue_with(ch, p, **s), ch.queue_delete(p, **f))[1]
    )

pika_scenario("queue.delete", name="queue_delete_missing", expect={"ok": {"message_count": 0}})(
    lambda ch, p: ch.queue_delete(p, if_unused=True, if_empty=True)
)
pika_scenario(
    "queue.delete", name="queue_delete_reserved_missing", expect={"ok": {"message_count": 0}}
)(lambda ch, p: ch.queue_delete("amq." + p))

for _name, _call in (
    ("delete", lambda ch: ch.queue_delete("")),
    ("bind", lambda ch: ch.queue_bind("", "amq.direct", "k")),
    ("purge", lambda ch: ch.queue_purge("")),
    ("consume", lambda ch: ch.basic_consume("", lambda *a: None)),
):
    pika_scenario(
        "queue.delete",
        "queue.bind",
        "queue.purge",
        "basic.consume",
        name=f"empty_queue_name_{_name}_without_declare",
        expect=NO_PREVIOUS,
    )(lambda ch, p, c=_call: c(ch))

BIND_ERRORS = (
    ("missing_exchange", lambda p: (p, p + "-x"), "no exchange"),
    ("missing_queue", lambda p: (p + "-q", "amq.direct"), "no queue"),
    ("both_missing", lambda p: (p + "-q", p + "-x"), "no exchange"),
)
for _name, _names, _what in BIND_ERRORS:
    pika_scenario(
        "queue.bind",
        name=f"queue_bind_{_name}",
        expect={"channel_closed": [404, lambda t, w=_what: w in t]},
    )(lambda ch, p, n=_names: (ch.queue_declare(p, exclusive=True), ch.queue_bind(*n(p), "k"))[1])

for _method in ("bind", "unbind"):
    pika_scenario(
        f"queue.{_method}",
        name=f"queue_{_method}_default_exchange",
        expect=channel_closed(
            403, "ACCESS_REFUSED - operation not permitted on the default exchange"
        ),
    )(
        lambda ch, p, m=_method: (
            ch.queue_declare(p, exclusive=True),
            getattr(ch, f"queue_{m}")(p, "", p),
        )[1]
    )


@pika_scenario("queue.bind", "queue.bind-ok", "basic.publish")
def queue_bind_empty_name_uses_last_queue(ch, p):
    queue = ch.queue_declare("", exclusive=True).method.queue
    with own_exchange(ch, p, "direct"):
        bound = ch.queue_bind("", p, "")
        ch.basic_publish(p, "", b"empty key")
        ch.basic_publish(p, queue, b"queue name as key")
        sync(ch)
        return {"bound": bound, "got": [m["body"] for m in get_all(ch, queue)]}


@pika_scenario("queue.unbind", "queue.unbind-ok", expect={"ok": [{"method": "Queue.UnbindOk"}] * 3})
def queue_unbind_missing_things(ch, p):
    ch.queue_declare(p, exclusive=True)
    return [
        ch.queue_unbind(p, "amq.direct", "never-bound"),
        ch.queue_unbind(p + "-q", "amq.direct", "k"),
        ch.queue_unbind(p, p + "-x", "k"),
    ]


@pika_scenario("queue.purge", expect={"channel_closed": [404, lambda t: "no queue" in t]})
def queue_purge_missing(ch, p):
    return ch.queue_purge(p)


@pika_scenario("queue.purge", "queue.purge-ok", "basic.recover")
def queue_purge_counts_ready_and_keeps_unacked(ch, p):
    _queue_with(ch, p, ready=3, unacked=1)
    purged = ch.queue_purge(p)
    ch.basic_recover(requeue=True)
    return {"purged": purged, "after_recover": [m["body"] for m in get_all(ch, p)]}


@pika_scenario("queue.declare", "basic.cancel", "basic.consume")
def queue_auto_delete_after_last_consumer(ch, p):
    ch.queue_declare(p, auto_delete=True)
    ch.basic_consume(p, lambda *a: None, consumer_tag="a")
    ch.basic_consume(p, lambda *a: None, consumer_tag="b")
    ch.basic_cancel("a")
    middle = outcome(ch.queue_declare, p, passive=True)
    ch.basic_cancel("b")
    return {"middle": middle, "after": outcome(ch.queue_declare, p, passive=True)}


@pika_scenario("queue.declare")
def queue_auto_delete_never_consumed_stays(ch, p):
    ch.queue_declare(p, auto_delete=True)
    seen = outcome(ch.queue_declare, p, passive=True)
    ch.queue_delete(p)
    return seen


@pika_scenario("queue.bind", "basic.publish", expect={"ok": ["once"]})
def queue_bind_twice_delivers_once(ch, p):
    ch.queue_declare(p, exclusive=True)
    ch.queue_bind(p, "amq.direct", p)
    ch.queue_bind(p, "amq.direct", p)
    ch.basic_publish("amq.direct", p, b"once")
    sync(ch)
    return [m["body"] for m in get_all(ch, p)]


@scenario("queue.declare", expect={"between": []})
def queue_declare_nowait(url, prefix):
    with raw(url) as session:
        session.send(1, commands.Queue.Declare(queue=prefix, exclusive=True, nowait=True))
        between = session.barrier()
        return {
            "between": between,
            "passive": session.call(commands.Queue.Declare(queue=prefix, passive=True)),
        }
