#!/usr/bin/env python3
"""Does a long backlog fit in memory? One publisher (confirms) queues millions of 1 KB
messages nobody consumes (`xivo-bus bench backlog --drain`); then consumers drain them.
Broker RSS with the backlog and once drained, publish and drain rates, and whether any
publisher was blocked (connection.blocked), on xivo-bus and on a private RabbitMQ node, the
two taking turns, medians of the repeats. Writes its table between the markers of its
section in docs/reliability.md. Run it as ``benchmarks/backlog_paging.py``.
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
COLUMNS = {
    "publish rate (msg/s)": ("publish_rate", 1),
    "RSS with the backlog (MiB)": ("rss_with_backlog_kib", 1 / 1024),
    "publishers blocked (s)": ("blocked_s", 1),
    "drain rate (msg/s)": ("drain_rate", 1),
    "RSS once drained (MiB)": ("rss_after_drain_kib", 1 / 1024),
}


def run(broker, messages: int, out: Path) -> dict:
    command = [
        sys.executable, "-m", "xivo_bus", "bench", "backlog", "--drain",
        "--size", "1024", "--messages", str(messages), "--prefetch", "1000",
        "--url", broker.url, "--broker-pid", str(broker.pid), "--json", str(out),
        "--timeout", "3600", "--drain-timeout", "120",
    ]  # fmt: skip
    subprocess.run(command, check=True, timeout=7200)
    results = json.loads(out.read_text())["results"]
    if results["lost"] or results["drained"] < results["queued"]:
        raise SystemExit(f"{broker.name}: messages lost: {results}")
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--messages", type=int, default=5_000_000)
    parser.add_argument("--output", default=str(ROOT / "docs" / "reliability.md"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="xivo-bus-paging-"))
    peers = [brokers.Ours(), brokers.RabbitMQ()]
    figures: dict[str, dict[str, list[float]]] = {}
    try:
        for repeat in range(args.repeats):
            for broker in peers:
                broker.start()
                try:
                    results = run(broker, args.messages, work / "backlog.json")
                finally:
                    broker.stop()
                row = figures.setdefault(broker.name, {})
                for column, (key, scale) in COLUMNS.items():
                    row.setdefault(column, []).append(results.get(key, 0) * scale)
                print(
                    f"run {repeat + 1}/{args.repeats} {broker.name}: "
                    f"{results['rss_with_backlog_kib'] / 1024:,.0f} MiB with the backlog, "
                    f"drained at {results['drain_rate']:,.0f} msg/s",
                    flush=True,
                )
    finally:
        for broker in peers:
            broker.stop()
            broker.cleanup()
    command = shlex.join(["benchmarks/backlog_paging.py", *sys.argv[1:]])
    caption = (
        f"Measured {time.strftime('%Y-%m-%d')} with `{command}`: {args.messages:,} messages "
        f"of 1 KB published with confirms into one queue nobody consumes, then drained by "
        f"one consumer (prefetch 1000, an ack per message); each broker with its defaults "
        f"(RabbitMQ: classic queue, memory watermark 40 %); medians of {args.repeats} "
        f"run{'s' if args.repeats > 1 else ''}."
    )
    rows = {
        name: [f"{statistics.median(row[column]):,.0f}" for column in COLUMNS]
        for name, row in figures.items()
    }
    lines = table(caption, list(COLUMNS), rows)
    write_section(Path(args.output), "paging", "Long backlogs", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
