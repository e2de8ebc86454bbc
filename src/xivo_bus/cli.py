"""The ``xivo-bus`` command: argument parsing and wiring, no logic of its own."""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import json
import logging
import os
import signal
import sys
from datetime import datetime
from pathlib import Path

from xivo_bus import __version__, config
from xivo_bus.broker.alarms import default_memory_limit
from xivo_bus.broker.consumer_timeout import DEFAULT_CONSUMER_TIMEOUT
from xivo_bus.broker.control import SOCKET_NAME
from xivo_bus.broker.listeners import (
    COMMON_NAME,
    SUBJECT_ALTERNATIVE_NAME,
    Listener,
    format_address,
    parse_address,
    tls_context,
)
from xivo_bus.broker.server import DEFAULT_HOST, DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_PORT, Broker
from xivo_bus.broker.session.server_state import Tuning
from xivo_bus.broker.store import StoreError
from xivo_bus.broker.users import DEFAULT_USER, DEFAULT_VHOST
from xivo_bus.config import ConfigError
from xivo_bus.config import load as load_config
from xivo_bus.ctl import add_arguments as add_ctl_arguments
from xivo_bus.ctl import main as ctl_main
from xivo_bus.management.prometheus import MetricsServer
from xivo_bus.management.server import DEFAULT_INTERVAL, ManagementServer
from xivo_bus.paths import default_data_dir

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
DEFAULT_HTTP = "127.0.0.1:9527"  # the call forms' web service
DEFAULT_CTI = "127.0.0.1:5003"  # XiVO desktop clients (CTI protocol)
DEFAULT_CTI_TLS = "127.0.0.1:5013"  # the same over TLS from the first byte


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


def _listening(host: str, port: int, protocol: str, purpose: str) -> dict:
    return {"interface": host, "port": port, "protocol": protocol, "purpose": purpose}


async def _serve(args: argparse.Namespace) -> int:
    stop = _stop_on_signals()
    try:
        listeners = _listeners(args)
    except ValueError as error:
        return _fail(str(error))
    data_dir = None if args.in_memory else Path(args.data_dir)
    control_socket = args.ctl_socket or (None if data_dir is None else data_dir / SOCKET_NAME)
    broker = Broker(
        data_dir,
        args.max_store_size,
        consumer_timeout=args.consumer_timeout,
        max_message_size=args.max_message_size,
        memory_limit=args.memory_limit,
        control_socket=Path(control_socket) if control_socket else None,
        loopback_users=tuple(name for name in args.loopback_users.split(",") if name),
        tuning=Tuning(
            channel_max=args.channel_max,
            frame_max=args.frame_max,
            heartbeat=args.heartbeat,
            handshake_timeout=args.handshake_timeout,
            cert_login_from=args.ssl_cert_login_from,
        ),
        default_user=(args.default_user, args.default_pass),
        default_vhost=args.default_vhost,
    )
    try:
        bound = await broker.start(listeners)
    except StoreError as error:
        return _fail(str(error))
    except OSError as error:
        return _fail(f"cannot listen: {error.strerror or error}")
    listening = broker.admin.listeners  # for `xivo-bus ctl status`
    for listener, host, port in bound:
        print(
            f"xivo-bus {__version__}: accepting {listener.scheme} connections on "
            f"{format_address(host, port)}",
            flush=True,
        )
        tls = listener.tls is not None
        purpose = "AMQP 0-9-1 over TLS" if tls else "AMQP 0-9-1"
        listening.append(_listening(host, port, "amqp/ssl" if tls else "amqp", purpose))
    plain = [(host, port) for listener, host, port in bound if listener.tls is None]
    if broker.recovered is not None:
        recovered = broker.recovered
        messages = sum(queue.messages for queue in recovered.queues)
        print(
            f"xivo-bus: data in {data_dir} ({len(recovered.queues)} durable queues, "
            f"{messages} messages recovered)",
            flush=True,
        )
        for skipped in recovered.skipped:
            print(f"xivo-bus: damaged data skipped: {skipped}", file=sys.stderr, flush=True)
    else:
        print("xivo-bus: in memory only: nothing survives a restart", flush=True)
    metrics = None
    if not args.no_prometheus:
        try:
            metrics = MetricsServer(broker.state, *parse_address(args.prometheus))
            host, port = await metrics.start()
            where = format_address(host, port)
            print(f"xivo-bus: Prometheus metrics on http://{where}/metrics", flush=True)
            purpose = "Prometheus exporter API over HTTP"
            listening.append(_listening(host, port, "http/prometheus", purpose))
        except (ValueError, OSError) as error:
            metrics = None
            print(f"xivo-bus: Prometheus metrics not served: {error}", file=sys.stderr)
    management = None
    if not args.no_management:
        try:
            management = ManagementServer(
                broker.state,
                broker.admin,
                bound,
                *parse_address(args.management),
                interval=args.collect_statistics_interval,
                data_dir=None if data_dir is None else str(data_dir),
            )
            url = await management.start()
            print(f"xivo-bus: management API and dashboard on {url}", flush=True)
            http = management.http
            listening.append(_listening(http.host, http.port, "http", "HTTP API"))
        except (ValueError, OSError) as error:
            management = None
            print(f"xivo-bus: management API not served: {error}", file=sys.stderr)
    # What exists now lives for the whole run: keep the collector off it, and collect
    # less often (a broker allocates a lot, and rarely makes reference cycles).
    gc.freeze()
    gc.set_threshold(100_000, 50, 1000)
    cti = None
    if not args.no_cti and not plain:
        print("xivo-bus: call forms not started: no plain AMQP listener", file=sys.stderr)
    elif not args.no_cti:
        # The call forms publish to this broker over AMQP, as they would to any other.
        cti = await _start_cti(_loopback_url(*plain[0]), args)
    await stop.wait()
    print("xivo-bus: shutting down", flush=True)
    if metrics is not None:
        metrics.close()
    if management is not None:
        await management.close()
    if cti is not None:
        await cti.close()
    await broker.close()
    return 0


DEFAULT_PROMETHEUS = "127.0.0.1:15692"  # RabbitMQ's prometheus.tcp.port, on loopback
DEFAULT_MANAGEMENT = "127.0.0.1:15672"  # RabbitMQ's management.tcp.port, on loopback


def _option(convert):
    """A config converter as an argparse type: its reason becomes argparse's message."""

    def parse(text: str):
        try:
            return convert(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return parse


def _listeners(args: argparse.Namespace) -> list[Listener]:
    """Plain listeners first (--listen, else --host/--port), then TLS ones."""
    plain = [Listener(*parse_address(text)) for text in args.listen] or [
        Listener(args.host, args.port)
    ]
    if not args.ssl_listen:
        return plain
    if not args.ssl_certfile:
        raise ValueError("--ssl-listen needs --ssl-certfile (and --ssl-keyfile)")
    context = tls_context(
        args.ssl_certfile,
        args.ssl_keyfile,
        args.ssl_cacertfile,
        verify_peer=args.ssl_verify == "verify_peer",
        fail_if_no_peer_cert=args.ssl_fail_if_no_peer_cert,
    )
    return plain + [Listener(*parse_address(text), context) for text in args.ssl_listen]


def _loopback_url(host: str, port: int) -> str:
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"amqp://guest:guest@{format_address(host, port)}/%2F"


def _cti_listeners(args: argparse.Namespace) -> list[tuple[str, int, object]]:
    """The CTI listeners asked for, as (host, port, TLS context or None): --cti-listen,
    and --cti-tls-listen (implied by --cti-certfile) with the CTI certificate, else the
    broker's (``serve --ssl-certfile``)."""
    listeners: list[tuple[str, int, object]] = [(*parse_address(args.cti_listen), None)]
    tls_listen = args.cti_tls_listen or (DEFAULT_CTI_TLS if args.cti_certfile else None)
    if tls_listen:
        certfile = args.cti_certfile or getattr(args, "ssl_certfile", None)
        keyfile = args.cti_keyfile if args.cti_certfile else getattr(args, "ssl_keyfile", None)
        if not certfile:
            raise ValueError("--cti-tls-listen needs --cti-certfile (or the broker's TLS files)")
        listeners.append((*parse_address(tls_listen), tls_context(certfile, keyfile)))
    return listeners


async def _start_cti(url: str, args: argparse.Namespace, required: bool = False):
    """Start the call forms and the CTI listeners; print where. A failure is an error if
    ``required``, else a warning (``serve`` keeps the broker running without them)."""
    http, data_dir = args.http, Path(args.data_dir)
    # The web stack takes a while to import: do it in a thread, so that the broker
    # already listening goes on answering meanwhile.
    server = await asyncio.get_running_loop().run_in_executor(
        None, importlib.import_module, "xivo_bus.cti.server"
    )
    CtiServer, CtiStartError, parse_host_port = (  # noqa: N806
        server.CtiServer,
        server.CtiStartError,
        server.parse_host_port,
    )

    try:
        host, port = parse_host_port(http)
        cti = CtiServer(url, host, port, data_dir)
        await cti.start()
    except (ValueError, CtiStartError) as error:
        if required:
            raise
        print(f"xivo-bus: call forms not started: {error}", file=sys.stderr, flush=True)
        return None
    print(f"xivo-bus: call forms on {cti.url} (forms: {cti.forms_source})", flush=True)
    if not cti.state.users.all():
        print(
            f"xivo-bus: no users yet in {cti.state.users.path}; "
            "add one with: xivo-bus users add LOGIN",
            file=sys.stderr,
            flush=True,
        )
    try:
        for host, port, tls in _cti_listeners(args):
            host, port = await cti.listen_cti(host, port, tls)
            over = " over TLS" if tls is not None else ""
            print(f"xivo-bus: CTI clients{over} on {format_address(host, port)}", flush=True)
    except (ValueError, CtiStartError) as error:
        if required:
            await cti.close()
            raise
        print(f"xivo-bus: CTI clients not served: {error}", file=sys.stderr, flush=True)
    return cti


async def _cti(args: argparse.Namespace) -> int:
    from xivo_bus.cti.server import CtiStartError

    stop = _stop_on_signals()
    try:
        cti = await _start_cti(args.url, args, required=True)
    except (ValueError, CtiStartError) as error:
        return _fail(str(error))
    await stop.wait()
    await cti.close()
    return 0


def _add_cti_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cti-listen",
        default=DEFAULT_CTI,
        metavar="HOST:PORT",
        help=f"where XiVO desktop clients connect, CTI protocol (default {DEFAULT_CTI}; "
        "port 0 picks a free one)",
    )
    parser.add_argument(
        "--cti-tls-listen",
        metavar="HOST:PORT",
        help="also accept them over TLS from the first byte, as XiVO's port 5013 "
        f"(default {DEFAULT_CTI_TLS} when --cti-certfile is given)",
    )
    parser.add_argument("--cti-certfile", metavar="PEM", help="the CTI TLS certificate (chain)")
    parser.add_argument("--cti-keyfile", metavar="PEM", help="its private key")


def _cti_sheet(args: argparse.Namespace) -> int:
    """``xivo-bus cti sheet``: publish a call_form_request, as ``publish`` would."""
    variables = {}
    for item in args.variables:
        name, sep, value = item.partition("=")
        if not sep or not name:
            return _fail(f"{item!r} is not NAME=VALUE")
        variables[name] = value
    data = {"user_id": args.user, "queue": args.queue, "form": args.form}
    data.update(channel=args.channel, variables=variables)
    args.event = "call_form_request"
    args.data = json.dumps({key: value for key, value in data.items() if value is not None})
    _install_uvloop()
    return asyncio.run(_publish(args))


def _users(args: argparse.Namespace) -> int:
    from xivo_bus.cti.users import UserError, UserStore

    store = UserStore(Path(args.data_dir))
    try:
        if args.action == "list":
            for user in store.all():
                extra = "\tcti-client" if user.cti_password is not None else ""
                extra += f"\tqueues={','.join(user.queues)}" if user.queues else ""
                print(f"{user.id}\t{user.login}\t{user.name}{extra}")
            return 0
        if args.action == "remove":
            user = store.remove(args.login)
            print(f"removed user {user.login} (id {user.id})")
            return 0
        password = _read_password(args.password_stdin)
        if password is None:
            return _fail("the passwords do not match")
        if args.action == "password":
            user = store.set_password(args.login, password, cti_client=args.cti_client)
            print(f"changed the password of {user.login} (id {user.id})")
            return 0
        user = store.add(
            args.login,
            password,
            user_id=args.id,
            name=args.name or "",
            cti_client=args.cti_client,
            queues=args.queue,
        )
    except UserError as error:
        return _fail(str(error))
    print(f"added user {user.login} (id {user.id}) to {store.path}")
    return 0


def _read_password(from_stdin: bool) -> str | None:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    import getpass

    password = getpass.getpass("Password: ")
    return password if getpass.getpass("Again: ") == password else None


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
    if "anyOf" in spec:  # optional fields are "X or null": null says nothing here
        kinds = [_schema_type(item) for item in spec["anyOf"] if item.get("type") != "null"]
        return " or ".join(kinds)
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

    http_help = f"where the call forms listen (default {DEFAULT_HTTP}; port 0 picks a free one)"
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
        "--listen",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="an AMQP listener ([ADDRESS]:PORT for IPv6, PORT alone: every interface); "
        "repeat for more; replaces --host/--port",
    )
    serve.add_argument(
        "--ssl-listen",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="an AMQP over TLS listener (5671 by convention; TLS 1.2+); repeat for more",
    )
    serve.add_argument("--ssl-certfile", metavar="PEM", help="the server certificate (chain)")
    serve.add_argument("--ssl-keyfile", metavar="PEM", help="its private key")
    serve.add_argument("--ssl-cacertfile", metavar="PEM", help="CA(s) client certificates need")
    serve.add_argument(
        "--ssl-verify",
        choices=["verify_none", "verify_peer"],
        default="verify_none",
        help="ask for client certificates and check them (then SASL EXTERNAL is offered, "
        "the certificate's CN being the user)",
    )
    serve.add_argument(
        "--ssl-fail-if-no-peer-cert",
        action="store_true",
        help="with verify_peer: refuse clients without a certificate",
    )
    serve.add_argument(
        "--config",
        metavar="FILE",
        help="settings in RabbitMQ's rabbitmq.conf format and key names (listeners.tcp.N, "
        "listeners.ssl.N, ssl_options.*, loopback_users.NAME, default_user, default_pass, "
        "default_vhost, vm_memory_high_watermark.*, consumer_timeout, max_message_size, "
        "channel_max, frame_max, heartbeat, handshake_timeout); options given here win",
    )
    tuning = Tuning()
    serve.add_argument(
        "--channel-max",
        type=_option(config.channel_max),
        default=tuning.channel_max,
        help=f"most channels a connection may open (default {tuning.channel_max})",
    )
    serve.add_argument(
        "--frame-max",
        type=_option(config.frame_max),
        default=tuning.frame_max,
        help=f"largest frame, in bytes (default {tuning.frame_max})",
    )
    serve.add_argument(
        "--heartbeat",
        type=_option(config.heartbeat),
        default=tuning.heartbeat,
        help=f"heartbeat offered to clients, in seconds; 0: none (default {tuning.heartbeat})",
    )
    serve.add_argument(
        "--handshake-timeout",
        type=_option(config.milliseconds),
        metavar="MS",
        default=tuning.handshake_timeout,
        help="connections that have not finished the AMQP handshake (or the TLS one) by "
        f"then are closed (default {int(tuning.handshake_timeout * 1000)} ms)",
    )
    serve.add_argument("--default-user", default=DEFAULT_USER, help=argparse.SUPPRESS)
    serve.add_argument("--default-pass", default=DEFAULT_USER, help=argparse.SUPPRESS)
    serve.add_argument("--default-vhost", default=DEFAULT_VHOST, help=argparse.SUPPRESS)
    serve.add_argument(
        "--ssl-cert-login-from",
        choices=[COMMON_NAME, SUBJECT_ALTERNATIVE_NAME],
        default=COMMON_NAME,
        help="what of a client certificate names its user with SASL EXTERNAL: the subject's "
        "common name (default) or its first DNS subject alternative name",
    )
    serve.add_argument(
        "--loopback-users",
        default="guest",
        metavar="NAMES",
        help="users who may connect only from loopback, comma-separated ('' for none; "
        "default guest), as RabbitMQ's loopback_users",
    )
    serve.add_argument(
        "--data-dir",
        default=str(default_data_dir()),
        help="where durable queues and persistent messages are kept "
        f"(default {default_data_dir()})",
    )
    serve.add_argument(
        "--in-memory", action="store_true", help="keep nothing on disk (no --data-dir)"
    )
    serve.add_argument(
        "--no-cti", action="store_true", help="do not start the call forms web service"
    )
    serve.add_argument("--http", default=DEFAULT_HTTP, metavar="HOST:PORT", help=http_help)
    _add_cti_arguments(serve)
    serve.add_argument(
        "--prometheus",
        default=DEFAULT_PROMETHEUS,
        metavar="HOST:PORT",
        help=f"Prometheus metrics at http://HOST:PORT/metrics, as RabbitMQ's plugin serves "
        f"them (default {DEFAULT_PROMETHEUS}; port 0 picks a free one)",
    )
    serve.add_argument(
        "--no-prometheus", action="store_true", help="do not serve Prometheus metrics"
    )
    serve.add_argument(
        "--management",
        default=DEFAULT_MANAGEMENT,
        metavar="HOST:PORT",
        help=f"RabbitMQ's management HTTP API and the dashboard at http://HOST:PORT/ "
        f"(default {DEFAULT_MANAGEMENT}; port 0 picks a free one)",
    )
    serve.add_argument(
        "--no-management",
        action="store_true",
        help="do not serve the management API and dashboard",
    )
    serve.add_argument(
        "--collect-statistics-interval",
        type=_option(config.milliseconds),
        default=DEFAULT_INTERVAL,
        metavar="MS",
        help="how often message rates are sampled, in milliseconds (default 5000, as "
        "RabbitMQ's collect_statistics_interval)",
    )
    serve.add_argument(
        "--ctl-socket",
        metavar="PATH",
        help=f"the control socket of `xivo-bus ctl` (default DATA_DIR/{SOCKET_NAME}; none "
        "with --in-memory unless given)",
    )
    serve.add_argument(
        "--max-store-size",
        type=int,
        metavar="BYTES",
        help="largest size of the store on disk; beyond it publishers are blocked until "
        "consumers make room (default: no limit but the disk's)",
    )
    serve.add_argument(
        "--memory-limit",
        type=int,
        metavar="BYTES",
        default=default_memory_limit(),
        help="above this much memory in use, publishers are blocked until consumers make "
        "room, as RabbitMQ's memory alarm (default 40%% of RAM: %(default)s)",
    )
    serve.add_argument(
        "--max-message-size",
        type=int,
        metavar="BYTES",
        default=DEFAULT_MAX_MESSAGE_SIZE,
        help="largest message body accepted; larger ones close the channel with 406 "
        f"(default {DEFAULT_MAX_MESSAGE_SIZE}, RabbitMQ's)",
    )
    serve.add_argument(
        "--consumer-timeout",
        type=int,
        default=DEFAULT_CONSUMER_TIMEOUT,
        metavar="MS",
        help="close a channel that leaves a delivery unacknowledged longer than this, as "
        f"RabbitMQ does (default {DEFAULT_CONSUMER_TIMEOUT}, 30 minutes; 0: never)",
    )

    url_default = os.environ.get("XIVO_BUS_URL", DEFAULT_URL)
    # argparse %-formats help texts: the URL's %2F must be escaped.
    url_help = (
        "AMQP URL of the bus; several, comma-separated, for a RabbitMQ cluster (default "
        f"$XIVO_BUS_URL or {DEFAULT_URL})"
    ).replace("%", "%%")
    data_dir = argparse.ArgumentParser(add_help=False)
    data_dir.add_argument(
        "--data-dir",
        default=str(default_data_dir()),
        help=f"users, forms and kept submissions (default {default_data_dir()})",
    )

    cti = commands.add_parser(
        "cti", parents=[data_dir], help="run the call forms web service (pages, API, CTI)"
    )
    cti.add_argument("--url", default=url_default, help=url_help)
    cti.add_argument("--http", default=DEFAULT_HTTP, metavar="HOST:PORT", help=http_help)
    _add_cti_arguments(cti)
    cti_actions = cti.add_subparsers(dest="cti_action", metavar="{sheet}")
    sheet = cti_actions.add_parser(
        "sheet",
        help="push a call form to a user's (or a queue's) desktop clients and web pages, "
        "by publishing call_form_request on the bus",
    )
    target = sheet.add_mutually_exclusive_group(required=True)
    target.add_argument("--user", type=int, metavar="ID", help="the user's id")
    target.add_argument("--queue", metavar="NAME", help="every member of this queue")
    sheet.add_argument("--form", metavar="ID", help="the form (default: the first one)")
    sheet.add_argument("--channel", help="the call's channel (e.g. SIP/abc-00000001)")
    sheet.add_argument(
        "variables",
        metavar="NAME=VALUE",
        nargs="*",
        help="the call's variables: each pre-fills the field of that name",
    )
    sheet.add_argument("--url", default=url_default, help=url_help)
    sheet.add_argument(
        "--timeout", type=float, default=10.0, help="seconds to wait for the broker's confirm"
    )

    users = commands.add_parser("users", help="manage the users of the call forms")
    user_actions = users.add_subparsers(dest="action", required=True)
    add_user = user_actions.add_parser(
        "add", parents=[data_dir], help="add a user (asks for the password)"
    )
    add_user.add_argument("login")
    add_user.add_argument(
        "--id", type=int, help="the user_id of their events (default: the next free one)"
    )
    add_user.add_argument("--name", help="display name (default: the login)")
    add_user.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    add_user.add_argument(
        "--cti-client",
        action="store_true",
        help="also keep the password in clear, so that XiVO desktop clients speaking CTI "
        "protocol 1.2 can log in (see the README: who can read it then)",
    )
    add_user.add_argument(
        "--queue",
        action="append",
        default=[],
        metavar="NAME",
        help="a queue the user answers (call forms pushed to it); repeat for more",
    )
    set_password = user_actions.add_parser(
        "password", parents=[data_dir], help="change a user's password (asks for it)"
    )
    set_password.add_argument("login")
    set_password.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    set_password.add_argument(
        "--cti-client",
        action="store_true",
        help="keep it in clear for CTI protocol 1.2 (without: any kept in clear is removed)",
    )
    user_actions.add_parser("list", parents=[data_dir], help="list users: id, login, name")
    remove_user = user_actions.add_parser("remove", parents=[data_dir], help="remove a user")
    remove_user.add_argument("login")

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

    ctl = commands.add_parser(
        "ctl", help="manage users, vhosts and permissions of a running broker (rabbitmqctl)"
    )
    add_ctl_arguments(ctl)

    from xivo_bus.bench.command import add_arguments as add_bench_arguments  # argparse only

    bench = commands.add_parser("bench", help="benchmark a broker (ours or RabbitMQ)")
    add_bench_arguments(bench, url_default)

    args = parser.parse_args(argv)
    if args.command == "serve" and args.config:
        try:
            options, warnings = load_config(args.config)
        except ConfigError as error:
            return _fail(str(error))
        # scalars: the file's values become defaults, so that options given win; lists
        # (listeners): the file's unless options name some
        lists = {key: options.pop(key) for key in ("listen", "ssl_listen") if key in options}
        serve.set_defaults(**options)
        args = parser.parse_args(argv)
        for key, values in lists.items():
            if not getattr(args, key):
                setattr(args, key, values)
        for warning in warnings:
            print(f"xivo-bus: {warning}", file=sys.stderr)
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
    if args.command == "users":
        return _users(args)
    if args.command == "ctl":
        return ctl_main(args)
    if args.command == "bench":
        from xivo_bus.bench.command import main as bench

        return bench(args)
    _install_uvloop()
    if args.command == "cti" and args.cti_action == "sheet":
        return _cti_sheet(args)
    runner = {"serve": _serve, "publish": _publish, "listen": _listen, "cti": _cti}[args.command]
    return asyncio.run(runner(args))


if __name__ == "__main__":
    sys.exit(main())
