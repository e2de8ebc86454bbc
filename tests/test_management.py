"""The management HTTP API: RabbitMQ's paths, methods, JSON fields, status codes and error
bodies (as RabbitMQ 3.10.8 answers them, see test_management_compat.py for the side by
side comparison), over real HTTP against ``xivo-bus serve --management``, with pika
making the traffic."""

from __future__ import annotations

import json
import threading
import time
from urllib.parse import quote

import httpx
import pika
import pytest
from amqp_raw import RawClient
from conftest import start_management_broker
from pamqp import body as pamqp_body
from pamqp import commands, frame, header

INTERVAL = "200"  # ms between rate samples, so rates show up quickly


@pytest.fixture(scope="module")
def managed():
    process, base = start_management_broker("--collect-statistics-interval", INTERVAL)
    yield process, base
    process.stop()


@pytest.fixture
def api(managed):
    _, base = managed
    with httpx.Client(base_url=base, auth=("guest", "guest"), timeout=10) as client:
        yield client


@pytest.fixture
def amqp(managed):
    process, _ = managed
    connection = pika.BlockingConnection(pika.ConnectionParameters(process.host, process.port))
    yield connection
    if connection.is_open:
        connection.close()


def poll(check, timeout: float = 20.0):
    """``check()`` until it returns something true (its value), or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def q(name: str) -> str:
    return quote(name, safe="")


# -- overview, identity, node -------------------------------------------------------


def test_overview_counts_objects_and_rates(api, amqp, plain_name):
    channel = amqp.channel()
    name = f"{plain_name}-rates"
    channel.queue_declare(name)
    before = api.get("/api/overview").json()
    assert before["management_version"] == "3.10.8"
    assert before["object_totals"]["queues"] >= 1
    assert {"connections", "channels", "consumers", "exchanges", "queues"} == set(
        before["object_totals"]
    )
    for _ in range(50):
        channel.basic_publish("", name, b"x")
    amqp.process_data_events(0)

    def publish_seen():
        overview = api.get("/api/overview").json()
        stats = overview.get("message_stats", {})
        return overview if stats.get("publish", 0) >= 50 else None

    overview = poll(publish_seen)
    assert overview["message_stats"]["publish_details"]["rate"] >= 0
    assert overview["queue_totals"]["messages_ready"] >= 50

    def rate_seen():
        for _ in range(20):
            channel.basic_publish("", name, b"x")
        amqp.process_data_events(0)
        rate = api.get("/api/overview").json()["message_stats"]["publish_details"]["rate"]
        return rate > 0

    poll(rate_seen)
    samples = api.get("/api/overview?msg_rates_age=60&msg_rates_incr=1").json()
    details = samples["message_stats"]["publish_details"]
    assert details["samples"] and {"sample", "timestamp"} == set(details["samples"][0])
    channel.queue_delete(name)


def test_whoami_nodes_cluster_name(api):
    assert api.get("/api/whoami").json() == {"name": "guest", "tags": ["administrator"]}
    nodes = api.get("/api/nodes").json()
    assert len(nodes) == 1 and nodes[0]["running"] is True and nodes[0]["mem_used"] > 0
    node = api.get(f"/api/nodes/{q(nodes[0]['name'])}")
    assert node.status_code == 200 and node.json()["name"] == nodes[0]["name"]
    assert api.get("/api/nodes/nobody@nowhere").status_code == 404
    assert api.get("/api/cluster-name").json()["name"] == nodes[0]["name"]


# -- queues -------------------------------------------------------------------------


def test_queue_declare_get_and_refusals(api, plain_name):
    name = f"{plain_name}-http-q"
    path = f"/api/queues/%2F/{q(name)}"
    created = api.put(path, json={"durable": True, "arguments": {"x-max-length": 10}})
    assert created.status_code == 201 and created.content == b""
    assert api.put(path, json={"durable": True, "arguments": {"x-max-length": 10}}).status_code
    again = api.put(path, json={"durable": True, "arguments": {"x-max-length": 10}})
    assert again.status_code == 204
    refused = api.put(path, json={"durable": False, "arguments": {"x-max-length": 10}})
    assert refused.status_code == 400
    assert refused.json() == {
        "error": "bad_request",
        "reason": f"inequivalent arg 'durable' for queue '{name}' in vhost '/': "
        "received 'false' but current is 'true'",
    }
    info = api.get(path).json()
    assert info["name"] == name and info["vhost"] == "/" and info["durable"] is True
    assert info["arguments"] == {"x-max-length": 10}
    assert info["messages"] == 0 and info["consumer_details"] == []
    missing = api.get("/api/queues/%2F/no-such-queue")
    assert missing.status_code == 404
    assert missing.json() == {"error": "Object Not Found", "reason": "Not Found"}
    assert api.put("/api/queues/no-vhost/x", json={}).json() == {
        "error": "not_found",
        "reason": "vhost_not_found",
    }
    bad_json = api.put(path, content=b"{nope", headers={"content-type": "text/plain"})
    assert bad_json.status_code == 400 and bad_json.json()["reason"] == "not_json"
    assert api.delete(path).status_code == 204
    assert api.delete(path).status_code == 404


def test_publish_get_purge_delete(api, plain_name):
    name = f"{plain_name}-http-get"
    path = f"/api/queues/%2F/{q(name)}"
    api.put(path, json={"durable": False})
    for body in ("one", "two", "three"):
        published = api.post(
            "/api/exchanges/%2F/amq.default/publish",
            json={
                "properties": {"delivery_mode": 2, "headers": {"h": "v"}},
                "routing_key": name,
                "payload": body,
                "payload_encoding": "string",
            },
        )
        assert published.json() == {"routed": True}
    unrouted = api.post(
        "/api/exchanges/%2F/amq.default/publish",
        json={
            "properties": {},
            "routing_key": "nowhere",
            "payload": "",
            "payload_encoding": "string",
        },
    )
    assert unrouted.json() == {"routed": False}
    missing = api.post("/api/exchanges/%2F/amq.default/publish", json={"routing_key": name})
    assert missing.json()["reason"] == (
        "[{key_missing,properties},\n {key_missing,payload},\n {key_missing,payload_encoding}]"
    )
    peek = {"count": 2, "ackmode": "ack_requeue_true", "encoding": "auto", "truncate": 50000}
    got = api.post(f"{path}/get", json=peek).json()
    assert [m["payload"] for m in got] == ["one", "two"]
    assert got[0]["properties"] == {"delivery_mode": 2, "headers": {"h": "v"}}
    assert got[0]["redelivered"] is False and got[0]["payload_encoding"] == "string"
    again = api.post(f"{path}/get", json=peek).json()
    assert again[0]["redelivered"] is True  # requeued by the first get
    taken = api.post(
        f"{path}/get", json={"count": "1", "ackmode": "ack_requeue_false", "encoding": "base64"}
    ).json()
    assert taken[0]["payload_encoding"] == "base64" and taken[0]["payload"] == "b25l"
    assert api.get(path).json()["messages"] == 2
    not_empty = api.delete(f"{path}?if-empty=true")
    assert not_empty.status_code == 400
    assert not_empty.json()["reason"] == f"queue '{name}' in vhost '/' not empty"
    assert api.delete(f"{path}/contents").status_code == 204
    assert api.post(f"{path}/get", json=peek).json() == []
    assert api.delete(path).status_code == 204
    gone = api.post(f"{path}/get", json=peek)
    assert gone.status_code == 404
    assert gone.json()["reason"] == f"NOT_FOUND - no queue '{name}' in vhost '/'"


def test_messages_published_over_http_reach_amqp_consumers(api, amqp, plain_name):
    name = f"{plain_name}-http-to-amqp"
    channel = amqp.channel()
    channel.queue_declare(name)
    api.post(
        "/api/exchanges/%2F/amq.default/publish",
        json={
            "properties": {"content_type": "text/plain", "priority": 3},
            "routing_key": name,
            "payload": "aGk=",
            "payload_encoding": "base64",
        },
    )

    def got():
        method, properties, body = channel.basic_get(name, auto_ack=True)
        return (properties, body) if method is not None else None

    properties, body = poll(got)
    assert body == b"hi" and properties.content_type == "text/plain" and properties.priority == 3
    channel.queue_delete(name)


def test_the_type_property_both_ways(api, amqp, plain_name):
    """AMQP's ``type`` (pamqp's message_type): published through the API, shown by get,
    and seen by an AMQP consumer."""
    name = f"{plain_name}-typed"
    api.put(f"/api/queues/%2F/{q(name)}", json={})
    published = api.post(
        "/api/exchanges/%2F/amq.default/publish",
        json={
            "properties": {"type": "order"},
            "routing_key": name,
            "payload": "x",
            "payload_encoding": "string",
        },
    )
    assert published.json() == {"routed": True}
    peek = {"count": 1, "ackmode": "ack_requeue_true", "encoding": "auto"}
    assert api.post(f"/api/queues/%2F/{q(name)}/get", json=peek).json()[0]["properties"] == {
        "type": "order"
    }
    method, properties, _ = amqp.channel().basic_get(name, auto_ack=True)
    assert method is not None and properties.type == "order"
    api.delete(f"/api/queues/%2F/{q(name)}")


# -- exchanges and bindings ---------------------------------------------------------


def test_exchanges_and_bindings(api, plain_name):
    exchange, queue = f"{plain_name}-http-x", f"{plain_name}-http-bq"
    xpath = f"/api/exchanges/%2F/{q(exchange)}"
    assert api.put(xpath, json={"type": "topic"}).status_code == 201
    assert api.put(xpath, json={"type": "topic"}).status_code == 204
    assert api.put(xpath, json={"type": "direct"}).json()["reason"] == (
        f"inequivalent arg 'type' for exchange '{exchange}' in vhost '/': "
        "received 'direct' but current is 'topic'"
    )
    assert api.put("/api/exchanges/%2F/bad-type", json={"type": "nope"}).json() == {
        "error": "bad_request",
        "reason": "unknown exchange type 'nope'",
    }
    reserved = api.put("/api/exchanges/%2F/amq.mine", json={"type": "direct"})
    assert reserved.status_code == 401 and reserved.json()["reason"] == "Access refused."
    info = api.get(xpath).json()
    assert info["type"] == "topic" and info["incoming"] == [] and info["outgoing"] == []
    default = api.get("/api/exchanges/%2F/amq.default").json()
    assert default["name"] == "" and default["type"] == "direct"
    api.put(f"/api/queues/%2F/{q(queue)}", json={})
    bpath = f"/api/bindings/%2F/e/{q(exchange)}/q/{q(queue)}"
    bound = api.post(bpath, json={"routing_key": "a.*", "arguments": {}})
    assert bound.status_code == 201 and bound.headers["location"] == f"{q(queue)}/a.%252A"
    with_args = api.post(bpath, json={"routing_key": "b", "arguments": {"x": 1}})
    assert with_args.status_code == 201
    listed = api.get(bpath).json()
    assert {b["routing_key"] for b in listed} == {"a.*", "b"}
    props = {b["routing_key"]: b["properties_key"] for b in listed}
    assert props["a.*"] == "a.%2A" and props["b"].startswith("b~")
    assert api.get(f"{bpath}/{q(props['b'])}").json()["arguments"] == {"x": 1}
    routed = api.post(
        f"{xpath}/publish",
        json={"properties": {}, "routing_key": "a.b", "payload": "x", "payload_encoding": "string"},
    )
    assert routed.json() == {"routed": True}
    source = api.get(f"{xpath}/bindings/source").json()
    assert {b["destination"] for b in source} == {queue}
    queue_bindings = api.get(f"/api/queues/%2F/{q(queue)}/bindings").json()
    assert {b["source"] for b in queue_bindings} == {"", exchange}  # the default one too
    assert api.delete(f"{bpath}/{q(props['b'])}").status_code == 204
    assert api.delete(f"{bpath}/{q(props['b'])}").status_code == 404
    missing = api.post(f"/api/bindings/%2F/e/{q(exchange)}/q/no-such-q", json={})
    assert missing.status_code == 404
    assert missing.json() == {"error": "not_found", "reason": "no queue 'no-such-q' in vhost '/'"}
    assert api.delete(xpath).status_code == 204
    assert api.delete(xpath).status_code == 404
    assert api.delete(f"/api/queues/%2F/{q(queue)}").status_code == 204


# -- connections, channels, consumers -----------------------------------------------


def test_connections_channels_consumers_and_closing(api, managed, plain_name):
    process, _ = managed
    params = pika.ConnectionParameters(
        process.host, process.port, client_properties={"connection_name": "test-conn"}
    )
    connection = pika.BlockingConnection(params)
    channel = connection.channel()
    name = f"{plain_name}-http-consumed"
    channel.queue_declare(name)
    channel.basic_qos(prefetch_count=7)
    tag = channel.basic_consume(name, lambda *args: None)
    local_port = connection._impl._transport._sock.getsockname()[1]
    mine = poll(
        lambda: [c for c in api.get("/api/connections").json() if c["peer_port"] == local_port]
    )[0]
    assert mine["user"] == "guest" and mine["vhost"] == "/" and mine["channels"] == 1
    assert mine["user_provided_name"] == "test-conn"
    assert mine["name"] == f"127.0.0.1:{local_port} -> 127.0.0.1:{process.port}"
    assert mine["client_properties"]["product"] == "Pika Python Client Library"
    assert api.get(f"/api/connections/{q(mine['name'])}").json()["name"] == mine["name"]
    channels = api.get(f"/api/connections/{q(mine['name'])}/channels").json()
    assert [c["number"] for c in channels] == [1]
    detail = api.get(f"/api/channels/{q(channels[0]['name'])}").json()
    assert detail["consumer_count"] == 1
    assert detail["consumer_details"][0]["consumer_tag"] == tag
    consumers = [c for c in api.get("/api/consumers/%2F").json() if c["consumer_tag"] == tag]
    assert consumers[0]["queue"] == {"name": name, "vhost": "/"}
    assert consumers[0]["prefetch_count"] == 7
    closed = api.delete(f"/api/connections/{q(mine['name'])}", headers={"X-Reason": "maintenance"})
    assert closed.status_code == 204
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as error:
        connection.process_data_events(time_limit=5)
        connection.process_data_events(time_limit=5)
    assert error.value.reply_code == 320
    assert "maintenance" in error.value.reply_text
    assert api.get(f"/api/connections/{q(mine['name'])}").status_code == 404


# -- vhosts, users, permissions, definitions ----------------------------------------


def test_users_vhosts_permissions(api, managed, plain_name):
    _, base = managed
    vhost, user = f"{plain_name}-http-vhost", f"{plain_name}-http-user"
    assert api.put(f"/api/vhosts/{q(vhost)}").status_code == 201
    assert api.put(f"/api/vhosts/{q(vhost)}").status_code == 204
    assert api.get(f"/api/vhosts/{q(vhost)}").json()["name"] == vhost
    assert (
        api.put(f"/api/users/{q(user)}", json={"password": "pw", "tags": "monitoring"}).status_code
        == 201
    )
    shown = api.get(f"/api/users/{q(user)}").json()
    assert shown["tags"] == ["monitoring"]
    assert shown["hashing_algorithm"] == "rabbit_password_hashing_sha256"
    ppath = f"/api/permissions/{q(vhost)}/{q(user)}"
    perms = {"configure": ".*", "write": ".*", "read": ".*"}
    assert api.put(ppath, json=perms).status_code == 201
    assert api.put(ppath, json=perms).status_code == 204
    assert api.get(ppath).json() == {"user": user, "vhost": vhost, **perms}
    assert api.put(f"/api/permissions/no-vhost/{q(user)}", json=perms).json() == {
        "error": "bad_request",
        "reason": "vhost_or_user_not_found",
    }
    # the new user: monitoring sees, cannot change
    with httpx.Client(base_url=base, auth=(user, "pw")) as monitor:
        assert monitor.get("/api/whoami").json() == {"name": user, "tags": ["monitoring"]}
        assert {v["name"] for v in monitor.get("/api/vhosts").json()} == {vhost}
        refused = monitor.get("/api/users")
        assert refused.status_code == 401
        assert refused.json() == {"error": "not_authorised", "reason": "Not administrator user"}
        assert monitor.put(f"/api/queues/{q(vhost)}/mq", json={}).status_code == 201
        assert monitor.put("/api/queues/%2F/mq", json={}).json() == {
            "error": "not_authorised",
            "reason": "User not authorised to access virtual host",
        }
    assert api.delete(ppath).status_code == 204
    assert api.delete(f"/api/users/{q(user)}").status_code == 204
    assert api.delete(f"/api/users/{q(user)}").status_code == 404
    assert api.delete(f"/api/vhosts/{q(vhost)}").status_code == 204
    assert api.get(f"/api/vhosts/{q(vhost)}").status_code == 404


def test_definitions_round_trip(api, plain_name):
    name = f"{plain_name}-http-def"
    document = {
        "queues": [
            {"name": name, "vhost": "/", "durable": True, "auto_delete": False, "arguments": {}}
        ],
        "exchanges": [],
        "bindings": [],
    }
    assert api.post("/api/definitions", json=document).status_code == 204
    exported = api.get("/api/definitions").json()
    assert name in {queue["name"] for queue in exported["queues"]}
    assert {"users", "vhosts", "permissions", "exchanges", "bindings"} <= set(exported)
    per_vhost = api.get("/api/definitions/%2F").json()
    assert name in {queue["name"] for queue in per_vhost["queues"]}
    assert "vhost" not in per_vhost["queues"][0]
    bad = api.post("/api/definitions", content=b"{not json")
    assert bad.status_code == 400
    api.delete(f"/api/queues/%2F/{q(name)}")


def test_health_checks_and_aliveness(api):
    assert api.get("/api/aliveness-test/%2F").json() == {"status": "ok"}
    assert api.get("/api/health/checks/alarms").json() == {"status": "ok"}
    assert api.get("/api/health/checks/virtual-hosts").json() == {"status": "ok"}


# -- listing options ----------------------------------------------------------------


def test_pagination_sorting_columns(api, plain_name):
    names = [f"{plain_name}-page-{letter}" for letter in "abc"]
    for name in names:
        api.put(f"/api/queues/%2F/{q(name)}", json={})
    prefix = f"{plain_name}-"
    page = api.get(
        "/api/queues",
        params={
            "page": 1,
            "page_size": 2,
            "name": prefix + "page-",
            "sort": "name",
            "sort_reverse": "true",
        },
    ).json()
    assert page["filtered_count"] == 3 and page["item_count"] == 2 and page["page_count"] == 2
    assert [item["name"] for item in page["items"]] == [names[2], names[1]]
    columns = api.get("/api/queues", params={"columns": "name,messages"}).json()
    assert all(set(item) <= {"name", "messages"} for item in columns)
    out_of_range = api.get("/api/queues", params={"page": 99, "page_size": 2})
    assert out_of_range.status_code == 400
    assert out_of_range.json()["error"] == "page_out_of_range"
    for name in names:
        api.delete(f"/api/queues/%2F/{q(name)}")


# -- HTTP details, authentication, cross-site requests ------------------------------


def test_authentication(managed):
    _, base = managed
    with httpx.Client(base_url=base) as anonymous:
        none = anonymous.get("/api/overview")
        assert none.status_code == 401 and none.content == b""
        assert none.headers["www-authenticate"] == 'Basic realm="RabbitMQ Management"'
        wrong = anonymous.get("/api/overview", auth=("guest", "nope"))
        assert wrong.json() == {"error": "not_authorized", "reason": "Login failed"}
        scripted = anonymous.get(
            "/api/overview", auth=("guest", "nope"), headers={"X-Requested-With": "XMLHttpRequest"}
        )
        assert scripted.status_code == 401 and "www-authenticate" not in scripted.headers
        assert anonymous.get("/api/nope").status_code == 404  # unknown paths before auth


def test_methods_and_cross_site_requests(api, plain_name):
    not_allowed = api.patch("/api/queues")
    assert not_allowed.status_code == 405 and not_allowed.content == b""
    assert not_allowed.headers["allow"] == "HEAD, GET, OPTIONS"
    assert api.options("/api/queues").headers["allow"] == "HEAD, GET, OPTIONS"
    assert api.head("/api/overview").status_code == 200
    name = f"{plain_name}-csrf"
    forged = api.put(
        f"/api/queues/%2F/{q(name)}", json={}, headers={"Origin": "http://evil.example"}
    )
    assert forged.status_code == 403
    assert api.get(f"/api/queues/%2F/{q(name)}").status_code == 404
    fetch_metadata = api.delete("/api/queues/%2F/x", headers={"Sec-Fetch-Site": "cross-site"})
    assert fetch_metadata.status_code == 403
    host = api.base_url.netloc.decode()
    same = api.put(f"/api/queues/%2F/{q(name)}", json={}, headers={"Origin": f"http://{host}"})
    assert same.status_code == 201
    api.delete(f"/api/queues/%2F/{q(name)}")


def test_json_everywhere(api):
    response = api.get("/api/overview")
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-cache"
    json.loads(response.content)


def test_a_publisher_to_a_queue_that_is_behind_shows_in_flow(api, managed, plain_name):
    """Credit flow: a connection that publishes to a queue holding more ready messages
    than it keeps in memory gets shorter turns and shows 'flow', however slowly it sends;
    one publishing at the same pace to a queue that keeps up stays 'running'."""
    process, _ = managed
    publishers = {}
    for kind in ("behind", "keeping-up"):
        client = RawClient(process.host, process.port)
        client.handshake()
        client.open_channel(1)
        client.send(1, commands.Queue.Declare(queue=f"{plain_name}-{kind}"))
        client.expect(commands.Queue.DeclareOk, 1)
        publishers[kind] = client

    def publish(kind: str, count: int) -> None:
        one = (
            frame.marshal(commands.Basic.Publish(routing_key=f"{plain_name}-{kind}"), 1)
            + frame.marshal(header.ContentHeader(0, 10), 1)
            + frame.marshal(pamqp_body.ContentBody(b"b" * 10), 1)
        )
        publishers[kind].sock.sendall(one * count)

    publish("behind", 3000)  # more than the 2048 a queue's head holds
    poll(lambda: api.get(f"/api/queues/%2F/{q(plain_name)}-behind").json()["messages"] == 3000)
    ports = {kind: client.sock.getsockname()[1] for kind, client in publishers.items()}
    stop = threading.Event()

    def trickle() -> None:
        while not stop.is_set():
            for kind in publishers:
                publish(kind, 1)
            time.sleep(0.01)

    sender = threading.Thread(target=trickle, daemon=True)
    sender.start()
    seen: dict[str, set] = {"behind": set(), "keeping-up": set()}

    def states() -> bool:
        for connection in api.get("/api/connections").json():
            for kind, port in ports.items():
                if connection["peer_port"] == port:
                    seen[kind].add(connection["state"])
        return "flow" in seen["behind"]

    try:
        poll(states, timeout=60)
    finally:
        stop.set()
        sender.join(10)
    assert seen["keeping-up"] == {"running"}
    for client in publishers.values():
        client.close()


def test_a_publisher_waits_for_consumers_that_do_not_keep_up(api, managed, plain_name):
    """Credit flow: a flood into a queue whose consumer works but is slower is not read
    while that consumer catches up, so the backlog stays near what a queue keeps in
    memory instead of growing with everything sent; nothing is lost."""
    process, _ = managed
    name = f"{plain_name}-slow-consumer"
    count = 100_000
    consumer = pika.BlockingConnection(pika.ConnectionParameters(process.host, process.port))
    channel = consumer.channel()
    channel.queue_declare(name)
    channel.basic_qos(prefetch_count=50)
    received = []

    def on_message(ch, method, _properties, _body):
        received.append(method.delivery_tag)
        ch.basic_ack(method.delivery_tag)

    channel.basic_consume(name, on_message)
    flood = RawClient(process.host, process.port)
    flood.handshake()
    flood.open_channel(1)
    one = (
        frame.marshal(commands.Basic.Publish(exchange="", routing_key=name), 1)
        + frame.marshal(header.ContentHeader(0, 100), 1)
        + frame.marshal(pamqp_body.ContentBody(b"f" * 100), 1)
    )
    sender = threading.Thread(target=lambda: flood.sock.sendall(one * count), daemon=True)
    sender.start()
    deepest = 0
    deadline = time.monotonic() + 120
    while len(received) < count and time.monotonic() < deadline:
        consumer.process_data_events(time_limit=0.05)
        if len(received) % 5 == 0:
            queue = api.get(f"/api/queues/%2F/{q(name)}").json()
            deepest = max(deepest, queue.get("messages_ready", 0))
    sender.join(10)
    assert len(received) == count
    # without credit flow the backlog grows to most of the flood (the publisher is
    # several times faster than this consumer); with it, it stays near the 2048 a
    # queue keeps in memory (one batch of each turn above it)
    assert deepest < 20_000, deepest
    flood.close()
    consumer.close()


def test_a_flooding_connection_shows_in_flow(api, managed, plain_name):
    """A client that sends faster than its turn of the event loop allows is not read
    until the others had theirs: RabbitMQ's 'flow' state, seen in the connection's
    state while the flood lasts."""
    process, _ = managed
    name = f"{plain_name}-flood"
    flood = RawClient(process.host, process.port)
    flood.handshake()
    flood.open_channel(1)
    flood.send(1, commands.Queue.Declare(queue=name))
    flood.expect(commands.Queue.DeclareOk, 1)
    port = flood.sock.getsockname()[1]
    one = (
        frame.marshal(commands.Basic.Publish(exchange="", routing_key=name), 1)
        + frame.marshal(header.ContentHeader(0, 100), 1)
        + frame.marshal(pamqp_body.ContentBody(b"f" * 100), 1)
    )
    sender = threading.Thread(target=lambda: flood.sock.sendall(one * 200_000), daemon=True)
    sender.start()

    def in_flow():
        states = {c["state"] for c in api.get("/api/connections").json() if c["peer_port"] == port}
        return "flow" in states

    poll(in_flow, timeout=60)
    sender.join(120)
    poll(lambda: api.get(f"/api/queues/%2F/{q(name)}").json()["messages"] == 200_000, 60)
    flood.close()
    api.delete(f"/api/queues/%2F/{q(name)}")
