"""``xivo-bus serve --config FILE``: RabbitMQ's ``rabbitmq.conf`` format (``key = value``
lines, ``#`` comments) with its key names, so that an operator's RabbitMQ settings mostly
carry over. Each key becomes the default of the ``serve`` option it corresponds to; options
on the command line override them.

A key RabbitMQ does not have is an error, with its line number; a RabbitMQ key that means
nothing here (logging, clustering...) is reported and ignored.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from xivo_bus.broker.listeners import format_address

# RabbitMQ keys with no meaning here: reported, then ignored
IGNORED = (
    "log.",
    "cluster_formation.",
    "cluster_name",
    "cluster_partition_handling",
    "collect_statistics",
    "disk_free_limit.",
    "management.",
    "queue_master_locator",
    "mnesia_table_loading",
)
_UNITS = {
    "": 1,
    "k": 1000, "kb": 1000, "kib": 1024,
    "m": 1000**2, "mb": 1000**2, "mib": 1024**2,
    "g": 1000**3, "gb": 1000**3, "gib": 1024**3,
}  # fmt: skip


class ConfigError(ValueError):
    """What is wrong, with the file and line."""


def _bool(value: str) -> bool:
    if value not in ("true", "false"):
        raise ValueError("expected true or false")
    return value == "true"


def _int(value: str) -> int:
    if not re.fullmatch(r"-?[0-9]+", value):
        raise ValueError("expected a whole number")
    return int(value)


def _bytes(value: str) -> int:
    """``1073741824``, ``1GB`` (powers of 1000) or ``1GiB`` (powers of 1024)."""
    match = re.fullmatch(r"([0-9]+)\s*([A-Za-z]*)", value)
    if not match or match.group(2).lower() not in _UNITS:
        raise ValueError("expected a size such as 1073741824, 1GB or 1GiB")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def _fraction(value: str) -> float:
    fraction = float(value)
    if not 0 < fraction <= 1:
        raise ValueError("expected a fraction of RAM above 0, at most 1")
    return fraction


def _choice(*choices: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value not in choices:
            raise ValueError(f"expected {' or '.join(choices)}")
        return value

    return check


def _range(low: int, high: int) -> Callable[[str], int]:
    def check(value: str) -> int:
        number = _int(value)
        if not low <= number <= high:
            raise ValueError(f"expected a whole number from {low} to {high}")
        return number

    return check


def milliseconds(value: str) -> float:
    """A duration given in milliseconds (as RabbitMQ's), in seconds."""
    number = _int(value)
    if number <= 0:
        raise ValueError("expected a number of milliseconds above 0")
    return number / 1000


# the bounds of what connections negotiate, for this file and serve's options alike
channel_max = _range(1, 65535)
frame_max = _range(4096, 1 << 20)
heartbeat = _range(0, 65535)


# key -> (serve option's dest, converter); listeners and loopback users are handled apart
KEYS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "ssl_options.certfile": ("ssl_certfile", str),
    "ssl_options.keyfile": ("ssl_keyfile", str),
    "ssl_options.cacertfile": ("ssl_cacertfile", str),
    "ssl_options.verify": ("ssl_verify", _choice("verify_peer", "verify_none")),
    "ssl_options.fail_if_no_peer_cert": ("ssl_fail_if_no_peer_cert", _bool),
    "ssl_cert_login_from": (
        "ssl_cert_login_from",
        _choice("common_name", "subject_alternative_name"),
    ),
    "default_user": ("default_user", str),
    "default_pass": ("default_pass", str),
    "default_vhost": ("default_vhost", str),
    "vm_memory_high_watermark.absolute": ("memory_limit", _bytes),
    "consumer_timeout": ("consumer_timeout", _range(0, 2**63)),
    "max_message_size": ("max_message_size", _bytes),
    "channel_max": ("channel_max", channel_max),
    "frame_max": ("frame_max", frame_max),
    "heartbeat": ("heartbeat", heartbeat),
    "handshake_timeout": ("handshake_timeout", milliseconds),
    "collect_statistics_interval": ("collect_statistics_interval", milliseconds),
}
# HTTP listeners set by ``NAME.tcp.ip``/``NAME.tcp.port`` keys: NAME -> default port
HTTP_LISTENERS = {"prometheus": "15692", "management": "15672"}


def load(path: str | Path) -> tuple[dict[str, Any], list[str]]:
    """The serve options a config file sets, and the warnings about keys ignored."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror}") from None
    options: dict[str, Any] = {}
    warnings: list[str] = []
    listen: dict[str, str] = {}
    ssl_listen: dict[str, str] = {}
    loopback: dict[str, bool] = {}
    loopback_set = False
    http: dict[str, dict[str, str]] = {name: {} for name in HTTP_LISTENERS}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{path} line {number}"
        key, sep, value = (part.strip() for part in line.partition("="))
        if not sep or not key:
            raise ConfigError(f"{where}: expected KEY = VALUE, got '{raw.strip()}'")
        try:
            if key.startswith("listeners.tcp."):
                listen[key] = value
            elif key.startswith("listeners.ssl."):
                ssl_listen[key] = value
            elif key == "loopback_users" and value == "none":
                loopback.clear()
                loopback_set = True
            elif key.startswith("loopback_users."):
                loopback[key.removeprefix("loopback_users.")] = _bool(value)
                loopback_set = True
            elif key.split(".", 1)[0] in HTTP_LISTENERS and key.split(".", 1)[1] in (
                "tcp.ip",
                "tcp.port",
            ):
                if key.endswith("port"):
                    _range(0, 65535)(value)
                http[key.split(".", 1)[0]][key.rsplit(".", 1)[1]] = value
            elif key == "vm_memory_high_watermark.relative":
                total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
                options["memory_limit"] = int(total * _fraction(value))
            elif key in KEYS:
                dest, convert = KEYS[key]
                options[dest] = convert(value)
            elif key.startswith(IGNORED):
                warnings.append(f"{where}: '{key}' is RabbitMQ's and has no effect here")
            else:
                raise ConfigError(f"{where}: unknown key '{key}'")
        except ValueError as error:
            if isinstance(error, ConfigError):
                raise
            raise ConfigError(f"{where}: '{key} = {value}': {error}") from None
    if listen:
        options["listen"] = list(listen.values())
    if ssl_listen:
        options["ssl_listen"] = list(ssl_listen.values())
    for name, given in http.items():
        if given:  # loopback unless the file names an address
            ip = given.get("ip", "127.0.0.1")
            options[name] = format_address(ip, given.get("port", HTTP_LISTENERS[name]))
    if loopback_set:
        options["loopback_users"] = ",".join(name for name, on in loopback.items() if on)
    return options, warnings
