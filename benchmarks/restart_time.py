#!/usr/bin/env python3
"""Restart time of the broker with many persistent messages stored.

    .venv/bin/python benchmarks/restart_time.py [--messages 1000000] [--size 100]

Fills a durable queue with persistent messages (confirmed), stops the broker with
SIGTERM, starts it again on the same data directory and times how long it takes until it
accepts connections; then checks the queue holds them all. Repeats the restart 3 times
and prints the median.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from amqp_raw import RawClient  # noqa: E402
from conftest import READY  # noqa: E402
from pamqp import commands  # noqa: E402

from xivo_bus.amqp import frames  # noqa: E402

QUEUE = "restart-time"


def serve(data_dir: str, port: int = 0) -> tuple[subprocess.Popen, int, float]:
    started = time.monotonic()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "xivo_bus",
            "serve",
            "--no-cti",
            "--port",
            str(port),
            "--data-dir",
            data_dir,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    elapsed = time.monotonic() - started
    match = READY.search(line)
    if not match:
        raise SystemExit(f"broker did not start: {line!r}")
    return proc, int(match.group(2)), elapsed


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def fill(port: int, count: int, size: int) -> None:
    client = RawClient("127.0.0.1", port, timeout=60)
    client.handshake()
    client.open_channel(1)
    client.send(1, commands.Queue.Declare(queue=QUEUE, durable=True))
    client.expect(commands.Queue.DeclareOk, 1)
    client.send(1, commands.Confirm.Select())
    client.expect(commands.Confirm.SelectOk, 1)
    publish = b"".join(
        frames.content_frames(
            1,
            frames.encode_method(commands.Basic.Publish(exchange="", routing_key=QUEUE)),
            commands.Basic.Properties(delivery_mode=2).marshal(),
            b"m" * size,
            131072,
        )
    )
    window = 5000
    sent = confirmed = 0
    started = time.monotonic()
    while confirmed < count:
        burst = min(window - (sent - confirmed), count - sent)
        if burst > 0:
            client.send_raw(publish * burst)
            sent += burst
        _, ack = client.recv_frame()
        confirmed = ack.delivery_tag
        if confirmed % 100_000 < window:
            rate = confirmed / (time.monotonic() - started)
            print(
                f"\r  {confirmed:>9} confirmed ({rate:,.0f}/s)", end="", file=sys.stderr, flush=True
            )
    print(file=sys.stderr)
    client.close()


def queue_length(port: int) -> int:
    client = RawClient("127.0.0.1", port, timeout=30)
    client.handshake()
    client.open_channel(1)
    client.send(1, commands.Queue.Declare(queue=QUEUE, durable=True, passive=True))
    count = client.expect(commands.Queue.DeclareOk, 1).message_count
    client.close()
    return count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--size", type=int, default=100, help="body size in bytes")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="xivo-bus-restart-") as data_dir:
        proc, port, _ = serve(data_dir)
        print(
            f"filling {QUEUE} with {args.messages} persistent messages of {args.size} bytes",
            file=sys.stderr,
        )
        fill(port, args.messages, args.size)
        proc.terminate()
        proc.wait()
        size = sum(p.stat().st_size for p in Path(data_dir).iterdir())
        times, memory = [], []
        for attempt in range(args.repeats):
            proc, port, elapsed = serve(data_dir)
            held = queue_length(port)
            assert held == args.messages, f"{held} messages after restart"
            times.append(elapsed)
            memory.append(rss_mib(proc.pid))
            print(
                f"restart {attempt + 1}: {elapsed:.2f} s to accept connections, "
                f"{memory[-1]:.0f} MiB RSS, {held} messages",
                file=sys.stderr,
            )
            proc.terminate()
            proc.wait()
    print(
        f"{args.messages} persistent messages ({size / 2**20:.0f} MiB on disk): restart "
        f"median {statistics.median(times):.2f} s, RSS {statistics.median(memory):.0f} MiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
