"""Publisher confirms and transactions, and the rules between the two modes."""

from __future__ import annotations

import pika
import pika.exceptions
from pamqp import commands

from ..harness import (
    channel_closed,
    delivery,
    get_all,
    outcome,
    pika_scenario,
    raw,
    scenario,
    sync,
)


def _confirms(frames) -> dict:
    """Confirms as the set of publish sequence numbers acked/nacked (a broker may fold
    several into one ``multiple`` ack), and the other frames in order."""
    acked, nacked, others = [], [], []
    for frame in frames:
        method = frame.get("method") if isinstance(frame, dict) else None
        if method in ("Basic.Ack", "Basic.Nack"):
            tags = acked if method == "Basic.Ack" else nacked
            tag = frame["delivery_tag"]
            if frame["multiple"]:
                tags.extend(t for t in range(1, tag + 1) if t not in acked and t not in nacked)
            else:
                tags.append(tag)
        else:
            others.append(frame)
    return {"acked": sorted(acked), "nacked": sorted(nacked), "others": others}


def read_confirms(session, expected: int) -> dict:
    """Frames read until ``expected`` publishes are confirmed, as ``_confirms`` shows them."""
    frames: list = []
    while True:
        seen = _confirms(frames)
        if len(seen["acked"]) + len(seen["nacked"]) >= expected:
            return seen
        frame = session.next()
        frames.append(frame)
        if not isinstance(frame, dict):
            return _confirms(frames)


def confirm_session(url, prefix, publishes, expected: int):
    """Publish ``(exchange, routing_key, mandatory)`` in confirm mode; read until
    ``expected`` publishes are confirmed."""
    with raw(url) as session:
        session.call(commands.Queue.Declare(queue=prefix, exclusive=True))
        select = session.call(commands.Confirm.Select())
        for exchange, routing_key, mandatory in publishes:
            routing_key = routing_key.replace("<P>", prefix)
            session.publish(1, exchange, routing_key, b"c", mandatory=mandatory)
        return {"select": select, **read_confirms(session, expected)}


CONFIRMS = {
    "confirm_tags_start_at_one": ([("", "<P>", False)] * 3, 3),
    "confirm_unroutable_is_acked": ([("amq.direct", "nowhere", False)], 1),
    "confirm_after_return_when_mandatory": (
        [("amq.direct", "nowhere", True), ("", "<P>", True)],
        2,
    ),
}
for _name, (_publishes, _expected) in CONFIRMS.items():
    scenario(
        "confirm.select",
        "confirm.select-ok",
        "basic.ack",
        "basic.return",
        name=_name,
        expect={"acked": list(range(1, _expected + 1)), "nacked": []},
    )(lambda url, prefix, pubs=_publishes, n=_expected: confirm_session(url, prefix, pubs, n))


@scenario("confirm.select", "basic.ack", expect={"between": [], "acked": [1]})
def confirm_select_nowait(url, prefix):
    with raw(url) as session:
        session.send(1, commands.Confirm.Select(nowait=True))
        between = session.barrier()
        session.publish(1, "amq.direct", "nowhere", b"x")
        return {"between": between, **_confirms([session.next()])}


@pika_scenario(
    "confirm.select",
    "basic.publish",
    expect={"channel_closed": [404, lambda t: "no exchange" in t]},
)
def confirm_publish_to_missing_exchange(ch, p):
    ch.confirm_delivery()
    return ch.basic_publish(p, "k", b"x")


@pika_scenario("confirm.select", "basic.publish", "basic.return")
def pika_confirm_mandatory_unroutable(ch, p):
    ch.confirm_delivery()
    ch.queue_declare(p, exclusive=True)
    seen = [outcome(ch.basic_publish, "", p, b"routed", mandatory=True)]
    try:
        ch.basic_publish("amq.direct", p, b"unroutable", mandatory=True)
        seen.append("published")
    except pika.exceptions.UnroutableError as exc:
        seen.append(
            {"unroutable": [delivery(m.method, m.properties, m.body) for m in exc.messages]}
        )
    return seen


MODE_ERRORS = {
    "tx_after_confirm": (
        lambda ch: (ch.confirm_delivery(), ch.tx_select()),
        "cannot switch from confirm to tx mode",
    ),
    "confirm_after_tx": (
        lambda ch: (ch.tx_select(), ch.confirm_delivery()),
        "cannot switch from tx to confirm mode",
    ),
    "commit_without_select": (lambda ch: ch.tx_commit(), "channel is not transactional"),
    "rollback_without_select": (lambda ch: ch.tx_rollback(), "channel is not transactional"),
}
for _name, (_action, _text) in MODE_ERRORS.items():
    pika_scenario(
        "tx.select",
        "confirm.select",
        "tx.commit",
        "tx.rollback",
        name=_name,
        expect=channel_closed(406, f"PRECONDITION_FAILED - {_text}"),
    )(lambda ch, p, a=_action: a(ch))


@scenario(
    "tx.select",
    "confirm.select",
    expect={"tx": [{"method": "Tx.SelectOk"}] * 2, "confirm": [{"method": "Confirm.SelectOk"}] * 2},
)
def select_twice(url, prefix):
    with raw(url) as session:
        session.open_channel(2)
        tx = [session.call(commands.Tx.Select()), session.call(commands.Tx.Select())]
        confirm = [
            session.call(commands.Confirm.Select(), 2),
            session.call(commands.Confirm.Select(), 2),
        ]
        return {"tx": tx, "confirm": confirm}


@pika_scenario("tx.select", "tx.select-ok", "tx.commit", "tx.commit-ok", "basic.publish")
def tx_publish_visible_after_commit(ch, p):
    ch.queue_declare(p, exclusive=True)
    selected = ch.tx_select()
    ch.basic_publish("", p, b"a")
    ch.basic_publish("", p, b"b")
    before = ch.connection.channel().queue_declare(p, passive=True)
    committed = ch.tx_commit()
    return {
        "select": selected,
        "before": before,
        "commit": committed,
        "got": get_all(ch.connection.channel(), p),
    }


@pika_scenario("tx.rollback", "tx.rollback-ok", "basic.publish", "basic.ack")
def tx_rollback_discards_publishes_and_acks(ch, p):
    ch.queue_declare(p, exclusive=True)
    ch.basic_publish("", p, b"kept")
    ch.tx_select()
    ch.tx_commit()
    method, _props, _body = ch.basic_get(p)
    ch.basic_publish("", p, b"discarded")
    ch.basic_ack(method.delivery_tag)
    rolled_back = ch.tx_rollback()
    count = ch.queue_declare(p, passive=True)
    ch.basic_ack(method.delivery_tag)
    ch.tx_commit()
    return {"rollback": rolled_back, "count": count, "after": ch.queue_declare(p, passive=True)}


@pika_scenario(
    "tx.select",
    "basic.ack",
    expect=channel_closed(406, "PRECONDITION_FAILED - unknown delivery tag 99"),
)
def tx_ack_unknown_tag_fails_at_once(ch, p):
    ch.tx_select()
    ch.basic_ack(99)
    return sync(ch)


@pika_scenario("tx.commit", "basic.return", "basic.publish")
def tx_mandatory_return_at_commit(ch, p):
    returned = []
    ch.add_on_return_callback(lambda _c, m, props, body: returned.append(delivery(m, props, body)))
    ch.tx_select()
    ch.basic_publish("amq.direct", p, b"back", mandatory=True)
    sync(ch)
    ch.connection.process_data_events(time_limit=0.1)
    before = list(returned)
    ch.tx_commit()
    ch.connection.process_data_events(time_limit=0.1)
    return {"before_commit": before, "after_commit": returned}


@pika_scenario("tx.commit", "basic.nack", "basic.reject")
def tx_commit_applies_nack_and_reject(ch, p):
    ch.queue_declare(p, exclusive=True)
    for body in (b"a", b"b", b"c"):
        ch.basic_publish("", p, body)
    ch.tx_select()
    tags = [ch.basic_get(p)[0].delivery_tag for _ in range(3)]
    ch.basic_reject(tags[0], requeue=True)
    ch.basic_nack(tags[2], requeue=False)
    before = ch.queue_declare(p, passive=True)
    ch.tx_commit()
    return {"before": before, "after": get_all(ch, p)}
