"""``xivo-bus bench``: each scenario, briefly, against a real broker.

Only counts and the shape of the JSON are checked: figures belong to the benchmark's
output and docs/performance.md, never to assertions.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from xivo_bus.bench import procstat, report, scenarios


def bench(broker, tmp_path, *args: str) -> tuple[dict, str]:
    out = tmp_path / "bench.json"
    command = [sys.executable, "-m", "xivo_bus", "bench", *args, "--url", broker.url]
    command += ["--broker-pid", str(broker.proc.pid), "--json", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(out.read_text()), result.stdout


def check_common(document: dict, scenario: str) -> None:
    assert document["scenario"] == scenario
    assert "guest@" in document["url"] and ":guest@" not in document["url"]  # no password
    assert set(document["broker"]) >= {"pid", "cpu_s", "cpu_percent", "rss_kib", "peak_rss_kib"}
    assert document["broker"]["rss_kib"] > 0
    assert document["generator"]["processes"] >= 1
    assert document["generator"]["cpu_s"] >= 0
    assert document["wall_s"] > 0


def check_no_loss(results: dict, expected: int) -> None:
    assert results["expected"] == expected
    assert results["received"] == expected
    assert results["lost"] == 0


@pytest.mark.parametrize(
    "options",
    [
        [],
        ["--confirm", "50"],
        ["--auto-ack", "--prefetch", "0"],
        ["--multi-ack", "16", "--persistent", "--confirm", "20", "--size", "3000"],
    ],
    ids=["manual-ack", "confirms", "auto-ack", "multi-ack-persistent"],
)
def test_throughput_counts_add_up(broker, tmp_path, options):
    args = ["throughput", "--producers", "2", "--consumers", "2", "--messages", "300"]
    document, table = bench(broker, tmp_path, *args, *options)
    check_common(document, "throughput")
    results = document["results"]
    check_no_loss(results, 600)
    assert results["publish_rate"] > 0 and results["delivery_rate"] > 0
    if "--confirm" in options:
        assert results["confirmed"] == 600 and results["nacked"] == 0
    assert "600 / 600" in table
    assert document["params"]["producers"] == 2


def test_fanout_delivers_one_copy_per_queue(broker, tmp_path):
    document, _ = bench(broker, tmp_path, "fanout", "--queues", "4", "--messages", "250")
    check_common(document, "fanout")
    check_no_loss(document["results"], 1000)


def test_latency_reports_percentiles(broker, tmp_path):
    args = ["latency", "--rate", "2000", "--messages", "200", "--size", "16"]
    document, table = bench(broker, tmp_path, *args)
    check_common(document, "latency")
    results = document["results"]
    check_no_loss(results, 200)
    latency = results["latency_us"]
    assert latency["samples"] == 200
    assert 0 < latency["p50"] <= latency["p99"] <= latency["p99.9"] <= latency["max"]
    assert "latency p99.9" in table


def test_connections_opens_idle_and_cycles(broker, tmp_path):
    args = ["connections", "--idle", "40", "--duration", "0.5", "--processes", "2"]
    document, table = bench(broker, tmp_path, *args)
    check_common(document, "connections")
    results = document["results"]
    assert results["idle_connections"] == 40
    assert results["open_close_cycles"] > 0
    assert set(results) >= {"rss_before_kib", "rss_with_idle_kib", "rss_per_connection_kib"}
    assert "RSS per connection" in table


def test_unreachable_broker_is_one_line_error(unused_port):
    url = f"amqp://guest:guest@127.0.0.1:{unused_port}/%2F"
    result = subprocess.run(
        [sys.executable, "-m", "xivo_bus", "bench", "throughput", "--url", url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("xivo-bus bench: ") and result.stderr.count("\n") == 1


# -- the pieces -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "total,parts,expected",
    [(10, 3, [4, 3, 3]), (2, 5, [1, 1]), (1, 1, [1]), (7, 1, [7])],
)
def test_split(total, parts, expected):
    assert scenarios.split(total, parts) == expected


def test_latency_summary():
    samples = [i * 1000 for i in range(1, 1001)]  # 1 µs … 1000 µs
    assert scenarios.latency_summary(samples) == {
        "samples": 1000,
        "p50": 501.0,
        "p99": 991.0,
        "p99.9": 1000.0,
        "max": 1000.0,
    }
    assert scenarios.latency_summary([]) == {"samples": 0}


def test_procstat_reads_a_process():
    sample = procstat.sample(os.getpid())
    assert sample["cpu_s"] > 0 and sample["rss_kib"] > 0
    assert sample["peak_rss_kib"] >= sample["rss_kib"]
    assert procstat.sample(None) is None
    assert procstat.usage(sample, sample, 1.0)["cpu_s"] == 0


def test_table_lists_what_was_measured():
    document = {
        "scenario": "throughput",
        "url": "amqp://guest@127.0.0.1:5672/%2F",
        "params": {"size": 100},
        "results": {
            "sent": 10,
            "received": 9,
            "lost": 1,
            "publish_rate": 5.0,
            "delivery_rate": 4.5,
        },
        "broker": {"pid": None},
        "generator": {"processes": 2, "cpu_s": 0.5, "cpu_percent": 25.0},
        "wall_s": 2.0,
    }
    text = report.table(document)
    assert "LOST" in text and "10 / 9" in text and "broker CPU" not in text
