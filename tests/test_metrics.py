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
    connection.close()


def test_other_paths_are_404(served):
    _, url = served
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(url.replace("/metrics", "/nope"), timeout=10)
    assert missing.value.code == 404
