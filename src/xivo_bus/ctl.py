"""``xivo-bus ctl``: rabbitmqctl's verbs for users, vhosts and permissions, against the
running broker (through its control socket), with rabbitmqctl's arguments, output and
exit codes."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import platform
import socket
import sys
from pathlib import Path

from xivo_bus.broker.control import SOCKET_NAME
from xivo_bus.paths import default_data_dir

EX_DATAERR = 65
EX_UNAVAILABLE = 69
EX_CANTCREAT = 73

# verb: (positional arguments, takes -p, banner, columns of a listing)
VERBS: dict[str, tuple[tuple[str, ...], bool, str, tuple[str, ...] | None]] = {
    "add_user": (("name", "password?"), False, 'Adding user "{name}" ...', None),
    "delete_user": (("name",), False, 'Deleting user "{name}" ...', None),
    "change_password": (
        ("name", "password?"),
        False,
        'Changing password for user "{name}" ...',
        None,
    ),
    "clear_password": (("name",), False, 'Clearing password for user "{name}" ...', None),
    "authenticate_user": (("name", "password?"), False, 'Authenticating user "{name}" ...', None),
    "set_user_tags": (
        ("name", "tags*"),
        False,
        'Setting tags for user "{name}" to [{tags}] ...',
        None,
    ),
    "list_users": ((), False, "Listing users ...", ("user", "tags")),
    "add_vhost": (("name",), False, 'Adding vhost "{name}" ...', None),
    "delete_vhost": (("name",), False, 'Deleting vhost "{name}" ...', None),
    "list_vhosts": ((), False, "Listing vhosts ...", ("name",)),
    "set_permissions": (
        ("user", "configure", "write", "read"),
        True,
        'Setting permissions for user "{user}" in vhost "{vhost}" ...',
        None,
    ),
    "clear_permissions": (
        ("user",),
        True,
        'Clearing permissions for user "{user}" in vhost "{vhost}" ...',
        None,
    ),
    "list_permissions": (
        (),
        True,
        'Listing permissions for vhost "{vhost}" ...',
        ("user", "configure", "write", "read"),
    ),
    "list_user_permissions": (
        ("user",),
        False,
        'Listing permissions for user "{user}" ...',
        ("vhost", "configure", "write", "read"),
    ),
    "set_topic_permissions": (
        ("user", "exchange", "write", "read"),
        True,
        'Setting topic permissions on "{exchange}" for user "{user}" in vhost "{vhost}" ...',
        None,
    ),
    "clear_topic_permissions": (
        ("user", "exchange?"),
        True,
        'Clearing topic permissions{on} for user "{user}" in vhost "{vhost}" ...',
        None,
    ),
    "list_topic_permissions": (
        (),
        True,
        'Listing topic permissions for vhost "{vhost}" ...',
        ("user", "exchange", "write", "read"),
    ),
    "list_user_topic_permissions": (
        ("user",),
        False,
        'Listing topic permissions for user "{user}" ...',
        ("vhost", "exchange", "write", "read"),
    ),
    "set_vhost_limits": (
        ("limits",),
        True,
        'Setting vhost limits to "{limits}" for vhost "{vhost}" ...',
        None,
    ),
    "clear_vhost_limits": ((), True, 'Clearing vhost "{vhost}" limits ...', None),
    "list_vhost_limits": (
        ("all_!",),
        True,
        "Listing limits for {which} ...",
        ("vhost", "limits"),
    ),
    "set_user_limits": (
        ("user", "limits"),
        False,
        'Setting user limits to "{limits}" for user "{user}" ...',
        None,
    ),
    "clear_user_limits": (("user", "name"), False, 'Clearing {what} for user "{user}" ...', None),
    "list_user_limits": (
        ("user=", "all_!"),
        False,
        "Listing limits for {which} ...",
        ("user", "limits"),
    ),
    "list_queues": (
        ("columns*",),
        True,
        "Listing queues for vhost {vhost} ...",
        ("name", "messages"),
    ),
    "list_exchanges": (
        ("columns*",),
        True,
        "Listing exchanges for vhost {vhost} ...",
        ("name", "type"),
    ),
    "list_bindings": (
        (),
        True,
        "Listing bindings for vhost {vhost}...",
        (
            "source_name",
            "source_kind",
            "destination_name",
            "destination_kind",
            "routing_key",
            "arguments",
        ),
    ),
    "list_connections": (
        ("columns*",),
        False,
        "Listing connections ...",
        ("user", "peer_host", "peer_port", "state"),
    ),
    "list_channels": (
        (),
        False,
        "Listing channels ...",
        ("pid", "user", "consumer_count", "messages_unacknowledged"),
    ),
    "list_consumers": (
        (),
        True,
        "Listing consumers in vhost {vhost} ...",
        (
            "queue_name",
            "channel_pid",
            "consumer_tag",
            "ack_required",
            "prefetch_count",
            "active",
            "arguments",
        ),
    ),
    "purge_queue": (("queue",), True, "Purging queue '{queue}' in vhost '{vhost}' ...", None),
    "delete_queue": (("queue",), True, "Deleting queue '{queue}' on vhost '{vhost}' ...", None),
    "close_connection": (
        ("name", "reason"),
        False,
        "Closing connection {name}, reason: {reason}...",
        None,
    ),
    "close_all_connections": (
        ("reason", "all_!"),
        True,
        "Closing all connections in vhost {vhost}, reason: {reason}...",
        None,
    ),
    "status": ((), False, "Status of node {node} ...", None),
    "export_definitions": (
        ("file",),
        False,
        'Exporting definitions in JSON to a file at "{file}" ...',
        None,
    ),
    "import_definitions": (
        ("file",),
        False,
        'Importing definitions in JSON from a file at "{file}" ...',
        None,
    ),
}
DONE = {
    "add_user": "Done. Don't forget to grant the user permissions to some virtual hosts! "
    "See 'xivo-bus ctl set_permissions --help' to learn more.",
    "authenticate_user": "Success",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        default=str(default_data_dir()),
        help=f"the broker's data directory, where its control socket is "
        f"(default {default_data_dir()})",
    )
    parser.add_argument(
        "--socket", help=f"the control socket (default DATA_DIR/{SOCKET_NAME}, as serve makes it)"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no banner line")
    parser.add_argument("--formatter", choices=["table", "json"], default="table")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb, (positionals, takes_vhost, _, _) in VERBS.items():
        sub = verbs.add_parser(verb, help=verb.replace("_", " "))
        if takes_vhost:
            sub.add_argument("-p", "--vhost", default="/", help="the virtual host (default /)")
        for positional in positionals:
            name = positional.rstrip("?*!=")
            if positional.endswith("!"):  # all_ → --global, as rabbitmqctl names it
                sub.add_argument("--global", dest=name, action="store_true")
            elif positional.endswith("="):
                sub.add_argument(f"--{name}")
            elif positional.endswith("?"):
                sub.add_argument(name, nargs="?", help=f"{name} (read from stdin if not given)")
            elif positional.endswith("*"):
                sub.add_argument(name, nargs="*")
            else:
                sub.add_argument(name)
        # options after the verb too, as rabbitmqctl takes them
        sub.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS)
        sub.add_argument("--formatter", choices=["table", "json"], default=argparse.SUPPRESS)


def main(args: argparse.Namespace) -> int:
    positionals, takes_vhost, banner, columns = VERBS[args.verb]
    request: dict = {}
    for positional in positionals:
        name = positional.rstrip("?*!=")
        request[name] = getattr(args, name)
    if takes_vhost:
        request["vhost"] = args.vhost
    if "password" in request and request["password"] is None:
        request["password"] = _read_password()
    definitions_file = request.pop("file", None)
    if args.verb == "import_definitions":
        try:
            request["definitions_"] = _read_definitions(definitions_file)
        except (OSError, ValueError) as error:
            print(f"Error:\n{error}", file=sys.stderr)
            return EX_DATAERR
    if not args.quiet and definitions_file != "-":
        shown = {**request, "file": definitions_file, "tags": ", ".join(request.get("tags") or ())}
        shown["on"] = f' on "{request["exchange"]}"' if request.get("exchange") else ""
        shown["node"] = f"xivo-bus@{platform.node()}"
        if "{what}" in banner:
            name = request["name"]
            shown["what"] = "all limits" if name == "all" else f'"{name}" limit'
        if "{which}" in banner:
            if request.get("all_") or (args.verb == "list_user_limits" and not request["user"]):
                shown["which"] = "all vhosts" if takes_vhost else "all users"
            elif takes_vhost:
                shown["which"] = f'vhost "{request["vhost"]}"'
            else:
                shown["which"] = f'user "{request["user"]}"'
        print(banner.format(**shown), flush=True)
    path = Path(args.socket) if args.socket else Path(args.data_dir) / SOCKET_NAME
    try:
        answer = _ask(path, args.verb, request)
    except OSError as error:
        print(
            f"Error: cannot reach the broker's control socket {path}: "
            f"{error.strerror or error} (is `xivo-bus serve` running with this --data-dir?)",
            file=sys.stderr,
        )
        return EX_UNAVAILABLE
    if "error" in answer:
        print(f"Error:\n{answer['error']}", file=sys.stderr)
        return int(answer.get("code") or 70)
    rows = answer.get("ok")
    if args.verb == "export_definitions":
        return _write_definitions(definitions_file, rows)
    if args.verb == "import_definitions":
        print(f"Successfully imported definitions: {rows}")
        return 0
    if args.verb == "status":
        _print_status(rows, args.formatter)
    elif isinstance(rows, str):  # one JSON object (list_*_limits of one vhost or user)
        print(rows)
    elif columns is not None:
        _print_rows(rows or [], tuple(request.get("columns") or columns), args.formatter)
    elif args.verb in DONE and not args.quiet:
        print(DONE[args.verb])
    return 0


def _read_definitions(file: str) -> dict:
    if file == "-":
        text = sys.stdin.read()
    else:
        path = Path(file)
        if not path.is_file():
            raise ValueError(f"File {file} does not exist")
        text = path.read_text()
    try:
        return json.loads(text)
    except ValueError as error:
        raise ValueError(f"{file} is not JSON: {error}") from None


def _write_definitions(file: str, definitions: dict) -> int:
    text = json.dumps(definitions, sort_keys=True, separators=(",", ":"))
    if file == "-":
        print(text)
        return 0
    try:
        # users' password hashes are in it: owner only, as the store
        descriptor = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as out:
            out.write(text)
    except OSError as error:
        print(f"Error:\ncannot write {file}: {error.strerror}", file=sys.stderr)
        return EX_CANTCREAT
    return 0


def _read_password() -> str:
    if sys.stdin.isatty():
        return getpass.getpass("Password: ")
    return sys.stdin.readline().rstrip("\n")


def _ask(path: Path, verb: str, args: dict) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(60)
        sock.connect(os.fspath(path))
        sock.sendall(json.dumps({"verb": verb, "args": args}).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionResetError("the broker closed the control connection")
            data += chunk
    return json.loads(data)


def _print_status(status: dict, formatter: str) -> None:
    """``status`` in rabbitmqctl's sections (or its JSON)."""
    if formatter == "json":
        print(json.dumps(status, separators=(",", ":")))
        return
    bold = ("\x1b[1m", "\x1b[0m") if sys.stdout.isatty() else ("", "")
    gb = 1_000_000_000
    totals, fds = status["totals"], status["file_descriptors"]
    sections = {
        "Runtime": [
            f"OS PID: {status['pid']}",
            f"OS: {status['os']}",
            f"Uptime (seconds): {status['uptime']}",
            f"Is under maintenance?: {str(status['is_under_maintenance']).lower()}",
            f"RabbitMQ version: {status['rabbitmq_version']}",
            f"Product: {status['product_name']} {status['product_version']}",
            f"Runtime: {status['erlang_version']}",
        ],
        "Data directory": [f"Node data directory: {status['data_directory']}"],
        "Alarms": [
            f"{alarm['resource']} alarm on node {alarm['node']}" for alarm in status["alarms"]
        ]
        or ["(none)"],
        "Memory": [
            f"Total memory used: {status['memory']['total']['rss'] / gb:.4f} gb",
            f"Calculation strategy: {status['vm_memory_calculation_strategy']}",
            f"Memory high watermark: {status['vm_memory_high_watermark_limit'] / gb:.4f} gb",
        ],
        "File Descriptors": [f"Total: {fds['total_used']}, limit: {fds['total_limit']}"],
        "Free Disk Space": [f"Free disk space: {status['disk_free'] / gb:.4f} gb"],
        "Totals": [
            f"Connection count: {totals['connection_count']}",
            f"Queue count: {totals['queue_count']}",
            f"Virtual host count: {totals['virtual_host_count']}",
        ],
        "Listeners": [
            f"Interface: {listener['interface']}, port: {listener['port']}, "
            f"protocol: {listener['protocol']}, purpose: {listener['purpose']}"
            for listener in status["listeners"]
        ],
    }
    print("\n\n".join(f"{bold[0]}{title}{bold[1]}\n\n" + "\n".join(lines)
                     for title, lines in sections.items()))  # fmt: skip


def _print_rows(rows: list[dict], columns: tuple[str, ...], formatter: str) -> None:
    if formatter == "json":
        # rabbitmqctl's layout: one compact object a line
        items = [json.dumps(row, separators=(",", ":")) for row in rows]
        print("[\n" + "\n,".join(items) + ("\n" if items else "") + "]")
        return
    print("\t".join(columns))
    for row in rows:
        cells = []
        for column in columns:
            value = row[column]
            if isinstance(value, list):
                cells.append(f"[{', '.join(value)}]")
            elif isinstance(value, bool):
                cells.append("true" if value else "false")
            else:
                cells.append(str(value))
        print("\t".join(cells))
