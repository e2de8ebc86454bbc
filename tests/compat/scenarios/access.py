"""Access control: users, vhosts, permissions and topic permissions, set up through each
broker's admin tool (``rabbitmqctl`` / ``xivo-bus ctl``) and then tried by a client with
only what it was given. Every refusal must be RabbitMQ's, code and text."""

from __future__ import annotations

import contextlib
import time
import urllib.parse

import pika

from ..harness import connect, error, outcome, scenario

PASSWORD = "pw-1"


def url_for(url: str, user: str, vhost: str = "/") -> str:
    parts = urllib.parse.urlsplit(url)
    netloc = f"{urllib.parse.quote(user)}:{PASSWORD}@{parts.hostname}:{parts.port}"
    return urllib.parse.urlunsplit(("amqp", netloc, "/" + urllib.parse.quote(vhost, ""), "", ""))


@contextlib.contextmanager
def user(admin, name: str, vhost: str = "/", permissions=None, topic=None):
    """A user for the length of a block, with ``permissions`` (configure, write, read) on
    ``vhost`` and ``topic`` permissions {exchange: (write, read)}."""
    admin("add_user", name, PASSWORD)
    try:
        if permissions is not None:
            admin("set_permissions", "-p", vhost, name, *permissions)
        for exchange, (write, read) in (topic or {}).items():
            admin("set_topic_permissions", "-p", vhost, name, exchange, write, read)
        yield name
    finally:
        admin("delete_user", name)


def attempts(url: str, steps: dict) -> dict:
    """Each step on a channel of its own: {label: ok or the broker's close}."""
    seen = {}
    connection = connect(url)
    try:
        for label, step in steps.items():
            if connection.is_closed:
                connection = connect(url)
            channel = connection.channel()
            try:
                step(channel)
                channel.basic_qos(prefetch_count=0)  # a round trip: async refusals surface
                seen[label] = "ok"
                channel.close()
            except (pika.exceptions.AMQPError, OSError) as exc:
                seen[label] = error(exc)
    finally:
        with contextlib.suppress(Exception):
            connection.close()
    return seen


def tidy(url: str, queues=(), exchanges=()) -> None:
    connection = connect(url)
    channel = connection.channel()
    for name in queues:
        channel.queue_delete(name)
    for name in exchanges:
        channel.exchange_delete(name)
    connection.close()


def _refused_open(url: str):
    try:
        connect(url).close()
        return "ok"
    except pika.exceptions.ProbableAccessDeniedError as exc:
        return str(exc.args[0]) if exc.args else repr(exc)
    except (pika.exceptions.AMQPError, OSError) as exc:
        return error(exc)


@scenario("connection.open", "ext:access-vhost", admin=True)
def access_vhost_without_permissions(url, prefix, admin):
    with user(admin, f"{prefix}-u") as name:
        no_permissions = _refused_open(url_for(url, name))
    with user(admin, f"{prefix}-v", permissions=("", "", "")) as name:
        empty_permissions = outcome(lambda: connect(url_for(url, name)).close())
    return {"none": no_permissions, "empty patterns": empty_permissions}


@scenario("queue.declare", "exchange.declare", "queue.delete", "exchange.delete", admin=True)
def access_configure(url, prefix, admin):
    mine = f"{prefix}-a"
    permissions = (f"^{mine}", ".*", ".*")
    with user(admin, f"{prefix}-u", permissions=permissions) as name:
        seen = attempts(
            url_for(url, name),
            {
                "declare other queue": lambda ch: ch.queue_declare(f"{prefix}-b"),
                "declare own queue": lambda ch: ch.queue_declare(f"{mine}-q"),
                "passive other queue": lambda ch: ch.queue_declare(f"{prefix}-b", passive=True),
                "server-named queue": lambda ch: ch.queue_declare(""),
                "declare other exchange": lambda ch: ch.exchange_declare(f"{prefix}-bx"),
                "declare own exchange": lambda ch: ch.exchange_declare(f"{mine}-x"),
                "passive amq.direct": lambda ch: ch.exchange_declare("amq.direct", passive=True),
                "delete missing other queue": lambda ch: ch.queue_delete(f"{prefix}-b"),
                "delete own queue": lambda ch: ch.queue_delete(f"{mine}-q"),
                "delete own exchange": lambda ch: ch.exchange_delete(f"{mine}-x"),
            },
        )
    # the server-named queue's name differs each run
    refused = seen["server-named queue"]["channel_closed"]
    refused[1] = refused[1].split("'")[0] + "'amq.gen-…'" + refused[1].split("'", 2)[2]
    return seen


@scenario("basic.publish", "basic.consume", "basic.get", "queue.purge", admin=True)
def access_write_and_read(url, prefix, admin):
    queue = f"{prefix}-q"
    connection = connect(url)
    connection.channel().queue_declare(queue)
    connection.close()
    with user(admin, f"{prefix}-u", permissions=(".*", "^amq\\.default$", "^nothing$")) as name:
        seen = attempts(
            url_for(url, name),
            {
                "publish default exchange": lambda ch: ch.basic_publish("", queue, b"m"),
                "publish amq.direct": lambda ch: ch.basic_publish("amq.direct", "k", b"m"),
                "publish missing exchange": lambda ch: ch.basic_publish(f"{prefix}-x", "k", b"m"),
                "consume": lambda ch: ch.basic_consume(queue, lambda *a: None),
                "get": lambda ch: ch.basic_get(queue),
                "purge": lambda ch: ch.queue_purge(queue),
            },
        )
    tidy(url, queues=[queue])
    return seen


@scenario("queue.bind", "queue.unbind", "exchange.bind", "exchange.unbind", admin=True)
def access_bindings(url, prefix, admin):
    queue, exchange = f"{prefix}-a-q", f"{prefix}-a-x"
    connection = connect(url)
    channel = connection.channel()
    channel.queue_declare(queue)
    channel.exchange_declare(exchange, "direct")
    connection.close()
    permissions = (".*", f"^{prefix}-a", f"^{prefix}-a")
    with user(admin, f"{prefix}-u", permissions=permissions) as name:
        seen = attempts(
            url_for(url, name),
            {
                "bind own queue to own exchange": lambda ch: ch.queue_bind(queue, exchange, "k"),
                "bind own queue to amq.direct": lambda ch: ch.queue_bind(queue, "amq.direct", "k"),
                "bind missing queue": lambda ch: ch.queue_bind(f"{prefix}-b", exchange, "k"),
                "unbind from amq.direct": lambda ch: ch.queue_unbind(queue, "amq.direct", "k"),
                "exchange to own exchange": lambda ch: ch.exchange_bind(
                    exchange, "amq.direct", "k"
                ),
                "own exchange to amq.fanout": lambda ch: ch.exchange_bind(
                    "amq.fanout", exchange, "k"
                ),
            },
        )
    tidy(url, queues=[queue], exchanges=[exchange])
    return seen


@scenario("ext:alternate-exchange", "ext:dead-lettering", admin=True)
def access_alternate_and_dead_letter_exchanges(url, prefix, admin):
    mine = f"{prefix}-a"
    with user(admin, f"{prefix}-u", permissions=(f"^{mine}", f"^{mine}", ".*")) as name:
        seen = attempts(
            url_for(url, name),
            {
                "alternate not writable": lambda ch: ch.exchange_declare(
                    f"{mine}-x1", arguments={"alternate-exchange": f"{prefix}-b"}
                ),
                "alternate writable": lambda ch: ch.exchange_declare(
                    f"{mine}-x2", arguments={"alternate-exchange": f"{mine}-ae"}
                ),
                "dead-letter not writable": lambda ch: ch.queue_declare(
                    f"{mine}-q1", arguments={"x-dead-letter-exchange": "amq.direct"}
                ),
                "dead-letter writable": lambda ch: ch.queue_declare(
                    f"{mine}-q2", arguments={"x-dead-letter-exchange": f"{mine}-dlx"}
                ),
            },
        )
    tidy(url, queues=[f"{mine}-q2"], exchanges=[f"{mine}-x2"])
    return seen


@scenario("ext:topic-permissions", admin=True)
def access_topic_permissions(url, prefix, admin):
    queue = f"{prefix}-q"
    connection = connect(url)
    connection.channel().queue_declare(queue)
    connection.close()
    topic = {"amq.topic": ("^calls\\.{username}", "^calls\\.")}
    with user(admin, f"{prefix}-u", permissions=(".*", ".*", ".*"), topic=topic) as name:
        seen = attempts(
            url_for(url, name),
            {
                "publish own key": lambda ch: ch.basic_publish("amq.topic", f"calls.{name}", b""),
                "publish other key": lambda ch: ch.basic_publish("amq.topic", "calls.x", b""),
                "publish other topic exchange": lambda ch: ch.basic_publish(
                    "amq.rabbitmq.trace", "x", b""
                ),
                "bind readable key": lambda ch: ch.queue_bind(queue, "amq.topic", "calls.#"),
                "bind other key": lambda ch: ch.queue_bind(queue, "amq.topic", "sms.#"),
                "bind direct ignores topic": lambda ch: ch.queue_bind(queue, "amq.direct", "sms"),
            },
        )
    tidy(url, queues=[queue])
    return seen


@scenario("ext:access-cache", admin=True, timeout=90)
def access_change_applies_as_rabbitmq(url, prefix, admin):
    """A new channel sees a permission change at once; a channel that used a resource
    sees it once it has been idle (RabbitMQ forgets when its channel hibernates, within
    10 s: before that it depends on timing, so it is not compared); a deleted user's
    connections are closed."""
    queue = f"{prefix}-q"
    connection = connect(url)
    connection.channel().queue_declare(queue)
    connection.close()
    seen = {}
    with user(admin, f"{prefix}-u", permissions=(".*", ".*", ".*")) as name:
        client = connect(url_for(url, name))
        channel = client.channel()
        channel.basic_get(queue)
        admin("clear_permissions", "-p", "/", name)
        seen["new channel"] = outcome(lambda: client.channel().basic_get(queue))
        time.sleep(12)
        seen["same channel, idle"] = outcome(lambda: channel.basic_get(queue))
        admin("set_permissions", "-p", "/", name, ".*", ".*", ".*")
    try:
        for _ in range(200):  # up to 20 s
            client.process_data_events(time_limit=0.1)
        seen["after delete_user"] = "still open"
    except pika.exceptions.AMQPError as exc:
        seen["after delete_user"] = error(exc)
    tidy(url, queues=[queue])
    return seen


@scenario("connection.open", "ext:vhosts", admin=True, timeout=60)
def vhosts_are_separate_and_deleting_one_closes_its_connections(url, prefix, admin):
    vhost = f"{prefix}-vh"
    admin("add_vhost", vhost)
    seen = {}
    try:
        with user(admin, f"{prefix}-u", vhost=vhost, permissions=(".*", ".*", ".*")) as name:
            inside = connect(url_for(url, name, vhost))
            channel = inside.channel()
            channel.queue_declare(f"{prefix}-q")
            seen["exchanges there"] = {
                exchange: outcome(lambda e=exchange: channel.exchange_declare(e, passive=True))
                for exchange in ("amq.direct", "amq.topic", "xivo-cti")
            }
            seen["open / without permissions"] = _refused_open(url_for(url, name))
            outside = connect(url).channel()
            seen["queue seen from /"] = outcome(
                lambda: outside.queue_declare(f"{prefix}-q", passive=True)
            )
            admin("delete_vhost", vhost)
            try:
                for _ in range(200):  # up to 20 s
                    inside.process_data_events(time_limit=0.1)
                seen["after delete_vhost"] = "still open"
            except pika.exceptions.AMQPError as exc:
                seen["after delete_vhost"] = closed = error(exc)
                # RabbitMQ says "is down" instead when its vhost supervisor stops before the
                # deletion reaches the connection (a race of its own); either is the close
                text = closed.get("connection_closed", [0, ""])
                if text[1].endswith(f"vhost '{vhost}' is down"):
                    text[1] = text[1].removesuffix("is down") + "is deleted"
            seen["open deleted vhost"] = _refused_open(url_for(url, name, vhost))
    finally:
        with contextlib.suppress(RuntimeError):
            admin("delete_vhost", vhost)
    return seen


@scenario("ext:limits", admin=True)
def vhost_and_user_limits(url, prefix, admin):
    """max-connections and max-queues of a vhost, max-connections and max-channels of a
    user, as set with set_vhost_limits / set_user_limits."""
    vhost = f"{prefix}-lim"
    admin("add_vhost", vhost)
    seen: dict = {}
    try:
        with user(admin, f"{prefix}-u", vhost=vhost, permissions=(".*", ".*", ".*")) as name:
            admin("set_vhost_limits", "-p", vhost, '{"max-connections": 2, "max-queues": 1}')
            admin("set_user_limits", name, '{"max-channels": 2}')
            where = url_for(url, name, vhost)
            first, second = connect(where), connect(where)
            seen["third connection"] = _refused_open(where)
            channel = first.channel()
            seen["first queue"] = outcome(lambda: channel.queue_declare(f"{prefix}-q1") and None)
            seen["second queue"] = outcome(lambda: channel.queue_declare(f"{prefix}-q2"))
            second.channel()
            seen["third channel"] = outcome(lambda: second.channel() and None)
            admin("clear_vhost_limits", "-p", vhost)
            admin("set_user_limits", name, '{"max-connections": 1}')
            seen["over the user's limit"] = _refused_open(where)
            for connection in (first, second):
                with contextlib.suppress(Exception):
                    connection.close()
    finally:
        admin("delete_vhost", vhost)
    return seen
