"""The ``xivo-bus`` command: argument parsing and wiring, no logic of its own."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from datetime import datetime
from pathlib import Path

from xivo_bus import __version__
from xivo_bus.broker.server import DEFAULT_HOST, DEFAULT_PORT, Broker
from xivo_bus.broker.store import StoreError
from xivo_bus.paths import default_data_dir

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"


def _install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def _fail(message: str) -> int:
    print(f"xivo-bus: {message}", file=sys.stderr)
    return 1


def _stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM; install it before announcing readiness."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def _serve(args: argparse.Namespace) -> int:
    stop = _stop_on_signals()
    data_dir = None if args.in_memory else Path(args.data_dir)
    broker = Broker(data_dir, args.max_store_size)
    try:
        host, port = await broker.start(args.host, args.port)
    except StoreError as error:
        return _fail(str(error))
    except OSError as error:
        return _fail(f"cannot listen on {args.host}:{args.port}: {error.strerror}")
    print(f"xivo-bus {__version__}: accepting AMQP connections on {host}:{port}", flush=True)
    if broker.recovered is not None:
        recovered = broker.recovered
        messages = sum(len(queue.entries) for queue in recovered.queues)
        print(
            f"xivo-bus: data in {data_dir} ({len(recovered.queues)} durable queues, "
            f"{messages} messages recovered)",
            flush=True,
        )
        for skipped in recovered.skipped:
            print(f"xivo-bus: damaged data skipped: {skipped}", file=sys.stderr, flush=True)
    else:
        print("xivo-bus: in memory only: nothing survives a restart", flush=True)
    await stop.wait()
    print("xivo-bus: shutting down", flush=True)
    await broker.close()
    return 0


def _events(args: argparse.Namespace) -> int:
    from xivo_bus import events

    if args.what == "schema":
        document = {
            "schemas": {name: events.json_schema(cls) for name, cls in events.CATALOGUE.items()},
            "asyncapi": events.asyncapi(),
        }
        print(json.dumps(document, indent=2))
        return 0
    for name, cls in events.CATALOGUE.items():
        properties = cls.data_schema()["properties"]
        fields = ", ".join(f"{field}: {_schema_type(spec)}" for field, spec in properties.items())
        print(f"{name}\n  exchange {cls.exchange} ({cls.exchange_type}), routing key {name}")
        print(f"  data: {{{fields}}}\n  {cls.description}")
    return 0


def _schema_type(spec: dict) -> str:
    """A short reading of a JSON Schema type: ``integer``, ``object of string``."""
    kind = spec.get("type", "any")
    if kind == "object" and isinstance(spec.get("additionalProperties"), dict):
        return f"object of {_schema_type(spec['additionalProperties'])}"
    return kind


async def _publish(args: argparse.Namespace) -> int:
    from xivo_bus import client, events

    try:
        data = json.loads(args.data)
    except ValueError as error:
        return _fail(f"DATA_JSON is not valid JSON: {error}")
    try:
        event = events.make(args.event, data)
    except events.EventError as error:
        return _fail(str(error))
    publisher = client.Publisher(args.url, timeout=args.timeout)
    try:
        await publisher.publish(event)
    except client.PublishError as error:
        return _fail(f"not published: {error}")
    finally:
        publisher.timeout = 0.5
        await publisher.close()
    print(f"published {event.name} to {event.exchange}", flush=True)
    return 0


def _print_event(event, as_json: bool) -> None:
    if as_json:
        line = json.dumps({"name": event.name, "data": event.data}, ensure_ascii=False)
    else:
        stamp = datetime.now().strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        data = json.dumps(event.data, ensure_ascii=False)
        line = f"{stamp}  {event.name}  {data}"
    print(line, flush=True)


async def _listen(args: argparse.Namespace) -> int:
    from xivo_bus import client, events

    stop = _stop_on_signals()
    names = args.events or list(events.CATALOGUE)
    consumer = client.Consumer(args.url, timeout=args.timeout)
    for name in names:
        consumer.subscribe(name, lambda event: _print_event(event, args.json))
    await consumer.start()
    where = client.safe_url(args.url)
    try:
        await asyncio.wait_for(consumer.wait_connected(), args.timeout)
    except TimeoutError:
        print(f"xivo-bus: no answer from {where} yet; still trying", file=sys.stderr, flush=True)
    else:
        print(
            f"listening for {', '.join(names)} on {where} (Ctrl-C to stop)",
            file=sys.stderr,
            flush=True,
        )
    await stop.wait()
    await consumer.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="xivo-bus", description="The XiVO message bus.")
    parser.add_argument("--version", action="version", version=f"xivo-bus {__version__}")
    parser.add_argument(
        "--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the AMQP broker in the foreground")
    serve.add_argument(
        "--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})"
    )
    serve.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"AMQP port (default {DEFAULT_PORT}; 0 picks a free one)",
    )
    serve.add_argument(
        "--data-dir",
        default=str(default_data_dir()),
        help=f"where durable queues and persistent messages are kept (default {default_data_dir()})",
    )
    serve.add_argument(
        "--in-memory", action="store_true", help="keep nothing on disk (no --data-dir)"
    )
    serve.add_argument(
        "--max-store-size",
        type=int,
        metavar="BYTES",
        help="largest size of the store on disk; beyond it publishers are blocked until "
        "consumers make room (default: no limit but the disk's)",
    )

    url_default = os.environ.get("XIVO_BUS_URL", DEFAULT_URL)
    url_help = f"AMQP URL of the bus (default $XIVO_BUS_URL or {DEFAULT_URL})"

    listing = commands.add_parser("events", help="list the event catalogue")
    listing.add_argument(
        "what",
        nargs="?",
        choices=["list", "schema"],
        default="list",
        help="'schema' prints JSON Schemas and an AsyncAPI document",
    )

    publish = commands.add_parser("publish", help="validate and publish one event")
    publish.add_argument("event", metavar="EVENT", help="event name, e.g. call_form_result")
    publish.add_argument("data", metavar="DATA_JSON", help="the event's data as JSON")
    publish.add_argument("--url", default=url_default, help=url_help)
    publish.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        help="seconds to wait for the broker's confirm (default 10)",
    )

    listen = commands.add_parser("listen", help="print events as they arrive")
    listen.add_argument(
        "events",
        metavar="EVENT",
        nargs="*",
        help="event names (default: every event of the catalogue)",
    )
    listen.add_argument("--url", default=url_default, help=url_help)
    listen.add_argument("--json", action="store_true", help="one JSON object per line")
    listen.add_argument(
        "--timeout", type=float, default=10.0, help="connection timeout in seconds (default 10)"
    )

    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(message)s")
    if args.log_level != "DEBUG":
        # The AMQP client libraries log every failed connection attempt; our own
        # messages already say what matters.
        for name in ("aiormq", "aio_pika"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    if args.command == "publish" and args.log_level == "WARNING":
        logging.getLogger("xivo_bus.client").setLevel(logging.ERROR)
    if args.command == "events":
        return _events(args)
    _install_uvloop()
    runner = {"serve": _serve, "publish": _publish, "listen": _listen}[args.command]
    return asyncio.run(runner(args))


if __name__ == "__main__":
    sys.exit(main())
