"""Helpers for the call forms tests: users, the ``xivo-bus cti`` process, a consumer
written like the spec's example, and Debian's chromium under playwright."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pika
from conftest import ChildLines

from xivo_bus.cti.users import UserStore

CTI_LINE = re.compile(r"call forms on (\S+)")
CHROMIUM = os.environ.get("XIVO_BUS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@dataclass(frozen=True)
class Agent:
    id: int
    login: str
    password: str
    name: str


def add_agent(data_dir: Path, login: str = "alice", user_id: int = 40) -> Agent:
    agent = Agent(user_id, login, f"{login}-secret", f"{login.title()} Martin")
    UserStore(data_dir).add(agent.login, agent.password, user_id=agent.id, name=agent.name)
    return agent


@dataclass
class CtiProcess:
    """``xivo-bus cti`` running as a child process."""

    proc: subprocess.Popen
    lines: ChildLines
    url: str  # http://127.0.0.1:PORT/

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.proc.wait(10)


def start_cti(amqp_url: str, data_dir: Path, *extra: str) -> CtiProcess:
    proc = subprocess.Popen(
        [sys.executable, "-m", "xivo_bus", "cti", "--url", amqp_url, "--http", "127.0.0.1:0"]
        + ["--data-dir", str(data_dir)]
        + ([] if "--cti-listen" in extra else ["--cti-listen", "127.0.0.1:0"])
        + list(extra),
        stdout=subprocess.PIPE,
        text=True,
    )
    lines = ChildLines(proc)
    try:
        line = lines.wait_for("xivo-bus: call forms on", timeout=30)
    except AssertionError:
        proc.kill()
        raise
    return CtiProcess(proc, lines, CTI_LINE.search(line).group(1))


def cti_line(lines: ChildLines) -> str:
    """The call forms' URL from a ``serve`` child's output."""
    return CTI_LINE.search(lines.wait_for("xivo-bus: call forms on", timeout=30)).group(1)


class SpecConsumer:
    """The spec's example client, bound to ``xivo-cti``/``call_form_result``, one message
    at a time. With a ``queue`` name, the queue is durable instead of exclusive, so that
    it and its messages outlive a broker restart."""

    def __init__(self, host: str, port: int, queue: str | None = None):
        self.connection = pika.BlockingConnection(pika.ConnectionParameters(host, port))
        self.channel = self.connection.channel()
        if queue is None:
            result = self.channel.queue_declare("", exclusive=True)
        else:
            result = self.channel.queue_declare(queue, durable=True)
        self.queue = result.method.queue
        self.channel.queue_bind(
            exchange="xivo-cti", queue=self.queue, routing_key="call_form_result"
        )
        self._messages = self.channel.consume(self.queue, inactivity_timeout=30)

    def next(self) -> dict:
        """The next message's body, parsed; fails after 30 s without one."""
        method, _, body = next(self._messages)
        assert method is not None, "no call_form_result within 30 s"
        self.channel.basic_ack(method.delivery_tag)
        return json.loads(body)

    def close(self) -> None:
        self.channel.cancel()
        self.connection.close()


def expected(user_id: int, **variables: str) -> dict:
    return {"name": "call_form_result", "data": {"user_id": user_id, "variables": variables}}


def contact(firstname: str, lastname: str, phone: str = "", comment: str = "") -> dict:
    """The default contact form's variables, as the event carries them."""
    return {"firstname": firstname, "lastname": lastname, "phone": phone, "comment": comment}
