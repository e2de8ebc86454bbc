"""Shared fixtures: a real broker process on an ephemeral loopback port."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass

import pika
import pytest

READY = re.compile(r"accepting AMQP connections on (\S+):(\d+)")


@dataclass
class BrokerProcess:
    """``xivo-bus serve`` running as a child process."""

    proc: subprocess.Popen
    host: str
    port: int
    data_dir: str | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@{self.host}:{self.port}/%2F"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)


def serve_argv(*args: str) -> list[str]:
    """The command line of ``xivo-bus serve`` with ``args``, run by this Python (with no
    metrics listener unless ``args`` ask for one: tests never take a fixed port)."""
    if "--prometheus" not in args:
        args = (*args, "--no-prometheus")
    if "--management" not in args:
        args = (*args, "--no-management")
    return [sys.executable, "-m", "xivo_bus", "serve", *args]


def start_broker(*args: str, env: dict | None = None, cti: bool = False) -> BrokerProcess:
    """Start ``xivo-bus serve --port 0`` and wait for its ready line. Unless ``args`` name
    a ``--data-dir``, the broker gets a fresh one of its own; no management API unless
    ``args`` ask for one (``--management 127.0.0.1:0``, its line read with
    ``read_line``). The call forms web service
    starts only with ``cti=True`` (give ``--http 127.0.0.1:0`` with it; the CTI listener
    gets a free port unless ``args`` name one)."""
    if "--data-dir" not in args and "--in-memory" not in args:
        args = (*args, "--data-dir", tempfile.mkdtemp(prefix="xivo-bus-test-"))
    if not cti:
        args = (*args, "--no-cti")
    elif "--cti-listen" not in args:
        args = (*args, "--cti-listen", "127.0.0.1:0")  # never XiVO's fixed 5003
    if "--prometheus" not in args and "--no-prometheus" not in args:
        args = (*args, "--prometheus", "127.0.0.1:0")
    if "--management" not in args:
        args = (*args, "--no-management")
    proc = subprocess.Popen(
        [sys.executable, "-m", "xivo_bus", "--log-level", "INFO", "serve", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=None,
        text=True,
        env={**os.environ, **(env or {})},
    )
    line = proc.stdout.readline()
    match = READY.search(line)
    if not match:
        proc.kill()
        raise RuntimeError(f"broker did not start: {line!r}")
    data_dir = args[args.index("--data-dir") + 1] if "--data-dir" in args else None
    host = match.group(1).strip("[]")  # IPv6 addresses are shown as [ADDRESS]:PORT
    return BrokerProcess(proc, host, int(match.group(2)), data_dir)


MANAGEMENT = re.compile(r"management API and dashboard on (http://\S+?)/?$")


def read_line(proc: subprocess.Popen, pattern: re.Pattern) -> re.Match:
    """Read the broker's stdout up to the line matching ``pattern``."""
    seen = []
    for line in proc.stdout:
        match = pattern.search(line.rstrip("\n"))
        if match:
            return match
        seen.append(line)
    raise RuntimeError(f"no line matching {pattern.pattern!r} in {seen!r}")


def start_management_broker(*args: str, **kwargs) -> tuple[BrokerProcess, str]:
    """A broker serving the management API on a free port; it and the API's base URL
    (``http://127.0.0.1:PORT``)."""
    process = start_broker("--management", "127.0.0.1:0", *args, **kwargs)
    try:
        return process, read_line(process.proc, MANAGEMENT).group(1)
    except RuntimeError:
        process.proc.kill()
        raise


@pytest.fixture(scope="session")
def broker():
    """One broker shared by the session; tests use unique names."""
    process = start_broker()
    yield process
    process.stop()


@pytest.fixture
def fresh_broker():
    """A broker of the test's own, for tests that stop or disturb it."""
    process = start_broker()
    yield process
    if process.proc.poll() is None:
        process.proc.kill()
        process.proc.wait()


@pytest.fixture
def conn(broker):
    """A pika BlockingConnection to the session's broker."""
    connection = pika.BlockingConnection(pika.ConnectionParameters(broker.host, broker.port))
    yield connection
    if connection.is_open:
        connection.close()


@pytest.fixture
def ch(conn):
    """A channel on ``conn``."""
    return conn.channel()


@pytest.fixture
def unused_port() -> int:
    """A loopback port nothing listens on (as far as one can tell)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def name(request) -> str:
    """A unique name for queues and exchanges of one test."""
    # Only characters every client library accepts in queue and exchange names.
    base = re.sub(r"[^A-Za-z0-9_.:-]", "-", request.node.name[:40])
    return f"{base}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def plain_name(name):
    """The test's unique name, reduced to letters, digits, '_', '.' and '-'."""
    return re.sub(r"[^\w.-]", "_", name)


class ChildLines:
    """The stdout lines of a child process, read by a thread, awaited with a timeout."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.lines: list[str] = []  # every line read so far
        self._queue: queue.Queue = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def _next(self, deadline: float) -> str | None:
        try:
            line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"child output stalled; so far: {self.lines}") from None
        if line is not None:
            self.lines.append(line)
        return line

    def wait_for(self, prefix: str, timeout: float = 10) -> str:
        """The next line starting with ``prefix``; fails on timeout or end of output."""
        deadline = time.monotonic() + timeout
        while (line := self._next(deadline)) is not None:
            if line.startswith(prefix):
                return line
        raise AssertionError(f"output ended before a {prefix!r} line: {self.lines}")

    def rest(self, timeout: float = 10) -> list[str]:
        """Read to the end of the child's output; returns every line read."""
        deadline = time.monotonic() + timeout
        while self._next(deadline) is not None:
            pass
        return self.lines
