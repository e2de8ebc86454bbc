"""Connections and channels as a real client (pika) sees them: the handshake, logins, tune
values, channel open/close, and the errors that close a channel or the connection, with
RabbitMQ's exact reply codes and texts."""

from __future__ import annotations

import pika
import pytest
from pika import spec
from pika.exceptions import (
    ProbableAccessDeniedError,
    ProbableAuthenticationError,
)
from pika_helpers import (
    CAPABILITIES,
    connection,
    connection_error,
    exists,
    new_queue,
    parameters,
    publish,
    pump,
)


def test_plain_login_and_server_capabilities(conn):
    assert conn.is_open
    assert conn._impl.server_capabilities == CAPABILITIES
    assert conn._impl.server_properties["capabilities"] == CAPABILITIES


def test_tune_defaults_are_rabbitmq_values(conn):
    params = conn._impl.params
    assert (params.channel_max, params.frame_max, params.heartbeat) == (2047, 131072, 60)


@pytest.mark.parametrize("heartbeat", [0, 7])
def test_client_heartbeat_wins_negotiation(broker, heartbeat):
    with connection(broker, heartbeat=heartbeat, channel_max=10, frame_max=4096) as conn:
        params = conn._impl.params
        assert (params.channel_max, params.frame_max, params.heartbeat) == (10, 4096, heartbeat)
        conn.channel().queue_declare("", exclusive=True)


def test_many_channels_on_one_connection(conn):
    channels = [conn.channel() for _ in range(200)]
    assert len({c.channel_number for c in channels}) == 200
    queues = [new_queue(c) for c in channels]
    assert len(set(queues)) == 200
    for c in channels:
        c.close()
    assert new_queue(conn.channel())


def test_channel_open_close_cycles(conn):
    numbers = set()
    for _ in range(50):
        channel = conn.channel()
        numbers.add(channel.channel_number)
        new_queue(channel)
        channel.close()
    assert numbers == {1}  # pika reuses the freed number; the broker accepts it again


def test_channel_flow_active_true(ch):
    assert ch.flow(True) is True


@pytest.mark.parametrize(("user", "password"), [("guest", "wrong"), ("nobody", "guest")])
def test_bad_credentials_refused(broker, user, password):
    with pytest.raises(ProbableAuthenticationError) as info:
        pika.BlockingConnection(parameters(broker, user, password))
    assert info.value.args == (
        "ConnectionClosedByBroker: (403) 'ACCESS_REFUSED - Login was refused using "
        "authentication mechanism PLAIN. For details see the broker logfile.'",
    )


def test_unknown_vhost_not_allowed(broker):
    with pytest.raises(ProbableAccessDeniedError) as info:
        pika.BlockingConnection(parameters(broker, virtual_host="nope"))
    expected = "ConnectionClosedByBroker: (530) 'NOT_ALLOWED - vhost nope not found'"
    assert info.value.args == (expected,)


def test_broker_serves_others_after_refusals(broker):
    for kwargs in ({"password": "wrong"}, {"virtual_host": "nope"}):
        with pytest.raises(pika.exceptions.AMQPConnectionError):
            pika.BlockingConnection(parameters(broker, **kwargs))
    with connection(broker) as conn:
        assert new_queue(conn.channel())


def test_flow_inactive_closes_connection(conn):
    expected = (540, "NOT_IMPLEMENTED - active=false", 20, 20)
    assert connection_error(conn, lambda c: c.flow(False)) == expected


def test_method_on_unopened_channel_closes_connection(conn):
    def action(_channel):
        conn._impl._send_method(1000, spec.Queue.Declare(queue=""))

    expected = (504, "CHANNEL_ERROR - expected 'channel.open'", 50, 10)
    assert connection_error(conn, action) == expected


def test_connection_error_releases_everything(broker, conn, name):
    """After a connection error its exclusive queues are gone, its unacked messages back."""
    with connection(broker) as observer:
        shared = observer.channel()
        shared.queue_declare(name)
        publish(shared, name, b"held")

        def action(channel):
            new_queue(channel, f"{name}-exclusive", exclusive=True)
            channel.basic_get(name)
            channel.exchange_declare(name, "foo")

        connection_error(conn, action)
        pump(observer, lambda: not exists(observer, "queue", f"{name}-exclusive"))
        pump(observer, lambda: shared.queue_declare(name, passive=True).method.message_count)
        method, _, body = shared.basic_get(name, auto_ack=True)
        assert (body, method.redelivered) == (b"held", True)
        shared.queue_delete(name)
