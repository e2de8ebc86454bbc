"""The way out: a two-node RabbitMQ cluster takes xivo-bus's definitions, and the XiVO
side runs against it unchanged, riding through the loss of a node.

The cluster is private (tests/rabbitmq_cluster.py): Debian's rabbitmq-server, two nodes
of our own on free loopback ports, started and joined by this module and stopped at its
end. The tests run in file order: the import comes first (it makes ``/`` a vhost whose
durable queues are quorum queues, as docs/scaling.md says to), the loss of a node last.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import aio_pika
import httpx
import pika
import pytest
import rabbitmq_cluster
from conftest import ChildLines, start_broker
from cti_support import SpecConsumer, add_agent, contact, expected, start_cti

from xivo_bus import client, events

pytestmark = pytest.mark.skipif(
    not rabbitmq_cluster.available(),
    reason=f"no RabbitMQ here ({rabbitmq_cluster.RABBITMQ_BIN}/rabbitmq-server is missing; "
    ".ci/setup-rabbitmq.sh installs it)",
)

CLI = [sys.executable, "-m", "xivo_bus"]
SPEC_CLIENT = Path(__file__).with_name("spec_example_client.py")
FAST = client.Backoff(initial=0.05, maximum=0.5)
CALLD_PASSWORD = "calld-secret"
CALLD_QUEUE = "calld.call_form_result"
FIGURES: dict[str, float] = {}  # what docs/scaling.md reports, printed at the end


@pytest.fixture(scope="module")
def cluster():
    nodes = rabbitmq_cluster.Cluster()
    try:
        nodes.start()
        FIGURES["cluster up (s)"] = round(nodes.startup_seconds, 1)
        yield nodes
    finally:
        nodes.stop()
        if FIGURES:
            print(f"\ncluster figures: {json.dumps(FIGURES)}")


@pytest.fixture
def xivo_cti(cluster):
    """``xivo-cti`` as the CTI server declared it at start-up (a no-op once imported)."""
    with pika.BlockingConnection(pika.URLParameters(cluster.nodes[0].url)) as connection:
        connection.channel().exchange_declare("xivo-cti", "direct", durable=True)


def cluster_url(*nodes: rabbitmq_cluster.Node) -> str:
    """The URLs of ``nodes``, in that order, as ``--url`` takes them."""
    return ",".join(node.url for node in nodes)


def ours_ctl(broker, *args: str) -> str:
    socket = os.path.join(broker.data_dir, "ctl.sock")
    done = subprocess.run(
        [*CLI, "ctl", "-q", "--socket", socket, *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def for_quorum_queues(definitions: dict) -> dict:
    """The jq filter of docs/scaling.md: every vhost makes its durable queues quorum
    queues, and so do the definitions' own durable queues (RabbitMQ 3.10's import
    leaves a queue without ``x-queue-type`` classic, even in such a vhost)."""
    for vhost in definitions["vhosts"]:
        vhost.setdefault("metadata", {})["default_queue_type"] = "quorum"
    for queue in definitions["queues"]:
        if queue["durable"] and not queue["auto_delete"]:
            queue["arguments"].setdefault("x-queue-type", "quorum")
    return definitions


def poll(predicate, what: str, timeout: float = 60):
    return rabbitmq_cluster.poll(predicate, what, timeout, every=0.1)


async def wait_for(predicate, what: str, timeout: float = 30) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, f"{what}: not within {timeout:g} s"
        await asyncio.sleep(0.01)


async def when(predicate) -> float:
    """The time ``predicate`` became true (polled; bound the wait from outside)."""
    while not predicate():
        await asyncio.sleep(0.005)
    return time.monotonic()


def call_form(user_id: int) -> events.CallFormResult:
    return events.CallFormResult(user_id=user_id, variables={"firstname": f"n{user_id}"})


def test_definitions_exported_by_xivo_bus_import_into_the_cluster(cluster, tmp_path):
    """XiVO's topology made on xivo-bus (a service user, its permissions, its durable
    queue bound to xivo-cti), exported, imported on one node, is there on the other;
    the user logs in with the same password, and the client library re-declares the
    queue, now a quorum queue, without a change."""
    a, b = cluster.nodes
    broker = start_broker("--data-dir", str(tmp_path / "data"))
    exported = tmp_path / "definitions.json"
    try:
        ours_ctl(broker, "add_user", "calld", CALLD_PASSWORD)
        calld_resources = r"^(calld\.|xivo-cti)"  # its queues, and xivo-cti, which it declares
        ours_ctl(broker, "set_permissions", "calld", calld_resources, calld_resources, ".*")
        credentials = pika.PlainCredentials("calld", CALLD_PASSWORD)
        parameters = pika.ConnectionParameters(broker.host, broker.port, "/", credentials)
        with pika.BlockingConnection(parameters) as connection:
            channel = connection.channel()
            channel.queue_declare(CALLD_QUEUE, durable=True)
            channel.queue_bind(CALLD_QUEUE, "xivo-cti", "call_form_result")
        ours_ctl(broker, "export_definitions", str(exported))
    finally:
        broker.stop()
    exported.write_text(json.dumps(for_quorum_queues(json.loads(exported.read_text()))))

    # A fresh cluster's "/" would keep classic queues: let the import make it again.
    a.ctl("delete_vhost", "/")
    a.ctl("import_definitions", str(exported))

    def imported_on_b() -> dict | None:
        """RabbitMQ's import is asynchronous, the bindings last: ask the other node."""
        definitions = json.loads(b.ctl("export_definitions", "-").stdout)
        return definitions if definitions["bindings"] else None

    on_b = poll(imported_on_b, "the imported definitions on the other node")
    assert [(v["name"], v["metadata"]["default_queue_type"]) for v in on_b["vhosts"]] == [
        ("/", "quorum")
    ]
    assert sorted(user["name"] for user in on_b["users"]) == ["calld", "guest"]
    assert {
        "user": "calld",
        "vhost": "/",
        "configure": calld_resources,
        "write": calld_resources,
        "read": ".*",
    } in on_b["permissions"]
    assert [(e["name"], e["type"], e["durable"]) for e in on_b["exchanges"]] == [
        ("xivo-cti", "direct", True)
    ]
    assert [(q["name"], q["durable"], q["arguments"]) for q in on_b["queues"]] == [
        (CALLD_QUEUE, True, {"x-queue-type": "quorum"})
    ]
    assert [(x["source"], x["destination"], x["routing_key"]) for x in on_b["bindings"]] == [
        ("xivo-cti", CALLD_QUEUE, "call_form_result")
    ]

    async def calld_runs_unchanged() -> list:
        calld = [node.url.replace("guest:guest", f"calld:{CALLD_PASSWORD}") for node in (b, a)]
        received: list = []
        consumer = client.Consumer(calld, queue=CALLD_QUEUE, backoff=FAST)
        consumer.subscribe("call_form_result", received.append)
        async with consumer:
            await consumer.wait_connected(30)
            async with client.Publisher(cluster_url(a, b)) as publisher:
                await publisher.publish(call_form(40))
            await wait_for(lambda: received, "the event in the quorum queue")
        return received

    assert asyncio.run(calld_runs_unchanged()) == [call_form(40)]
    # Two nodes are no majority once one is lost: a quorum queue on call_form_result's
    # path would refuse it then (docs/scaling.md: three nodes). Not for the tests below.
    with pika.BlockingConnection(pika.URLParameters(b.url)) as connection:
        connection.channel().queue_delete(CALLD_QUEUE)


def test_spec_client_and_cli_on_the_cluster(cluster, xivo_cti):
    """The spec's example client on one node, ``xivo-bus listen`` on the other,
    ``xivo-bus publish`` given both URLs: the event crosses the cluster to both."""
    a, b = cluster.nodes
    spec = subprocess.Popen(
        [sys.executable, str(SPEC_CLIENT), str(b.port), "1"], stdout=subprocess.PIPE, text=True
    )
    listen = subprocess.Popen(
        [*CLI, "listen", "call_form_result", "--json", "--url", cluster_url(a, b)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        spec_lines, listen_lines = ChildLines(spec), ChildLines(listen)
        spec_lines.wait_for("ready", timeout=30)
        assert listen.stderr.readline().startswith(
            f"listening for call_form_result on amqp://guest@127.0.0.1:{a.port}/%2F, "
        )
        data = {"user_id": 40, "variables": {"firstname": "John", "lastname": "Doe"}}
        published = subprocess.run(
            [*CLI, "publish", "call_form_result", json.dumps(data), "--url", cluster_url(b, a)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert published.returncode == 0, published.stderr
        body = json.dumps({"name": "call_form_result", "data": data})
        assert spec_lines.rest(timeout=30)[1:] == [f"Received: {body}", "acked 1", "left 0"]
        assert json.loads(listen_lines.wait_for("{", timeout=30)) == json.loads(body)
    finally:
        listen.terminate()
        for child in (spec, listen):
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
    assert spec.returncode == 0 and listen.returncode == 0


def test_call_forms_publish_through_their_outbox_to_the_cluster(cluster, xivo_cti, tmp_path):
    """``xivo-bus cti --url A,B``: a submitted form reaches a spec consumer on node B."""
    a, b = cluster.nodes
    agent = add_agent(tmp_path, "alice", 40)
    consumer = SpecConsumer("127.0.0.1", b.port)
    cti = start_cti(cluster_url(a, b), tmp_path)
    try:
        with httpx.Client(base_url=cti.url, auth=(agent.login, agent.password)) as http:
            response = http.post(
                "/api/forms/contact/results", json={"variables": contact("John", "Doe")}
            )
        assert response.status_code == 201, response.text
        assert consumer.next() == expected(40, **contact("John", "Doe"))
    finally:
        consumer.close()
        assert cti.stop() == 0


async def test_reconnecting_client_rides_through_the_loss_of_a_node(cluster, xivo_cti):
    """Publisher and consumer connected to node A; A is killed mid-stream. Both go on
    through node B; every event the publisher had confirmed reaches a queue on B (at
    least once: an event in flight when A died may come twice), and the consumer's
    server-named queue is declared again on B."""
    a, b = cluster.nodes
    witness_connection = await aio_pika.connect(b.url)
    witness = await (await witness_connection.channel()).declare_queue("", exclusive=True)
    await witness.bind("xivo-cti", "call_form_result")
    witnessed: list[int] = []

    async def witness_one(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        witnessed.append(events.decode(message.body).user_id)

    await witness.consume(witness_one, no_ack=True)
    # What a real cluster does with a classic durable queue whose node is lost (below).
    async with await aio_pika.connect(a.url) as connection:
        classic = {"x-queue-type": "classic"}
        await (await connection.channel()).declare_queue(
            "cluster.classic-on-a", durable=True, arguments=classic
        )

    # Default reconnection delays, so that the failover figures are what users get.
    received: list[int] = []
    consumer = client.Consumer([a.url, b.url])
    consumer.subscribe("call_form_result", lambda event: received.append(event.user_id))
    publisher = client.Publisher([a.url, b.url], timeout=60)
    confirmed: dict[int, tuple[float, str]] = {}  # user_id: when its confirm came, from whom

    async def publish(user_id: int) -> None:
        await publisher.publish(call_form(user_id))
        confirmed[user_id] = (time.monotonic(), publisher.connected_url)

    loop = asyncio.get_running_loop()
    consumer_back = None
    try:
        await consumer.start()
        await consumer.wait_connected(30)
        await publish(0)
        assert consumer.connected_url == publisher.connected_url == a.url
        first = consumer.queue
        await asyncio.gather(*(publish(i) for i in range(1, 300)))
        await wait_for(lambda: len(received) == 300, "the events before the loss")

        stream = asyncio.gather(*(publish(i) for i in range(300, 2300)))
        await wait_for(lambda: len(confirmed) >= 500, "the stream under way")
        consumer_back = asyncio.ensure_future(when(lambda: consumer.connections == 2))
        killed, before = time.monotonic(), len(confirmed)
        await loop.run_in_executor(None, a.kill)
        assert before < 2300, "the stream was over before the node was lost"
        await stream  # every event of the stream confirmed, through B after the loss
        back = await asyncio.wait_for(consumer_back, 60)
        assert consumer.connected_url == publisher.connected_url == b.url
        assert consumer.queue != first and consumer.queue.startswith("amq.gen-")
        await asyncio.gather(*(publish(i) for i in range(2300, 2400)))
        await wait_for(lambda: set(range(2300, 2400)) <= set(received), "events after")
        await wait_for(lambda: set(confirmed) <= set(witnessed), "every confirmed event")
    finally:
        if consumer_back is not None:
            consumer_back.cancel()
        await publisher.close()
        await consumer.close()
        await witness_connection.close()

    lost = set(confirmed) - set(witnessed)
    assert not lost
    through_b = [when for when, url in confirmed.values() if url == b.url]
    FIGURES["publisher failover (s)"] = round(min(through_b) - killed, 2)
    FIGURES["consumer failover (s)"] = round(back - killed, 2)
    FIGURES["events confirmed"] = len(confirmed)
    FIGURES["events lost"] = len(lost)
    FIGURES["duplicates"] = len(witnessed) - len(set(witnessed))

    # The classic durable queue lived on A: B can neither declare nor delete it.
    async with await aio_pika.connect(b.url) as connection:
        with pytest.raises(aio_pika.exceptions.ChannelNotFoundEntity) as refused:
            await (await connection.channel()).declare_queue(
                "cluster.classic-on-a", durable=True, arguments=classic
            )
    assert str(refused.value.args[0]).startswith(
        f"NOT_FOUND - home node '{a.name}' of durable queue 'cluster.classic-on-a' in vhost "
        "'/' is down or inaccessible"
    )
