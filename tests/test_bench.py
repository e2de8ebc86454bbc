"""``xivo-bus bench``: each scenario, briefly, against a real broker.

Only counts and the shape of the JSON are checked: figures belong to the benchmark's
output and docs/performance.md, never to assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pamqp import commands

from xivo_bus.amqp import frames
from xivo_bus.bench import command, procstat, report, scenarios, wire, workers

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


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


def check_generator(document: dict) -> None:
    generator = document["generator"]
    for role in ("producer", "consumer"):
        assert 0 <= generator[f"busiest_{role}_percent"] <= 400


@pytest.mark.parametrize(
    "options,consumers",
    [(["--queues", "3", "--consumers", "1"], 1), (["--queues", "3"], 3)],
    ids=["one-consumer-on-3-queues", "one-consumer-per-queue"],
)
def test_throughput_spreads_over_queues(broker, tmp_path, options, consumers):
    args = ["throughput", "--producers", "2", "--messages", "150", "--size", "16", *options]
    document, _ = bench(broker, tmp_path, *args)
    check_common(document, "throughput")
    check_no_loss(document["results"], 300)
    check_generator(document)
    assert document["params"]["queues"] == 3
    assert document["params"]["consumers"] == (1 if "--consumers" in options else None)


def test_many_publishers_for_a_second(broker, tmp_path):
    """The matrix's largest corner, by duration: 16 producers, 10 queues, 10 consumers."""
    args = ["throughput", "--producers", "16", "--queues", "10", "--consumers", "10"]
    document, _ = bench(broker, tmp_path, *args, "--size", "1024", "--duration", "1")
    check_common(document, "throughput")
    results = document["results"]
    assert results["sent"] > 0 and results["lost"] == 0
    assert results["delivery_rate"] > 0 and results["publish_rate"] > 0
    check_generator(document)


def test_large_bodies_span_several_frames(broker, tmp_path):
    args = ["throughput", "--size", str(2**20), "--messages", "12", "--consumers", "2"]
    document, table = bench(broker, tmp_path, *args)
    check_no_loss(document["results"], 12)
    assert "1048576 B" in table


def test_persistent_with_consumers_attached(broker, tmp_path):
    args = ["throughput", "--producers", "4", "--queues", "2", "--persistent", "--confirm", "50"]
    document, _ = bench(broker, tmp_path, *args, "--size", "1024", "--messages", "100")
    results = document["results"]
    check_no_loss(results, 400)
    assert results["confirmed"] == 400 and results["unconfirmed"] == 0


def test_latency_of_persistent_messages(broker, tmp_path):
    args = ["latency", "--persistent", "--confirm", "100", "--rate", "2000", "--size", "1024"]
    document, _ = bench(broker, tmp_path, *args, "--messages", "200")
    results = document["results"]
    check_no_loss(results, 200)
    assert results["unconfirmed"] == 0
    assert 0 < results["latency_us"]["p50"] <= results["latency_us"]["p99"]


@pytest.mark.parametrize("queues", [1, 3])
def test_backlog_reports_memory_per_message(broker, tmp_path, queues):
    args = ["backlog", "--messages", "3000", "--size", "1024", "--queues", str(queues)]
    document, table = bench(broker, tmp_path, *args, "--producers", "2")
    check_common(document, "backlog")
    results = document["results"]
    assert results["sent"] == results["confirmed"] == 3000
    assert results["queued"] == results["expected"] == 3000 * queues
    assert results["lost"] == results["unconfirmed"] == 0
    assert results["rss_with_backlog_kib"] > 0
    per_message, per_copy = results["rss_per_message_bytes"], results["rss_per_copy_bytes"]
    assert per_message == pytest.approx(per_copy * queues, rel=0.01, abs=1)
    assert "RSS per message" in table


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


@pytest.mark.parametrize(
    "count,consumers,expected",
    [
        (1, None, [["q0"]]),
        (3, None, [["q0"], ["q1"], ["q2"]]),
        (3, 1, [["q0", "q1", "q2"]]),
        (1, 3, [["q0"], ["q0"], ["q0"]]),
        (4, 2, [["q0", "q2"], ["q1", "q3"]]),
        (2, 3, [["q0"], ["q1"], ["q0"]]),
    ],
)
def test_assign(count, consumers, expected):
    assert scenarios.assign([f"q{i}" for i in range(count)], consumers) == expected


def test_queue_names_have_one_width():
    names = scenarios.queue_names("run", 12)
    assert names[0] == "run-q00" and names[-1] == "run-q11"
    assert len(set(map(len, names))) == 1


def test_rotations_take_the_keys_in_turn():
    ones = [bytes([65 + i]) * 3 for i in range(3)]
    rotations = workers._rotations(ones, 4)
    assert rotations[1] == (b"BBBCCCAAABBB", [3, 6, 9, 12])
    chunk, ends = rotations[2]
    assert chunk[: ends[1]] == b"CCCAAA"


def test_publish_frames_respect_frame_max():
    body = bytes(10_000)
    data = wire.publish_frames(1, "", "q", b"\x00\x00", body, frame_max=4096)
    bodies, offset = [], 0
    while offset < len(data):
        kind, _, size = frames._frame_header.unpack_from(data, offset)
        assert size + 8 <= 4096
        if kind == frames.FRAME_BODY:
            bodies.append(data[offset + 7 : offset + 7 + size])
        offset += size + 8
    assert len(bodies) == 3 and b"".join(bodies) == body


def test_confirms_out_of_order_are_counted_once():
    async def scenario():
        client = wire.Client()
        for index, tag, multiple in [
            (frames.BASIC_ACK, 2, 0),  # a single ack above the floor
            (frames.BASIC_ACK, 3, 1),  # 1 and 3: 2 was settled already
            (frames.BASIC_ACK, 5, 0),
            (frames.BASIC_ACK, 4, 0),  # the floor moves up to 5
            (frames.BASIC_ACK, 4, 1),  # nothing new
            (wire.BASIC_NACK, 7, 1),  # 6 and 7
        ]:
            client._on_confirm(index, tag, multiple)
        return client

    client = asyncio.run(scenario())
    assert (client.confirmed, client.nacked, client._confirm_tag) == (7, 2, 7)
    assert not client._confirmed_above


def test_acks_name_the_tags_as_they_came():
    class Transport:
        def __init__(self):
            self.written = b""

        def write(self, data):
            self.written += data

    async def scenario(every):
        client = wire.Client()
        client.transport = Transport()
        client.manual_ack, client.ack_every = True, every
        client.data_received(
            b"".join(
                frames.method_frame(
                    1,
                    commands.Basic.Deliver(
                        consumer_tag="c", delivery_tag=tag, exchange="", routing_key="q"
                    ),
                )
                for tag in (3, 1, 2)
            )
        )
        return client.transport.written

    assert asyncio.run(scenario(1)) == b"".join(wire.ack_frame(1, tag, False) for tag in (3, 1, 2))
    assert asyncio.run(scenario(2)) == wire.ack_frame(1, 3, True)


def test_large_bodies_are_skipped_not_buffered():
    def delivery(tag: int, body: bytes) -> bytes:
        method = frames.encode_method(
            commands.Basic.Deliver(consumer_tag="c", delivery_tag=tag, exchange="", routing_key="q")
        )
        return b"".join(frames.content_frames(1, method, b"\x00\x00", body, wire.FRAME_MAX))

    async def scenario():
        client = wire.Client()
        stream = b"".join(delivery(tag, bytes([tag]) * 300_000) for tag in (1, 2, 3))
        largest = 0
        for start in range(0, len(stream), 7000):
            client.data_received(stream[start : start + 7000])
            largest = max(largest, len(client._buffer))
        return client.delivered, largest, client._skip

    delivered, largest, skip = asyncio.run(scenario())
    assert (delivered, skip) == (3, 0)
    assert largest < 7000


def test_busiest_by_role():
    results = [
        {"sent": 5, "cpu_s": 0.5, "wall_s": 2.0},
        {"sent": 5, "cpu_s": 1.0, "wall_s": 2.0},
        {"received": 9, "last_receive": 1.0, "cpu_s": 0.2, "wall_s": 2.0},
        {"received": 0, "cpu_s": 1.0, "wall_s": 1.0},  # an idle connection holder
    ]
    assert scenarios.busiest(results) == {
        "busiest_producer_percent": 50.0,
        "busiest_consumer_percent": 10.0,
    }


# -- benchmarks/compare -----------------------------------------------------------------


def load_compare():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location("compare", BENCHMARKS / "compare.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["compare"] = module  # its dataclasses look their module up
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCHMARKS))
    return module


def test_compare_scenarios_are_valid_bench_arguments():
    compare = load_compare()
    parser = argparse.ArgumentParser()
    command.add_arguments(parser, "amqp://guest:guest@127.0.0.1:5672/%2F")
    names = [s.name for s in compare.SCENARIOS]
    assert len(names) == len(set(names))
    for scenario in compare.SCENARIOS:
        args = parser.parse_args(scenario.bench_args(1000))
        assert args.scenario == scenario.kind or scenario.kind == "messaging"


def test_compare_report_marks_what_a_broker_could_not_do(tmp_path):
    compare = load_compare()

    class Args:
        repeats, duration, backlog = 1, 1.0, 1000

    def run(rate, rss=None):
        return {
            "results": {"delivery_rate": rate, "rss_per_message_bytes": rss},
            "broker": {"cpu_percent": 50.0},
            "generator": {"busiest_producer_percent": 3.0, "busiest_consumer_percent": 7.0},
        }

    study = compare.Study.__new__(compare.Study)
    study.names = ["xivo-bus", "RabbitMQ", "GarageMQ"]
    study.args = Args
    chosen = [s for s in compare.SCENARIOS if s.name in ("persistent", "backlog")]
    study.runs = {
        "persistent": {"xivo-bus": [run(300.0)], "RabbitMQ": [run(200.0)], "GarageMQ": []},
        "backlog": {b: [run(None, 1500.0)] for b in study.names},
    }
    study.failures = {("persistent", "GarageMQ"): ("unconfirmed", "9 of 10 never confirmed")}
    study.startup_s = {b: [0.1] for b in study.names}
    study.idle_rss_kib = {b: 1000 for b in study.names}
    study.versions = {b: b for b in study.names}
    study.full_serve = study.profile = None
    text = compare._render(study, chosen, "benchmarks/compare", 60.0)
    row = next(line for line in text.splitlines() if line.startswith("| persistent ("))
    assert "300 msg/s | 200 msg/s | — (a) | 1.50× | – |" in row
    assert "(a) GarageMQ, publishes never confirmed" in text
    assert "1,000 messages of 1 KB in 1 queue" in text
    assert "| persistent | 50.00 % | 50.00 % | — (a) | 7 % |" in text
    out = tmp_path / "performance.md"
    out.write_text(f"intro\n{compare.BEGIN}\nold\n{compare.END}\noutro\n")
    compare._write(out, text)
    assert out.read_text().startswith("intro\n<!-- compare:begin -->\n## Figures")
    assert out.read_text().endswith("<!-- compare:end -->\noutro\n")


def test_compare_targets_judge_every_scenario_against_rabbitmq(tmp_path):
    compare = load_compare()
    study = compare.Study.__new__(compare.Study)
    study.names = ["xivo-bus", "RabbitMQ", "GarageMQ"]
    chosen = [s for s in compare.SCENARIOS if s.name in ("throughput", "latency", "backlog")]

    def run(results, rss):
        return {"results": results, "broker": {"rss_kib": rss}}

    study.runs = {
        "throughput": {
            "xivo-bus": [run({"delivery_rate": 150.0}, 100)],
            "RabbitMQ": [run({"delivery_rate": 100.0}, 200)],
            "GarageMQ": [run({"delivery_rate": 300.0}, 1000)],
        },
        "latency": {
            "xivo-bus": [run({"latency_us": {"p50": 70.0, "p99": 100.0}}, 100)],
            "RabbitMQ": [run({"latency_us": {"p50": 100.0, "p99": 100.0}}, 400)],
            "GarageMQ": [],
        },
        "backlog": {b: [] for b in study.names},
    }
    study.failures = {}
    study.startup_s = {b: [0.2] for b in study.names}
    study.idle_rss_kib = {"xivo-bus": 30, "RabbitMQ": 120, "GarageMQ": 20}
    rows = compare._targets(compare.Report(study), "xivo-bus", chosen)
    text = "\n".join(rows)
    assert "| throughput | delivery rate ≥ 1.5× | 1.50× | yes | 0.50× |" in text
    assert "| throughput | RSS at end ≤ 1/3 | 0.50× | **no** | 0.10× |" in text
    assert "| latency | latency p50 ≤ 0.7× | 0.70× | yes | – |" in text
    assert "| latency | latency p99 ≤ 0.7× | 1.00× | **no** | – |" in text
    assert "| backlog | RSS with the backlog ≤ 1/3 | not measured | – | – |" in text
    assert "| idle | RSS 2 s after start-up ≤ 1/3 | 0.25× | yes | 1.50× |" in text
    assert "| start-up | to accepting connections < 0.5 s | 0.20 s | yes | – |" in text
    assert "**4 of 7 met.**" in text


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
