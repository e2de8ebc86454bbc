"""pika's asynchronous SelectConnection against the broker: a whole callback-driven
session, and errors as the callbacks see them."""

from __future__ import annotations

import pika
from pika import spec
from pika.exceptions import (
    ChannelClosedByBroker,
    ConnectionClosedByBroker,
    ConnectionClosedByClient,
    ProbableAuthenticationError,
)
from pika_helpers import parameters


def run(broker, on_open, **params) -> dict:
    """Open a SelectConnection and run its ioloop: ``on_open(connection, result)`` starts
    the scenario, which ends when the connection closes (or fails to open). Returns
    ``result``, holding the close reason under "closed" (or "open_error")."""
    result: dict = {}

    def stop(key, value):
        result[key] = value
        connection.ioloop.stop()

    connection = pika.SelectConnection(
        parameters(broker, **params),
        on_open_callback=lambda conn: on_open(conn, result),
        on_open_error_callback=lambda _conn, error: stop("open_error", error),
        on_close_callback=lambda _conn, reason: stop("closed", reason),
    )
    connection.ioloop.call_later(10, lambda: stop("gave_up", True))  # never hang
    connection.ioloop.start()
    assert "gave_up" not in result
    return result


class XivoCtiSession:
    """Declare, bind to xivo-cti, consume, publish with confirms, receive, ack, close:
    each callback starts the next step."""

    def __init__(self, routing_key: str, properties: pika.BasicProperties):
        self.routing_key = routing_key
        self.properties = properties
        self.steps: list[str] = []
        self.result: dict = {}

    def __call__(self, conn, result) -> None:
        self.conn, self.result = conn, result
        conn.channel(on_open_callback=self.on_channel)

    def on_channel(self, channel) -> None:
        self.steps.append("channel")
        self.channel = channel
        channel.queue_declare("", exclusive=True, callback=self.on_declared)

    def on_declared(self, frame) -> None:
        self.steps.append("declared")
        self.queue = frame.method.queue
        self.channel.queue_bind(self.queue, "xivo-cti", self.routing_key, callback=self.on_bound)

    def on_bound(self, _frame) -> None:
        self.steps.append("bound")
        self.channel.basic_consume(self.queue, self.on_message, callback=self.on_consuming)

    def on_consuming(self, frame) -> None:
        self.steps.append("consuming")
        self.tag = frame.method.consumer_tag
        self.channel.confirm_delivery(self.on_confirm, callback=self.on_confirming)

    def on_confirming(self, _frame) -> None:
        self.steps.append("confirming")
        self.channel.basic_publish("xivo-cti", self.routing_key, b'{"hello": 1}', self.properties)

    def on_confirm(self, frame) -> None:
        self.result["confirm"] = frame.method
        self.finish()

    def on_message(self, _channel, method, properties, body) -> None:
        self.result["delivery"] = (method, properties, body)
        self.channel.basic_ack(method.delivery_tag)
        self.finish()

    def finish(self) -> None:
        if "confirm" in self.result and "delivery" in self.result:
            self.steps.append("done")
            self.channel.basic_cancel(self.tag, callback=lambda _frame: self.conn.close())


def test_full_session_on_xivo_cti(broker, name):
    properties = pika.BasicProperties(content_type="application/json", message_id=name)
    session = XivoCtiSession(name, properties)
    result = run(broker, session)
    assert session.steps == ["channel", "declared", "bound", "consuming", "confirming", "done"]
    confirm = result["confirm"]
    assert isinstance(confirm, spec.Basic.Ack)
    assert (confirm.delivery_tag, confirm.multiple) == (1, False)
    method, received, body = result["delivery"]
    assert (method.exchange, method.routing_key, method.delivery_tag) == ("xivo-cti", name, 1)
    assert (method.consumer_tag, method.redelivered) == (session.tag, False)
    expected = ("application/json", name, b'{"hello": 1}')
    assert (received.content_type, received.message_id, body) == expected
    closed = result["closed"]
    assert isinstance(closed, ConnectionClosedByClient)
    assert (closed.reply_code, closed.reply_text) == (200, "Normal shutdown")


def test_channel_error_callback_and_recovery(broker, name):
    """A channel error reaches the channel's close callback; a new channel on the same
    connection then works."""

    def on_open(conn, result):
        def on_channel(channel):
            channel.add_on_close_callback(on_channel_closed)
            channel.exchange_declare(name, passive=True)

        def on_channel_closed(_channel, reason):
            result["channel_closed"] = reason
            conn.channel(on_open_callback=on_second_channel)

        def on_second_channel(channel):
            channel.queue_declare("", exclusive=True, callback=on_declared)

        def on_declared(frame):
            result["declared"] = frame.method.queue
            conn.close()

        conn.channel(on_open_callback=on_channel)

    result = run(broker, on_open)
    reason = result["channel_closed"]
    assert isinstance(reason, ChannelClosedByBroker)
    expected = (404, f"NOT_FOUND - no exchange '{name}' in vhost '/'")
    assert (reason.reply_code, reason.reply_text) == expected
    assert result["declared"].startswith("amq.gen-")
    assert isinstance(result["closed"], ConnectionClosedByClient)


def test_connection_error_callback(broker, name):
    def on_open(conn, _result):
        conn.channel(on_open_callback=lambda ch: ch.exchange_declare(name, "foo"))

    closed = run(broker, on_open)["closed"]
    assert isinstance(closed, ConnectionClosedByBroker)
    expected = (503, "COMMAND_INVALID - invalid exchange type 'foo'")
    assert (closed.reply_code, closed.reply_text) == expected


def test_open_error_callback_on_bad_password(broker):
    result = run(broker, lambda conn, _result: conn.close(), password="wrong")
    error = result["open_error"]
    assert isinstance(error, ProbableAuthenticationError)
    assert "(403) 'ACCESS_REFUSED - Login was refused" in error.args[0]


def test_publish_many_with_confirms_and_consume_them(broker):
    """A burst of 200 confirmed publishes: every one confirmed and delivered in order."""
    count = 200

    def on_open(conn, result):
        confirmed: set[int] = set()
        bodies: list[bytes] = []

        def on_channel(channel):
            channel.queue_declare("", exclusive=True, callback=lambda f: on_declared(channel, f))

        def on_declared(channel, frame):
            queue = frame.method.queue
            channel.basic_consume(queue, on_message, auto_ack=True)
            channel.confirm_delivery(ack_nack_callback=on_confirm, callback=lambda _f: burst())

            def burst():
                for i in range(count):
                    channel.basic_publish("", queue, b"%d" % i)

        def on_confirm(frame):
            ack = frame.method
            assert isinstance(ack, spec.Basic.Ack)
            first = 1 if ack.multiple else ack.delivery_tag
            confirmed.update(range(first, ack.delivery_tag + 1))
            finish()

        def on_message(_channel, _method, _properties, body):
            bodies.append(body)
            finish()

        def finish():
            if len(bodies) == count and confirmed == set(range(1, count + 1)):
                result["bodies"] = bodies
                conn.close()

        conn.channel(on_open_callback=on_channel)

    result = run(broker, on_open)
    assert result["bodies"] == [b"%d" % i for i in range(count)]
