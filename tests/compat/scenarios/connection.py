"""Connection class: handshake, tune, vhosts, authentication, framing errors."""

from __future__ import annotations

import socket
import time

from pamqp import commands, encode

from ..harness import (
    Divergence,
    close_frame,
    connect,
    describe,
    error,
    host_port,
    jsonable,
    raw,
    scenario,
    with_credentials,
    with_vhost,
)

CLOSED = "closed"


@scenario(
    "connection.start",
    "connection.start-ok",
    "connection.tune",
    "connection.tune-ok",
    "connection.open",
    "connection.open-ok",
    expect={
        "start": {
            "version_major": 0,
            "version_minor": 9,
            "mechanisms": "AMQPLAIN PLAIN",
            "locales": "en_US",
            "server_properties": {
                "capabilities": {
                    key: True
                    for key in (
                        "publisher_confirms",
                        "exchange_exchange_bindings",
                        "basic.nack",
                        "consumer_cancel_notify",
                        "connection.blocked",
                        "consumer_priorities",
                        "authentication_failure_close",
                        "per_consumer_qos",
                        "direct_reply_to",
                    )
                }
            },
        },
        "tune": {"channel_max": 2047, "frame_max": 131072, "heartbeat": 60},
        "open": {"method": "Connection.OpenOk", "known_hosts": ""},
    },
)
def connection_handshake(url, prefix):
    with raw(url, channel=False) as session:
        start, tune, open_ok = session.opened
        start = jsonable(start)
        # RabbitMQ lists its mechanisms in no fixed order.
        start["mechanisms"] = " ".join(sorted(start["mechanisms"].split()))
        return {"start": start, "tune": jsonable(tune), "open": describe(open_ok)}


def _open_vhost(vhost):
    def run(url, prefix):
        with raw(url, channel=False, vhost=vhost) as session:
            opened = describe(session.opened[2])
            # Nothing follows the close; when the socket goes is a matter of timeouts.
            session.sock.settimeout(0.5)
            then = session.next()
            return {"open": opened, "then": "nothing" if then in ("closed", "timeout") else then}

    return run


for _name, _vhost, _text in (
    ("connection_open_unknown_vhost", "nosuchvhost", "vhost nosuchvhost not found"),
    ("connection_open_empty_vhost", "", "vhost  not found"),
):
    scenario(
        "connection.open",
        "connection.close",
        name=_name,
        expect={"open": close_frame(530, f"NOT_ALLOWED - {_text}", 10, 40)},
    )(_open_vhost(_vhost))


@scenario("connection.open", expect={"error": "ProbableAccessDeniedError"})
def connection_pika_unknown_vhost(url, prefix):
    try:
        connect(with_vhost(url, prefix)).close()
    except Exception as exc:  # noqa: BLE001 - the client's view is the observation
        return error(exc)
    return "connected"


@scenario("connection.start-ok", expect={"args": lambda args: "403" in str(args)})
def auth_wrong_password_pika(url, prefix):
    try:
        connect(with_credentials(url, "guest", "wrong")).close()
    except Exception as exc:  # noqa: BLE001
        return error(exc)
    return "connected"


AUTH_REFUSED = (
    "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. "
    "For details see the broker logfile."
)


@scenario(
    "connection.start-ok", "connection.close", expect={"reply": close_frame(403, AUTH_REFUSED)}
)
def auth_unknown_user_raw(url, prefix):
    with raw(url, channel=False, response=f"\0{prefix}\0guest") as session:
        return {"reply": describe(session.opened)}


@scenario("connection.start-ok", expect={"open": {"method": "Connection.OpenOk"}})
def auth_amqplain(url, prefix):
    table = encode.field_table({"LOGIN": "guest", "PASSWORD": "guest"})[4:].decode("latin-1")
    with raw(url, channel=False, mechanism="AMQPLAIN", response=table) as session:
        return {"open": describe(session.opened[2])}


def _silent_refusal(**handshake):
    def run(url, prefix):
        with raw(url, channel=False, **handshake) as session:
            session.sock.settimeout(15)
            return {"reply": session.next() if session.opened is None else "tuned"}

    return run


scenario(
    "connection.start-ok", name="auth_wrong_password_without_capability", expect={"reply": CLOSED}
)(_silent_refusal(capabilities={}, response="\0guest\0wrong"))
scenario("connection.start-ok", name="auth_unknown_mechanism", expect={"reply": CLOSED})(
    _silent_refusal(mechanism="FOO")
)


@scenario(
    "connection.close", "connection.close-ok", expect={"reply": {"method": "Connection.CloseOk"}}
)
def connection_close_by_client(url, prefix):
    with raw(url) as session:
        reply = session.call(commands.Connection.Close(200, "bye", 0, 0), channel=0)
        return {"reply": reply}


@scenario(
    "channel.open",
    expect={
        "third": close_frame(
            530,
            "NOT_ALLOWED - number of channels opened (2) has reached the negotiated "
            "channel_max (2)",
        )
    },
)
def channel_max_reached(url, prefix):
    with raw(url, channel_max=2) as session:
        second = session.call(commands.Channel.Open(), channel=2)
        return {"second": second, "third": session.call(commands.Channel.Open(), channel=3)}


@scenario(
    "channel.open",
    expect={"reply": close_frame(504, "CHANNEL_ERROR - second 'channel.open' seen", 20, 10)},
)
def channel_open_twice(url, prefix):
    with raw(url) as session:
        return {"reply": session.call(commands.Channel.Open(), channel=1)}


STATE_RUNNING = "CHANNEL_ERROR - unexpected method in connection state running"


@scenario("channel.open", expect={"reply": close_frame(504, STATE_RUNNING, 20, 10)})
def channel_open_on_channel_zero(url, prefix):
    with raw(url) as session:
        return {"reply": session.call(commands.Channel.Open(), channel=0)}


@scenario("queue.declare", expect={"reply": close_frame(504, STATE_RUNNING, 50, 10)})
def queue_declare_on_channel_zero(url, prefix):
    with raw(url) as session:
        return {"reply": session.call(commands.Queue.Declare(queue=prefix), channel=0)}


@scenario("connection.tune-ok", expect={"reply": close_frame(504, STATE_RUNNING, 10, 31)})
def tune_ok_after_open(url, prefix):
    with raw(url) as session:
        return {"reply": session.call(commands.Connection.TuneOk(2047, 131072, 0), channel=0)}


def _framing(send):
    """Send bad frames with ``send(session, prefix)``; observe the broker's answer."""

    def run(url, prefix):
        with raw(url) as session:
            send(session, prefix)
            return {"reply": session.next()}

    return run


NON_METHOD = "UNEXPECTED_FRAME - expected method frame, got non method frame instead"
FRAMING = (
    (
        "heartbeat_on_channel_one",
        lambda s, p: s.send_frame(8, 1, b""),
        close_frame(505, "UNEXPECTED_FRAME - type 8, all octets = <<>>"),
    ),
    (
        "frame_larger_than_frame_max",
        lambda s, p: s.send_frame(3, 1, b"x" * 131073),
        close_frame(
            501, "FRAME_ERROR - type 3, all octets = <<>>: {frame_too_large,131073,131064}"
        ),
    ),
    (
        "content_header_without_method",
        lambda s, p: s.send_frame(2, 1, bytes.fromhex("003c000000000000000000050000")),
        close_frame(505, NON_METHOD),
    ),
    (
        "body_without_header",
        lambda s, p: s.send_frame(3, 1, b"hello"),
        close_frame(505, NON_METHOD),
    ),
    (
        "method_instead_of_content_header",
        lambda s, p: (
            s.send(1, commands.Basic.Publish(exchange="", routing_key=p)),
            s.send(1, commands.Basic.Qos(prefetch_count=1)),
        ),
        close_frame(
            505,
            "UNEXPECTED_FRAME - expected content header for class 60, got non content header "
            "frame instead",
            60,
            40,
        ),
    ),
    (
        "unknown_frame_type",
        lambda s, p: s.send_frame(9, 0, b"abc"),
        close_frame(501, 'FRAME_ERROR - type 9, all octets = <<"abc">>: unknown_frame'),
    ),
    (
        "heartbeat_with_payload",
        lambda s, p: s.send_frame(8, 0, b"ab"),
        close_frame(501, 'FRAME_ERROR - type 8, all octets = <<"ab">>: unknown_frame'),
    ),
    (
        "truncated_method_arguments",
        lambda s, p: s.send_frame(1, 1, bytes.fromhex("0032000a0000")),
        close_frame(501, "FRAME_ERROR - cannot decode <<0,0>>", 50, 10),
    ),
)
for _name, _send, _reply in FRAMING:
    scenario("connection.close", name=_name, expect={"reply": _reply})(_framing(_send))


def _dropped_by_rabbitmq(why: str, our_code: int) -> Divergence:
    """README's deliberate differences: we close with a code where RabbitMQ drops."""
    return Divergence(
        why=why,
        ours={"reply": {"method": "Connection.Close", "reply_code": our_code}},
        rabbitmq={"reply": CLOSED},
    )


@scenario(
    "connection.close",
    divergence=_dropped_by_rabbitmq(
        "README: an unknown class or method id gets 540 with the ids; RabbitMQ 3.10 "
        "drops the socket without a word",
        540,
    ),
)
def unknown_class_id(url, prefix):
    with raw(url) as session:
        session.send_frame(1, 1, bytes.fromhex("0063000a"))
        return {"reply": session.next()}


@scenario(
    "connection.tune-ok",
    divergence=_dropped_by_rabbitmq(
        "README: a tune-ok frame_max below 4096 gets 530 with the limit; RabbitMQ 3.10 "
        "closes the socket silently after 3 s",
        530,
    ),
)
def tune_ok_frame_max_too_small(url, prefix):
    with raw(url, channel=False, frame_max=4095) as session:
        session.sock.settimeout(15)
        return {"reply": describe(session.opened[2]) if session.opened else CLOSED}


@scenario("connection.tune", "basic.get", "basic.get-ok", expect={"frames": [4088, 4088, 1824]})
def frame_max_splits_bodies(url, prefix):
    with raw(url, frame_max=4096) as session:
        session.call(commands.Queue.Declare(queue=prefix, exclusive=True))
        session.publish_split(1, "", prefix, b"b" * 10000, 4000)
        got = session.call(commands.Basic.Get(queue=prefix, no_ack=True))
        frames = [session.next() for _ in range(4)]
        return {"get": got, "header": frames[0], "frames": [len(f["body"]) for f in frames[1:]]}


@scenario("connection.start", expect={"reply": "AMQP\x00\x00\x09\x01", "then": CLOSED})
def protocol_header_of_another_version(url, prefix):
    with socket.create_connection(host_port(url), timeout=5) as sock:
        sock.sendall(b"AMQP\x00\x00\x09\x00")
        reply = sock.recv(8)
        try:
            rest = sock.recv(100)
        except ConnectionResetError:
            rest = b""
        return {"reply": reply.decode("latin-1"), "then": CLOSED if not rest else rest}


@scenario("connection.tune", "connection.tune-ok", expect={"heartbeat": 5, "channel_max": 2047})
def pika_negotiates_tune(url, prefix):
    connection = connect(url, heartbeat=5)
    params = connection._impl.params
    seen = {
        "heartbeat": params.heartbeat,
        "channel_max": params.channel_max,
        "frame_max": params.frame_max,
    }
    connection.close()
    return seen


@scenario("connection.tune-ok", expect={"heartbeat_seen": True})
def server_sends_heartbeats(url, prefix):
    with raw(url, heartbeat_interval=1) as session:
        deadline = time.monotonic() + 5
        session.sock.settimeout(0.5)
        while time.monotonic() < deadline:
            try:
                data = session.sock.recv(64)
            except TimeoutError:
                continue
            if data.startswith(b"\x08\x00\x00\x00\x00\x00\x00\xce"):
                return {"heartbeat_seen": True}
        return {"heartbeat_seen": False}
