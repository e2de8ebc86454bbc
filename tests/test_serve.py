"""``xivo-bus serve``: its ready line, --host/--port, clean shutdown on SIGINT/SIGTERM,
and a clear error when the port is taken."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time

import pika
import pika.exceptions
import pytest
from amqp_raw import RawClient
from conftest import start_broker
from pamqp import commands

SHUTDOWN_CODE = 320
SHUTDOWN_TEXT = "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def pika_connection(host: str, port: int) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.ConnectionParameters(host, port))


def raw_connection(host: str, port: int) -> RawClient:
    client = RawClient(host, port)
    opened = client.handshake()[2]
    assert isinstance(opened[1], commands.Connection.OpenOk)
    client.open_channel(1)
    return client


def stop_within_2s(broker, sig: int) -> int:
    """Send ``sig`` and require the process to be gone within 2 s; its exit code."""
    broker.proc.send_signal(sig)
    return broker.proc.wait(timeout=2)  # raises TimeoutExpired if still running


def test_ready_line():
    proc = subprocess.Popen(
        [sys.executable, "-m", "xivo_bus", "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        match = re.fullmatch(
            r"xivo-bus 0\.1\.0: accepting AMQP connections on 127\.0\.0\.1:(\d+)\n", line
        )
        assert match, line
        port = int(match.group(1))
        assert port > 0
        with pika_connection("127.0.0.1", port) as connection:  # it is accepting indeed
            assert connection.is_open
    finally:
        proc.send_signal(signal.SIGTERM)
        rest = proc.stdout.read()
        proc.wait(timeout=10)
    assert "accepting AMQP connections" not in rest  # one ready line only
    assert proc.returncode == 0


def test_port_option_is_honoured():
    port = free_port()
    broker = start_broker("--port", str(port))
    try:
        assert broker.port == port
        with pika_connection("127.0.0.1", port) as connection:
            assert connection.is_open
    finally:
        assert broker.stop() == 0


@pytest.mark.parametrize("host", ["127.0.0.2", "::1"])
def test_host_option_is_honoured(host):
    try:
        free_port(host)
    except OSError:
        pytest.skip(f"{host} not available here")
    broker = start_broker("--host", host)
    try:
        assert broker.host == host
        client = raw_connection(host, broker.port)
        client.close()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", broker.port), timeout=5).close()
    finally:
        assert broker.stop() == 0


def test_port_in_use_is_a_clear_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "xivo_bus", "serve", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert done.returncode != 0
    assert "accepting AMQP connections" not in done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert str(port) in lines[0] and "in use" in lines[0], lines[0]
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_closes_clients_with_320_and_exits_0(fresh_broker, sig):
    host, port = fresh_broker.host, fresh_broker.port
    blocking = pika_connection(host, port)
    blocking.channel()
    raw = raw_connection(host, port)

    fresh_broker.proc.send_signal(sig)

    close = raw.expect(commands.Connection.Close, 0)
    assert (close.reply_code, close.reply_text) == (SHUTDOWN_CODE, SHUTDOWN_TEXT)
    assert (close.class_id, close.method_id) == (0, 0)
    raw.send(0, commands.Connection.CloseOk())

    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            blocking.process_data_events(time_limit=0.1)
    assert (closed.value.reply_code, closed.value.reply_text) == (SHUTDOWN_CODE, SHUTDOWN_TEXT)

    assert fresh_broker.proc.wait(timeout=2) == 0
    assert raw.recv_frame() is None  # socket closed after close-ok
    raw.close()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_exits_within_2s_even_if_clients_never_answer(fresh_broker, sig):
    silent = [raw_connection(fresh_broker.host, fresh_broker.port) for _ in range(3)]
    half_open = socket.create_connection((fresh_broker.host, fresh_broker.port))
    try:
        assert stop_within_2s(fresh_broker, sig) == 0
        for client in silent:  # each got the 320 close before the broker went away
            close = client.expect(commands.Connection.Close, 0)
            assert (close.reply_code, close.reply_text) == (SHUTDOWN_CODE, SHUTDOWN_TEXT)
    finally:
        half_open.close()
        for client in silent:
            client.close()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_without_clients_exits_0_within_2s(fresh_broker, sig):
    # Sent as soon as the ready line is out: the signal handling must be in place by then.
    assert stop_within_2s(fresh_broker, sig) == 0
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((fresh_broker.host, fresh_broker.port), timeout=5).close()
