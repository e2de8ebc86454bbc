"""The management API side by side with RabbitMQ's (the compat node's rabbitmq_management,
started by .ci/setup-rabbitmq.sh): the same scenario on both, then the same requests; the
status codes, the error bodies and the JSON keys of every object must agree, but for the
keys that describe Erlang's insides (listed below, with why). Definitions travel between
the two APIs both ways."""

from __future__ import annotations

import os
import time
import uuid
from urllib.parse import quote

import httpx
import pika
import pytest
from conftest import start_management_broker

RABBITMQ_API = os.environ.get("XIVO_BUS_COMPAT_MANAGEMENT_URL", "")
RABBITMQ_AMQP = os.environ.get("XIVO_BUS_COMPAT_URL", "")
pytestmark = pytest.mark.skipif(
    not (RABBITMQ_API and RABBITMQ_AMQP),
    reason="XIVO_BUS_COMPAT_MANAGEMENT_URL is not set: no RabbitMQ management API "
    "(.ci/setup-rabbitmq.sh starts one)",
)

# RabbitMQ keys about the Erlang VM and its queue implementation: nothing here to show
ERLANG_ONLY = {
    "backing_queue_status",  # the classic queue's internal state (q1..q4, delta)
    "garbage_collection",  # Erlang process GC settings
    "slave_nodes",
    "synchronised_slave_nodes",
    "socket_opts",  # the Erlang listener's socket options
    "cowboy_opts",  # the options of RabbitMQ's HTTP server
    "ssl_opts",
    # shown by RabbitMQ once a queue or channel has been idle a while; xivo-bus does not
    # track idleness (a clock read for every message)
    "idle_since",
}


def q(name: str) -> str:
    return quote(name, safe="")


def keys(value, prefix: str = "") -> set[str]:
    """The dotted key paths of a JSON value (lists: their first object's)."""
    found: set[str] = set()
    if isinstance(value, list):
        return keys(value[0], prefix + "[].") if value and isinstance(value[0], dict) else found
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ERLANG_ONLY or key == "message_stats" or key == "client_properties":
                continue
            found.add(prefix + key)
            if key not in ("arguments", "cluster_state", "properties", "headers"):
                found |= keys(item, f"{prefix}{key}.")
    return found


def ours_item(value, names: tuple[str, ...]):
    """In a list (or a page of one), the scenario's own object when it is there: others
    on the shared RabbitMQ node may be too new to have their statistics yet (RabbitMQ
    lists those with fewer keys)."""
    items = value.get("items") if isinstance(value, dict) and "items" in value else value
    if isinstance(items, list):
        mine = [item for item in items if isinstance(item, dict) and item.get("name") in names]
        if mine:
            return {**value, "items": mine} if items is not value else mine
    return value


class Side:
    """One broker: its AMQP port, its API, a pika connection making the traffic."""

    def __init__(self, amqp_port: int, base: str):
        self.api = httpx.Client(base_url=base, auth=("guest", "guest"), timeout=15)
        self.amqp = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", amqp_port))

    def close(self) -> None:
        self.api.close()
        if self.amqp.is_open:
            self.amqp.close()


@pytest.fixture(scope="module")
def sides():
    process, base = start_management_broker("--collect-statistics-interval", "500")
    ours = Side(process.port, base)
    theirs = Side(pika.URLParameters(RABBITMQ_AMQP).port, RABBITMQ_API)
    yield ours, theirs
    ours.close()
    theirs.close()
    process.stop()


@pytest.fixture(scope="module")
def scenario(sides):
    """The same objects and traffic on both: a queue with arguments, a fanout exchange
    bound to it with arguments, confirmed publishes, gets, acks, a consumer on an
    exclusive queue. Returns the names, and waits until both show the stats."""
    tag = uuid.uuid4().hex[:8]
    names = {"queue": f"mc-q-{tag}", "exchange": f"mc-x-{tag}"}
    for side in sides:
        channel = side.amqp.channel()
        channel.confirm_delivery()
        channel.queue_declare(
            names["queue"], durable=True, arguments={"x-message-ttl": 60000, "x-max-length": 10}
        )
        channel.exchange_declare(names["exchange"], "fanout", durable=True)
        channel.queue_bind(names["queue"], names["exchange"], "k", arguments={"n": 1})
        for number in range(4):
            channel.basic_publish(names["exchange"], "", b"m%d" % number)
        for _ in range(2):
            method, _, _ = channel.basic_get(names["queue"])
            channel.basic_ack(method.delivery_tag)
        consumer = side.amqp.channel()
        exclusive = consumer.queue_declare("", exclusive=True).method.queue
        consumer.basic_consume(exclusive, lambda *args: None, auto_ack=True)
        consumer.basic_publish("", exclusive, b"hello")
        names.setdefault("exclusive", {})[side] = exclusive
        side.amqp.process_data_events(0.2)
    deadline = time.monotonic() + 60  # RabbitMQ's statistics lag by up to 5 s
    for side in sides:
        path = f"/api/queues/%2F/{q(names['queue'])}"
        while "ack" not in side.api.get(path).json().get("message_stats", {}):
            assert time.monotonic() < deadline, f"no message_stats on {side.api.base_url}"
            side.amqp.process_data_events(0.2)
        # a node just started lists its HTTP contexts a little later
        while not side.api.get("/api/overview").json().get("contexts"):
            assert time.monotonic() < deadline, f"no contexts on {side.api.base_url}"
            side.amqp.process_data_events(0.2)
    yield names
    for side in sides:
        side.api.delete(f"/api/queues/%2F/{q(names['queue'])}")
        side.api.delete(f"/api/exchanges/%2F/{q(names['exchange'])}")


def both(sides, method: str, path: str, **kwargs) -> tuple[httpx.Response, httpx.Response]:
    ours, theirs = sides
    return ours.api.request(method, path, **kwargs), theirs.api.request(method, path, **kwargs)


def own_connection(side: Side) -> str:
    port = side.amqp._impl._transport._sock.getsockname()[1]
    for connection in side.api.get("/api/connections").json():
        if connection["peer_port"] == port:
            return connection["name"]
    raise AssertionError("our connection is not listed")


OBJECT_PATHS = [
    "/api/overview",
    "/api/whoami",
    "/api/queues",
    "/api/queues/%2F/{queue}",
    "/api/queues/%2F/{queue}/bindings",
    "/api/exchanges",
    "/api/exchanges/%2F/{exchange}",
    "/api/exchanges/%2F/amq.default",
    "/api/exchanges/%2F/{exchange}/bindings/source",
    "/api/bindings/%2F",
    "/api/bindings/%2F/e/{exchange}/q/{queue}",
    "/api/consumers/%2F",
    "/api/vhosts/%2F",
    "/api/users/guest",
    "/api/permissions/%2F/guest",
    "/api/aliveness-test/%2F",
    "/api/health/checks/alarms",
    "/api/health/checks/virtual-hosts",
    "/api/queues?page=1&page_size=2&sort=name&name={queue}",
]


@pytest.mark.parametrize("template", OBJECT_PATHS)
def test_same_keys_and_status(sides, scenario, template):
    path = template.format(queue=q(scenario["queue"]), exchange=q(scenario["exchange"]))
    ours, theirs = both(sides, "GET", path)
    assert ours.status_code == theirs.status_code == 200
    names = (scenario["queue"], scenario["exchange"])
    ours_keys, their_keys = (
        keys(ours_item(ours.json(), names)),
        keys(ours_item(theirs.json(), names)),
    )
    assert their_keys - ours_keys == set(), "keys RabbitMQ has and we lack"
    assert ours_keys - their_keys == set(), "keys we have and RabbitMQ lacks"


@pytest.mark.parametrize(
    "path", ["/api/queues/%2F/{queue}", "/api/exchanges/%2F/{exchange}", "/api/overview"]
)
def test_same_message_stats(sides, scenario, path):
    path = path.format(queue=q(scenario["queue"]), exchange=q(scenario["exchange"]))
    ours, theirs = both(sides, "GET", path)
    ours_stats = set(ours.json().get("message_stats", {}))
    their_stats = set(theirs.json().get("message_stats", {}))
    if path.endswith("overview"):
        # RabbitMQ counts its own disk traffic; both show the messages' counts
        their_stats -= {"disk_reads", "disk_reads_details", "disk_writes", "disk_writes_details"}
        ours_stats -= {"disk_reads", "disk_reads_details", "disk_writes", "disk_writes_details"}
    assert ours_stats == their_stats


def test_connections_and_channels_alike(sides, scenario):
    for kind in ("connections", "channels"):
        names = [own_connection(side) for side in sides]
        suffix = "" if kind == "connections" else " (1)"
        found = [
            side.api.get(f"/api/{kind}/{q(name + suffix)}")
            for side, name in zip(sides, names, strict=True)
        ]
        assert [response.status_code for response in found] == [200, 200]
        ours_keys, their_keys = keys(found[0].json()), keys(found[1].json())
        assert ours_keys == their_keys, kind


ERRORS = [
    ("GET", "/api/queues/%2F/no-such-queue", None),
    ("GET", "/api/queues/no-such-vhost", None),
    ("GET", "/api/exchanges/%2F/no-such-x", None),
    ("GET", "/api/connections/no-such-connection", None),
    ("GET", "/api/nope", None),
    ("PUT", "/api/queues/no-such-vhost/x", {"durable": True}),
    ("PUT", "/api/exchanges/%2F/{exchange}", {"type": "direct"}),
    ("PUT", "/api/queues/%2F/{queue}", {"durable": False}),
    ("PUT", "/api/exchanges/%2F/amq.mine", {"type": "direct"}),
    ("PUT", "/api/exchanges/%2F/bad-type-x", {"type": "nosuchtype"}),
    ("POST", "/api/exchanges/%2F/amq.default/publish", {"routing_key": "x"}),
    ("POST", "/api/bindings/%2F/e/{exchange}/q/no-such-queue", {"routing_key": "r"}),
    ("DELETE", "/api/queues/%2F/no-such-queue", None),
    ("DELETE", "/api/vhosts/no-such-vhost", None),
    ("PUT", "/api/permissions/no-such-vhost/guest", {"configure": "", "write": "", "read": ""}),
    ("GET", "/api/queues?page=99&page_size=2", None),
    ("PATCH", "/api/queues", None),
]


@pytest.mark.parametrize(("method", "template", "body"), ERRORS)
def test_same_errors(sides, scenario, method, template, body):
    path = template.format(queue=q(scenario["queue"]), exchange=q(scenario["exchange"]))
    ours, theirs = both(sides, method, path, json=body)
    assert ours.status_code == theirs.status_code
    if theirs.content:
        their_body, our_body = theirs.json(), ours.json()
        if "page_out_of_range" == their_body.get("error"):
            their_body.pop("reason"), our_body.pop("reason")  # the lengths differ
        assert our_body == their_body
    else:
        assert ours.content == b""
    assert ours.headers.get("allow") == theirs.headers.get("allow")


def test_authentication_alike(sides):
    for auth, status in ((None, 401), (("guest", "wrong"), 401)):
        responses = [
            httpx.get(str(side.api.base_url.join("/api/overview")), auth=auth) for side in sides
        ]
        assert [r.status_code for r in responses] == [status, status]
        assert responses[0].content == responses[1].content
        assert responses[0].headers["www-authenticate"] == responses[1].headers["www-authenticate"]


def test_definitions_travel_both_ways(sides):
    """What our API exports, RabbitMQ's API imports, and the reverse."""
    ours, theirs = sides
    tag = uuid.uuid4().hex[:8]
    for source, target, name in (
        (ours, theirs, f"to-rabbitmq-{tag}"),
        (theirs, ours, f"to-us-{tag}"),
    ):
        source.api.put(
            f"/api/queues/%2F/{q(name)}", json={"durable": True, "arguments": {"x-max-length": 3}}
        )
        source.api.put(f"/api/exchanges/%2F/{q(name)}", json={"type": "topic"})
        source.api.post(f"/api/bindings/%2F/e/{q(name)}/q/{q(name)}", json={"routing_key": "a.#"})
        exported = source.api.get("/api/definitions/%2F").json()
        document = {
            key: [
                entry for entry in exported[key] if name in (entry.get("name"), entry.get("source"))
            ]
            for key in ("queues", "exchanges", "bindings")
        }
        loaded = target.api.post("/api/definitions/%2F", json=document)
        assert loaded.status_code == 204, loaded.text
        queue = target.api.get(f"/api/queues/%2F/{q(name)}").json()
        assert queue["durable"] is True and queue["arguments"] == {"x-max-length": 3}
        assert target.api.get(f"/api/exchanges/%2F/{q(name)}").json()["type"] == "topic"
        bound = target.api.get(f"/api/bindings/%2F/e/{q(name)}/q/{q(name)}").json()
        assert [b["routing_key"] for b in bound] == ["a.#"]
        for side in sides:
            side.api.delete(f"/api/queues/%2F/{q(name)}")
            side.api.delete(f"/api/exchanges/%2F/{q(name)}")
