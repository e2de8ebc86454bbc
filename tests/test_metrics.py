"""Prometheus metrics: scraped over HTTP and parsed with prometheus_client's own parser;
the names, types and help texts are RabbitMQ 3.10's (as its rabbitmq_prometheus plugin
serves them on /metrics)."""

from __future__ import annotations

import re
import subprocess
import time
import urllib.error
import urllib.request

import pika
import pytest
from conftest import READY, serve_argv
from prometheus_client.parser import text_string_to_metric_families

# From RabbitMQ 3.10.8's /metrics (rabbitmq_prometheus), name: (type, help)
RABBITMQ = {
    "rabbitmq_connections": ("gauge", "Connections currently open"),
    "rabbitmq_channels": ("gauge", "Channels currently open"),
    "rabbitmq_consumers": ("gauge", "Consumers currently connected"),
    "rabbitmq_queues": ("gauge", "Queues available"),
    "rabbitmq_queue_messages_ready": ("gauge", "Messages ready to be delivered to consumers"),
    "rabbitmq_queue_messages_unacked": (
        "gauge",
        "Messages delivered to consumers but not yet acknowledged",
    ),
    "rabbitmq_queue_messages": (
        "gauge",
        "Sum of ready and unacknowledged messages - total queue depth",
    ),
    "rabbitmq_connections_opened_total": ("counter", "Total number of connections opened"),
    "rabbitmq_process_resident_memory_bytes": ("gauge", "Memory used in bytes"),
    "rabbitmq_build_info": ("unknown", "RabbitMQ & Erlang/OTP version info"),
    "rabbitmq_identity_info": ("unknown", "RabbitMQ node & cluster identity info"),
    "rabbitmq_channels_opened_total": ("counter", "Total number of channels opened"),
    "rabbitmq_channels_closed_total": ("counter", "Total number of channels closed"),
    "rabbitmq_queues_declared_total": ("counter", "Total number of queues declared"),
    "rabbitmq_queues_created_total": ("counter", "Total number of queues created"),
    "rabbitmq_queues_deleted_total": ("counter", "Total number of queues deleted"),
    "rabbitmq_resident_memory_limit_bytes": ("gauge", "Memory high watermark in bytes"),
    "rabbitmq_queue_consumers": ("gauge", "Consumers on a queue"),
    "rabbitmq_queue_messages_published_total": (
        "counter",
        "Total number of messages published to queues",
    ),
    "rabbitmq_channel_messages_published_total": (
        "counter",
        "Total number of messages published into an exchange on a channel",
    ),
    "rabbitmq_channel_messages_confirmed_total": (
        "counter",
        "Total number of messages published into an exchange and confirmed on the channel",
    ),
    "rabbitmq_channel_messages_unroutable_dropped_total": (
        "counter",
        "Total number of messages published as non-mandatory into an exchange and dropped "
        "as unroutable",
    ),
    "rabbitmq_channel_get_ack_total": (
        "counter",
        "Total number of messages fetched with basic.get in manual acknowledgement mode",
    ),
    "rabbitmq_channel_messages_delivered_ack_total": (
        "counter",
        "Total number of messages delivered to consumers in manual acknowledgement mode",
    ),
    "rabbitmq_channel_messages_acked_total": (
        "counter",
        "Total number of messages acknowledged by consumers",
    ),
    "rabbitmq_channel_get_empty_total": (
        "counter",
        "Total number of times basic.get operations fetched no message",
    ),
}


@pytest.fixture
def served(tmp_path):
    proc = subprocess.Popen(
        serve_argv(
            "--port", "0", "--no-cti", "--data-dir", str(tmp_path), "--prometheus", "127.0.0.1:0"
        ),  # fmt: skip
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        amqp = READY.search(proc.stdout.readline())
        metrics = None
        for _ in range(3):  # the metrics line, among the start-up lines
            metrics = metrics or re.search(r"metrics on (http://\S+)", proc.stdout.readline())
        assert amqp and metrics
        yield int(amqp.group(2)), metrics.group(1)
    finally:
        proc.terminate()
        proc.wait(10)


def scrape(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def value(families: dict, name: str) -> float:
    family = families[name.removesuffix("_total")]
    return family.samples[0].value


def test_metrics_as_rabbitmq_names_them(served):
    port, url = served
    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
    channel = connection.channel()
    channel.queue_declare("jobs")
    for _ in range(3):
        channel.basic_publish("", "jobs", b"x")
    channel.basic_get("jobs")  # one delivered, not acked
    channel.basic_consume("jobs", lambda *args: None)
    families = scrape(url)
    for name, (kind, text) in RABBITMQ.items():
        family = families[name.removesuffix("_total")]
        assert (family.type, family.documentation) == (kind, text), name
    deadline = time.monotonic() + 30
    while value(families, "rabbitmq_queue_messages_unacked") != 3:  # the consumer took 2
        assert time.monotonic() < deadline
        connection.process_data_events(time_limit=0.1)
        families = scrape(url)
    assert value(families, "rabbitmq_connections") == 1
    assert value(families, "rabbitmq_channels") == 1
    assert value(families, "rabbitmq_consumers") == 1
    assert value(families, "rabbitmq_queues") == 1
    assert value(families, "rabbitmq_queue_messages_ready") == 0
    assert value(families, "rabbitmq_queue_messages") == 3
    assert value(families, "rabbitmq_connections_opened_total") >= 1
    assert value(families, "rabbitmq_process_resident_memory_bytes") > 1_000_000
    [identity] = families["rabbitmq_identity_info"].samples
    assert identity.labels["rabbitmq_node"].startswith("xivo-bus@")
    assert value(families, "rabbitmq_channel_messages_published_total") == 3
    assert value(families, "rabbitmq_queue_messages_published_total") == 3
    assert value(families, "rabbitmq_channel_get_ack_total") == 1
    assert value(families, "rabbitmq_channel_messages_delivered_ack_total") == 2
    assert value(families, "rabbitmq_queues_created_total") == 1
    connection.close()
    # a closed channel's counts stay: counters never go down
    deadline = time.monotonic() + 30
    while value(families, "rabbitmq_channels_closed_total") < 1:
        assert time.monotonic() < deadline
        families = scrape(url)
    assert value(families, "rabbitmq_channel_messages_published_total") == 3


def test_detailed_metrics_per_queue_and_channel(served):
    port, url = served
    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
    channel = connection.channel()
    for name, count in (("alpha", 2), ("beta", 1)):
        channel.queue_declare(name)
        for _ in range(count):
            channel.basic_publish("", name, b"x")
    channel.basic_consume("beta", lambda *args: None)
    connection.process_data_events(time_limit=0.2)
    detailed = url + "/detailed"
    only_identity = scrape(detailed)
    assert set(only_identity) == {"rabbitmq_build_info", "rabbitmq_identity_info"}
    families = scrape(
        detailed + "?family=queue_coarse_metrics&family=queue_consumer_count"
        "&family=channel_exchange_metrics&vhost=%2F"
    )
    ready = {
        sample.labels["queue"]: sample.value
        for sample in families["rabbitmq_detailed_queue_messages_ready"].samples
    }
    assert ready == {"alpha": 2, "beta": 0}
    assert families["rabbitmq_detailed_queue_messages_ready"].documentation == (
        "Messages ready to be delivered to consumers"
    )
    consumers = {
        sample.labels["queue"]: sample.value
        for sample in families["rabbitmq_detailed_queue_consumers"].samples
    }
    assert consumers == {"alpha": 0, "beta": 1}
    [published] = families["rabbitmq_detailed_channel_messages_published"].samples
    assert published.value == 3 and published.labels["vhost"] == "/"
    assert scrape(detailed + "?family=queue_coarse_metrics&vhost=nowhere").keys() == {
        "rabbitmq_build_info",
        "rabbitmq_identity_info",
    }
    connection.close()


def test_other_paths_are_404(served):
    _, url = served
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(url.replace("/metrics", "/nope"), timeout=10)
    assert missing.value.code == 404
