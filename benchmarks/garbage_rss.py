#!/usr/bin/env python3
"""Does memory creep up with bad clients? Rounds of 2,000 connections (200 at a time) that
send garbage after the protocol header, a start-ok with capabilities that are not a table
and then an oversized frame, or nothing (and go), against xivo-bus and a private RabbitMQ
node; the broker's RSS after each round. A leak grows round after round; an allocator
keeping what it once used levels off. Writes its table between the markers of its
section in docs/reliability.md. Run it as ``benchmarks/garbage_rss.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shlex
import sys
import time
from pathlib import Path

import brokers
from pamqp import commands, frame
from sections import table, write_section

ROOT = Path(__file__).resolve().parent.parent
PER_ROUND = 2000
AT_ONCE = 200


async def bad_client(port: int, kind: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"AMQP\x00\x00\x09\x01")
        await reader.read(4096)  # connection.start
        if kind == 0:
            writer.write(os.urandom(random.randint(1, 300)))
        elif kind == 1:
            start_ok = commands.Connection.StartOk(
                client_properties={"capabilities": "not a table"},
                mechanism="PLAIN",
                response="\0guest\0guest",
                locale="en_US",
            )
            writer.write(frame.marshal(start_ok, 0))
            writer.write(b"\x01\x00\x00\xff\xff\xff\xff" + os.urandom(50))
        else:  # silent, then gone
            await asyncio.sleep(0.5)
            return
        await asyncio.wait_for(reader.read(), 5)  # until the broker closes
    except (OSError, TimeoutError):
        pass
    finally:
        writer.close()


async def one_round(port: int) -> None:
    limit = asyncio.Semaphore(AT_ONCE)

    async def guarded(index: int) -> None:
        async with limit:
            await bad_client(port, index % 3)

    await asyncio.gather(*(guarded(i) for i in range(PER_ROUND)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--output", default=str(ROOT / "docs" / "reliability.md"))
    args = parser.parse_args()
    shown = sorted({1, 2, 5, 10, args.rounds // 2, args.rounds} - {0})
    rows = {}
    for broker in (brokers.Ours(), brokers.RabbitMQ()):
        broker.start()
        try:
            time.sleep(2)
            mib = [brokers.rss_kib(broker.pid) / 1024]
            for number in range(1, args.rounds + 1):
                asyncio.run(one_round(broker.port))
                time.sleep(1)
                mib.append(brokers.rss_kib(broker.pid) / 1024)
                print(f"{broker.name} round {number}: {mib[-1]:.1f} MiB", flush=True)
        finally:
            broker.stop()
            broker.cleanup()
        rows[broker.name] = mib
    half = args.rounds // 2
    command = shlex.join(["benchmarks/garbage_rss.py", *sys.argv[1:]])
    columns = ["at rest", *(f"after {n * PER_ROUND:,}" for n in shown), "last half, per round"]
    caption = (
        f"Measured {time.strftime('%Y-%m-%d')} with `{command}`: broker RSS (MiB) at rest and "
        f"after rounds of {PER_ROUND:,} connections sending garbage ({AT_ONCE} at a time); "
        "the last column is the growth per round over the second half of the run."
    )
    cells = {}
    for name, mib in rows.items():
        slope = (mib[-1] - mib[half]) / max(1, args.rounds - half)
        cells[name] = [f"{mib[0]:.1f}", *(f"{mib[n]:.1f}" for n in shown), f"{slope:+.2f}"]
    lines = table(caption, columns, cells)
    write_section(Path(args.output), "garbage", "Memory after many bad clients", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
