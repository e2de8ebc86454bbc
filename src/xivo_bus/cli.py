"""The ``xivo-bus`` command: argument parsing and wiring, no logic of its own."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from xivo_bus import __version__
from xivo_bus.broker.server import DEFAULT_HOST, DEFAULT_PORT, Broker


def _install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def _serve(args: argparse.Namespace) -> int:
    broker = Broker()
    try:
        host, port = await broker.start(args.host, args.port)
    except OSError as error:
        print(
            f"xivo-bus: cannot listen on {args.host}:{args.port}: {error.strerror}", file=sys.stderr
        )
        return 1
    print(f"xivo-bus {__version__}: accepting AMQP connections on {host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    print("xivo-bus: shutting down", flush=True)
    await broker.close()
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
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(message)s")
    if args.command == "serve":
        _install_uvloop()
        return asyncio.run(_serve(args))
    return 2


if __name__ == "__main__":
    sys.exit(main())
