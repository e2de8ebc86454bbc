#!/usr/bin/env python3
"""What the management API costs the broker: ``xivo-bus bench throughput`` with nobody
reading the API, then with the API polled every second as the dashboard polls it
(overview, queues, connections, channels, exchanges), the two taking turns; medians of the
repeats, for one publisher and for several. Writes the table between the markers of its
section in docs/performance.md. Run it as ``benchmarks/management_overhead.py``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from base64 import b64encode
from pathlib import Path

import brokers

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- management:begin -->", "<!-- management:end -->"
POLLED = ("overview", "queues", "connections", "channels", "exchanges")
AUTH = "Basic " + b64encode(b"guest:guest").decode()


class Poller(threading.Thread):
    """GETs the dashboard's API paths once a second until stopped; counts them."""

    def __init__(self, base: str):
        super().__init__(daemon=True)
        self.base = base
        self.stopped = threading.Event()
        self.requests = 0

    def run(self) -> None:
        while not self.stopped.wait(1.0):
            for path in POLLED:
                request = urllib.request.Request(
                    f"{self.base}/api/{path}", headers={"Authorization": AUTH}
                )
                with urllib.request.urlopen(request, timeout=10) as response:
                    response.read()
                self.requests += 1


def bench(broker: brokers.Ours, producers: int, duration: float, out: Path) -> tuple[float, float]:
    """Messages delivered a second, and the broker's CPU microseconds a message."""
    command = [
        sys.executable, "-m", "xivo_bus", "bench", "throughput",
        "--url", broker.url, "--broker-pid", str(broker.pid),
        "--producers", str(producers), "--duration", str(duration), "--json", str(out),
    ]  # fmt: skip
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, timeout=600)
    figures = json.loads(out.read_text())
    results = figures["results"]
    return results["delivery_rate"], 1e6 * figures["broker"]["cpu_s"] / results["received"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--producers", type=int, nargs="*", default=[1, 4])
    parser.add_argument("--output", default=str(ROOT / "docs" / "performance.md"))
    args = parser.parse_args()
    port = brokers.free_port()
    broker = brokers.Ours(["--no-cti", "--no-prometheus", "--management", f"127.0.0.1:{port}"])
    broker.start()
    base = f"http://127.0.0.1:{port}"
    work = Path(tempfile.mkdtemp(prefix="xivo-bus-mgmt-"))
    rows = []
    try:
        for producers in args.producers:
            rates: dict[str, list[float]] = {"idle": [], "polled": []}
            cpu: dict[str, list[float]] = {"idle": [], "polled": []}
            polls = 0
            for repeat in range(args.repeats):
                for mode in ("idle", "polled"):
                    poller = Poller(base) if mode == "polled" else None
                    if poller:
                        poller.start()
                    out = work / f"{producers}-{mode}-{repeat}.json"
                    rate, per_message = bench(broker, producers, args.duration, out)
                    if poller:
                        poller.stopped.set()
                        poller.join()
                        polls += poller.requests
                    rates[mode].append(rate)
                    cpu[mode].append(per_message)
                    print(
                        f"{producers} publisher(s), API {mode}, run {repeat + 1}/{args.repeats}: "
                        f"{rate:,.0f} msg/s, {per_message:.2f} µs of broker CPU a message",
                        flush=True,
                    )
            idle, polled = (statistics.median(rates[mode]) for mode in ("idle", "polled"))
            # each polled run against the idle run just before it: background noise
            # (other processes on the machine) moves both
            paired = statistics.median(
                b / a - 1 for a, b in zip(rates["idle"], rates["polled"], strict=True)
            )
            cpu_idle, cpu_polled = (statistics.median(cpu[mode]) for mode in ("idle", "polled"))
            rows.append((producers, idle, polled, paired, cpu_idle, cpu_polled, polls))
    finally:
        broker.stop()
        broker.cleanup()
    command = shlex.join(["benchmarks/management_overhead.py", *sys.argv[1:]])
    lines = [
        BEGIN,
        f"Measured {time.strftime('%Y-%m-%d')} with `{command}`: "
        f"`xivo-bus bench throughput` (transient, manual acks), medians of {args.repeats} runs "
        f"of {args.duration:g} s each, API idle and polled taking turns; polled = GET "
        f"{', '.join(f'/api/{path}' for path in POLLED)} every second.",
        "",
        "| publishers | API idle (msg/s) | API polled every second (msg/s) | change of "
        "medians | median change, run by run | broker CPU a message, idle → polled | requests |",
        "|---|---|---|---|---|---|---|",
    ]
    for producers, idle, polled, paired, cpu_idle, cpu_polled, polls in rows:
        change = (polled - idle) / idle * 100
        lines.append(
            f"| {producers} | {idle:,.0f} | {polled:,.0f} | {change:+.1f} % | "
            f"{paired * 100:+.1f} % | {cpu_idle:.2f} → {cpu_polled:.2f} µs | {polls} |"
        )
    lines.append(END)
    output = Path(args.output)
    text = output.read_text()
    if BEGIN in text:
        text = text[: text.index(BEGIN)] + "\n".join(lines) + text[text.index(END) + len(END) :]
    else:
        text += "\n## The management API's cost\n\n" + "\n".join(lines) + "\n"
    output.write_text(text)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
