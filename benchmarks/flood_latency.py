#!/usr/bin/env python3
"""Does one flood slow everyone? A publisher floods a queue nobody consumes (`xivo-bus bench
backlog`) while an unrelated client measures round-trip latency at 100 msg/s on its own
queue (`xivo-bus bench latency`); the same on xivo-bus and on a private RabbitMQ node, the
two taking turns, medians of the repeats. Writes its table between the markers of its
section in docs/reliability.md. Run it as ``benchmarks/flood_latency.py``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import brokers
from sections import table, write_section

ROOT = Path(__file__).resolve().parent.parent


def bench(*args: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "xivo_bus", "bench", *args]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def latency(url: str, seconds: float, out: Path) -> dict:
    probe = bench("latency", "--rate", "100", "--duration", str(seconds), "--url", url,
                  "--json", str(out))  # fmt: skip
    probe.wait(timeout=600)
    return json.loads(out.read_text())["results"]["latency_us"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--messages", type=int, default=2_000_000, help="the flood's size")
    parser.add_argument("--output", default=str(ROOT / "docs" / "reliability.md"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="xivo-bus-flood-"))
    peers = [
        brokers.Ours(["--no-cti", "--no-prometheus", "--no-management"]),
        brokers.RabbitMQ(),
    ]
    figures: dict[str, dict[str, list[float]]] = {}
    try:
        for repeat in range(args.repeats):
            for broker in peers:
                broker.start()
                try:
                    quiet = latency(broker.url, args.seconds, work / "quiet.json")
                    flood = bench("backlog", "--messages", str(args.messages), "--url", broker.url)
                    time.sleep(1)  # the flood is under way
                    loaded = latency(broker.url, args.seconds, work / "loaded.json")
                    flood.kill()
                    flood.wait()
                finally:
                    broker.stop()
                row = figures.setdefault(broker.name, {})
                for label, seen in (("quiet", quiet), ("flood", loaded)):
                    for key in ("p50", "p99", "max"):
                        row.setdefault(f"{label} {key}", []).append(seen[key] / 1000)
                print(
                    f"run {repeat + 1}/{args.repeats} {broker.name}: p99 "
                    f"{quiet['p99'] / 1000:.1f} ms quiet, {loaded['p99'] / 1000:.1f} ms under "
                    "the flood",
                    flush=True,
                )
    finally:
        for broker in peers:
            broker.stop()
            broker.cleanup()
    command = shlex.join(["benchmarks/flood_latency.py", *sys.argv[1:]])
    columns = ["quiet p50", "quiet p99", "flood p50", "flood p99", "flood max"]
    caption = (
        f"Measured {time.strftime('%Y-%m-%d')} with `{command}`: round-trip latency (ms) of "
        f"100 msg/s on one queue, alone and while another client floods a queue nobody "
        f"consumes ({args.messages:,} messages, confirms); medians of {args.repeats} runs."
    )
    rows = {
        name: [f"{statistics.median(row[column]):.2f}" for column in columns]
        for name, row in figures.items()
    }
    lines = table(caption, columns, rows)
    write_section(Path(args.output), "flood", "One flood and everyone else", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
