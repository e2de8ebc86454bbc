"""Channel class: open, close (both ways), flow, and how errors stay on their channel."""

from __future__ import annotations

from pamqp import commands

from ..harness import outcome, pika_channel, raw, scenario


@scenario(
    "channel.flow",
    "channel.flow-ok",
    expect={"reply": {"method": "Channel.FlowOk", "active": True}},
)
def channel_flow_active(url, prefix):
    with raw(url) as session:
        return {"reply": session.call(commands.Channel.Flow(active=True))}


@scenario(
    "channel.flow",
    expect={"reply": {"reply_code": 540, "reply_text": "NOT_IMPLEMENTED - active=false"}},
)
def channel_flow_inactive(url, prefix):
    with raw(url) as session:
        return {"reply": session.call(commands.Channel.Flow(active=False))}


@scenario(
    "channel.close",
    "channel.close-ok",
    "channel.open-ok",
    expect={"close": {"method": "Channel.CloseOk"}, "reopen": {"method": "Channel.OpenOk"}},
)
def channel_close_and_reopen(url, prefix):
    with raw(url) as session:
        close = session.call(commands.Channel.Close(200, "bye", 0, 0))
        return {"close": close, "reopen": session.call(commands.Channel.Open())}


def _missing_queue(session, prefix):
    return session.call(commands.Queue.Declare(queue=prefix, passive=True))


@scenario("channel.close", "channel.close-ok", expect={"reply": {"method": "Channel.CloseOk"}})
def channel_close_crossing_server_close(url, prefix):
    with raw(url) as session:
        closed = _missing_queue(session, prefix)
        return {"closed": closed, "reply": session.call(commands.Channel.Close(200, "", 0, 0))}


@scenario("channel.close", expect={"between": [], "reopen": {"method": "Channel.OpenOk"}})
def methods_on_closing_channel_are_ignored(url, prefix):
    with raw(url) as session:
        session.open_channel(2)
        closed = _missing_queue(session, prefix)
        session.send(1, commands.Queue.Declare(queue=prefix + "-x"))
        between = session.barrier(channel=2)
        session.send(1, commands.Channel.CloseOk())
        return {
            "closed": closed,
            "between": between,
            "reopen": session.call(commands.Channel.Open()),
        }


@scenario(
    "channel.close",
    "queue.declare",
    expect={"error": {"channel_closed": [404, lambda t: t.startswith("NOT_FOUND")]}},
)
def channel_error_leaves_other_channels_open(url, prefix):
    with pika_channel(url) as (connection, channel):
        other = connection.channel()
        other.queue_declare(prefix, exclusive=True)
        failed = outcome(channel.queue_declare, prefix + "-missing", passive=True)
        again = outcome(other.queue_declare, prefix, passive=True)
        fresh = outcome(connection.channel().queue_declare, prefix, passive=True)
        return {"error": failed, "other": again, "fresh": fresh, "open": connection.is_open}


@scenario("channel.open", expect={"reply": {"method": "Channel.OpenOk", "channel_id": ""}})
def channel_open_ok_channel_id(url, prefix):
    with raw(url, channel=False) as session:
        return {"reply": session.call(commands.Channel.Open(), channel=7)}


@scenario("channel.open")
def channel_number_above_channel_max(url, prefix):
    with raw(url, channel=False) as session:
        return {"reply": session.call(commands.Channel.Open(), channel=3000)}


@scenario("channel.close")
def method_on_unopened_channel(url, prefix):
    with raw(url) as session:
        return {"reply": session.call(commands.Queue.Declare(queue=prefix), channel=5)}
