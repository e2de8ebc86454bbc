"""``xivo-bus bench``: arguments and the entry point.

Only argparse is imported at module level: ``xivo_bus.cli`` builds this parser for every
command, and the load generator's modules are imported when a benchmark actually runs.
"""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser, url_default: str) -> None:
    parser.add_argument(
        "scenario",
        choices=["throughput", "fanout", "latency", "connections", "backlog"],
        help="throughput: producers and consumers on one queue (or --queues, published to "
        "in turn); fanout: one exchange, K queues; latency: end-to-end at a fixed rate; "
        "connections: idle memory and open/close rate; backlog: broker memory per queued "
        "message (--messages in all, no consumer)",
    )
    parser.add_argument("--url", default=url_default, help="AMQP URL of the broker under test")
    parser.add_argument(
        "--broker-pid",
        type=int,
        help="the broker's process id, to report its CPU time and memory "
        "(for RabbitMQ, the beam.smp process)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON here")
    load = parser.add_argument_group("load")
    load.add_argument("--producers", type=int, default=1, help="producer connections (1)")
    load.add_argument(
        "--consumers",
        type=int,
        help="consumers in all (default: one per queue); several on one queue compete for "
        "it, one for several queues consumes them all on one channel",
    )
    load.add_argument(
        "--queues",
        type=int,
        help="queues: fanout, queues bound (10); throughput and latency, queues the "
        "producers publish to in turn (1); backlog, as fanout when more than 1 (1)",
    )
    load.add_argument("--size", type=int, default=100, help="message body bytes (100)")
    load.add_argument(
        "--confirm",
        type=int,
        default=0,
        metavar="WINDOW",
        help="publisher confirms with at most WINDOW unconfirmed messages (0: off)",
    )
    load.add_argument("--persistent", action="store_true", help="durable queues, delivery_mode 2")
    load.add_argument("--prefetch", type=int, default=100, help="consumer prefetch (100; 0: none)")
    load.add_argument("--auto-ack", action="store_true", help="consume with no_ack")
    load.add_argument(
        "--multi-ack",
        type=int,
        default=1,
        metavar="N",
        help="ack with multiple=true every N deliveries (1: ack each delivery)",
    )
    load.add_argument(
        "--rate", type=float, default=1000.0, help="latency: messages/s per producer (1000)"
    )
    load.add_argument("--duration", type=float, default=10.0, help="seconds of publishing (10)")
    load.add_argument(
        "--messages",
        type=int,
        default=0,
        help="messages per producer instead of a duration (0: use --duration); "
        "backlog: messages in all (100000)",
    )
    load.add_argument(
        "--idle", type=int, default=1000, help="connections: idle connections to hold (1000)"
    )
    load.add_argument(
        "--processes",
        type=int,
        default=2,
        help="load generator processes (2; producers and consumers get their own)",
    )
    load.add_argument(
        "--drain-timeout",
        type=float,
        default=10.0,
        help="give up waiting for deliveries or confirms after this many idle seconds (10)",
    )
    load.add_argument(
        "--drain",
        action="store_true",
        help="backlog: then consume it all (--consumers, --prefetch), for the drain rate "
        "and the broker's memory once drained",
    )
    load.add_argument("--timeout", type=float, default=600.0, help="longest run in seconds")


def main(args: argparse.Namespace) -> int:
    from xivo_bus.bench import report, runner, scenarios, wire

    progress = report.Progress(args.scenario)
    try:
        document = scenarios.run(args, progress)
    except (runner.BenchError, wire.AMQPError, OSError, TimeoutError) as error:
        progress.finish()
        print(f"xivo-bus bench: {error}", file=sys.stderr)
        return 1
    progress.finish()
    print(report.table(document), flush=True)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(document, out, indent=2)
            out.write("\n")
    results = document["results"]
    return 2 if results.get("lost") or results.get("unconfirmed") else 0
