"""Fixtures of the compatibility suite: one observer per broker.

``ours`` runs scenarios against the session's ``xivo-bus serve``; ``rabbitmq`` against the
RabbitMQ that ``XIVO_BUS_COMPAT_URL`` points at (``.ci/run`` starts a private node), and
skips, with its reason shown in ``-ra`` output, when there is none.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pika
import pytest

from .harness import Observer

COMPAT_URL = os.environ.get("XIVO_BUS_COMPAT_URL", "")
NO_RABBITMQ = (
    "XIVO_BUS_COMPAT_URL is not set: no RabbitMQ to compare with, so only our broker was "
    "checked (.ci/run starts a private RabbitMQ node and sets it)"
)


def _collected(session) -> list[str]:
    names = []
    for item in session.items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and "scenario_name" in callspec.params:
            names.append(callspec.params["scenario_name"])
    return list(dict.fromkeys(names))


def command_runner(*command: str):
    """admin(verb, *args): run a rabbitmqctl-like command; its failure is an error."""

    def admin(*args: str) -> None:
        done = subprocess.run([*command, *args], capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)}: exit {done.returncode}: {done.stderr}")

    return admin


@pytest.fixture(scope="session")
def ours(broker, request) -> Observer:
    socket = str(Path(broker.data_dir) / "ctl.sock")
    admin = command_runner(sys.executable, "-m", "xivo_bus", "ctl", "-q", "--socket", socket)
    observer = Observer(broker.url, admin)
    observer.start(_collected(request.session))
    return observer


@pytest.fixture(scope="session")
def rabbitmq(request) -> Observer:
    if not COMPAT_URL:
        pytest.skip(NO_RABBITMQ)
    # The XiVO CTI server declared xivo-cti at start-up (direct, durable); our broker has
    # it from the start, so RabbitMQ gets it the same way before any scenario runs.
    connection = pika.BlockingConnection(pika.URLParameters(COMPAT_URL))
    connection.channel().exchange_declare("xivo-cti", "direct", durable=True)
    connection.close()
    ctl = os.environ.get("XIVO_BUS_COMPAT_CTL", "")
    observer = Observer(
        COMPAT_URL,
        command_runner(ctl, "-q") if ctl else None,
        "XIVO_BUS_COMPAT_CTL is not set: no rabbitmqctl for the RabbitMQ node "
        "(.ci/setup-rabbitmq.sh sets it)",
    )
    observer.start(_collected(request.session))
    return observer
