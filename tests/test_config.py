"""`serve --config` (rabbitmq.conf keys), tuning options, the handshake timeout at every
stage, and the delay before a refused login."""

from __future__ import annotations

import socket
import subprocess
import time

import pika
import pytest
from conftest import READY, BrokerProcess, serve_argv, start_broker
from pamqp import commands
from pamqp import frame as pamqp_frame

from xivo_bus.config import ConfigError, load


def write(tmp_path, text: str):
    path = tmp_path / "rabbitmq.conf"
    path.write_text(text)
    return path


def test_rabbitmq_keys_become_serve_options(tmp_path):
    options, warnings = load(
        write(
            tmp_path,
            "# a RabbitMQ node's settings\n"
            "listeners.tcp.default = 127.0.0.1:5672\n"
            "listeners.tcp.2 = [::1]:5672\n"
            "listeners.ssl.1 = 5671\n"
            "ssl_options.cacertfile = /etc/ca.pem\n"
            "ssl_options.verify = verify_peer\n"
            "ssl_options.fail_if_no_peer_cert = true\n"
            "loopback_users.guest = false\n"
            "loopback_users.monitor = true\n"
            "vm_memory_high_watermark.absolute = 2GiB\n"
            "max_message_size = 16MB\n"
            "handshake_timeout = 5000\n"
            "channel_max = 128\n"
            "log.console.level = debug\n",
        )
    )
    assert options == {
        "listen": ["127.0.0.1:5672", "[::1]:5672"],
        "ssl_listen": ["5671"],
        "ssl_cacertfile": "/etc/ca.pem",
        "ssl_verify": "verify_peer",
        "ssl_fail_if_no_peer_cert": True,
        "loopback_users": "monitor",
        "memory_limit": 2 * 1024**3,
        "max_message_size": 16_000_000,
        "handshake_timeout": 5.0,
        "channel_max": 128,
    }
    assert len(warnings) == 1 and "line 14: 'log.console.level'" in warnings[0]


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("channel_max = 10\nno_such_key = 1\n", "line 2: unknown key 'no_such_key'"),
        ("listeners.tcp.1\n", "line 1: expected KEY = VALUE, got 'listeners.tcp.1'"),
        ("channel_max = lots\n", "line 1: 'channel_max = lots': expected a whole number"),
        ("frame_max = 100\n", "expected a whole number from 4096 to 1048576"),
        ("ssl_options.verify = maybe\n", "expected verify_peer or verify_none"),
        ("vm_memory_high_watermark.absolute = 2 parsecs\n", "expected a size"),
    ],
)
def test_config_errors_say_where(tmp_path, text, error):
    with pytest.raises(ConfigError) as raised:
        load(write(tmp_path, text))
    assert error in str(raised.value)


def test_serve_with_a_config_file_and_options_that_win(tmp_path):
    config = write(
        tmp_path,
        "listeners.tcp.1 = 127.0.0.1:0\n"
        "default_user = admin\ndefault_pass = s3cret\ndefault_vhost = xivo\n"
        "loopback_users = none\nchannel_max = 10\nframe_max = 8192\n",
    )
    proc = subprocess.Popen(
        serve_argv(
            "--no-cti",
            "--config",
            str(config),
            "--data-dir",
            str(tmp_path / "data"),
            "--channel-max",
            "20",
        ),
        stdout=subprocess.PIPE,
        text=True,
    )
    broker = None
    try:
        match = READY.search(proc.stdout.readline())
        assert match
        broker = BrokerProcess(proc, match.group(1), int(match.group(2)))
        params = pika.ConnectionParameters(
            broker.host, broker.port, "xivo", pika.PlainCredentials("admin", "s3cret")
        )
        connection = pika.BlockingConnection(params)
        assert connection._impl.params.channel_max == 20  # the option beat the file
        assert connection._impl.params.frame_max == 8192
        connection.close()
        with pytest.raises(pika.exceptions.ProbableAuthenticationError):
            pika.BlockingConnection(pika.ConnectionParameters(broker.host, broker.port))
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_bad_config_file_stops_serve_with_the_line(tmp_path):
    config = write(tmp_path, "channel_max = 10\nlisteners.tcp.1 = nowhere\n")
    done = subprocess.run(
        serve_argv(
            "--no-cti",
            "--config",
            str(config),
            "--data-dir",
            str(tmp_path / "data"),
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "'nowhere' is not HOST:PORT" in done.stderr


START_OK = commands.Connection.StartOk(
    client_properties={}, mechanism="PLAIN", response="\0guest\0guest", locale="en_US"
)
TUNE_OK = commands.Connection.TuneOk(channel_max=0, frame_max=131072, heartbeat=0)
STAGES = {
    "nothing sent": [],
    "protocol header only": [b"AMQP\x00\x00\x09\x01"],
    "no tune-ok": [b"AMQP\x00\x00\x09\x01", pamqp_frame.marshal(START_OK, 0)],
    "no connection.open": [
        b"AMQP\x00\x00\x09\x01",
        pamqp_frame.marshal(START_OK, 0),
        pamqp_frame.marshal(TUNE_OK, 0),
    ],
}


@pytest.fixture(scope="module")
def impatient_broker():
    process = start_broker("--handshake-timeout", "300")
    yield process
    process.stop()


@pytest.mark.parametrize("stage", list(STAGES))
def test_handshake_timeout_at_every_stage(impatient_broker, stage):
    with socket.create_connection((impatient_broker.host, impatient_broker.port)) as sock:
        for data in STAGES[stage]:
            sock.sendall(data)
        sock.settimeout(30)  # generous: the broker closes after 0.3 s
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if not sock.recv(65536):
                break  # closed by the broker
        else:
            pytest.fail(f"still open after 30 s ({stage})")
    # the broker goes on serving
    pika.BlockingConnection(
        pika.ConnectionParameters(impatient_broker.host, impatient_broker.port)
    ).close()


def test_a_refused_login_is_answered_after_a_delay(broker):
    started = time.monotonic()
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        pika.BlockingConnection(
            pika.ConnectionParameters(
                broker.host, broker.port, credentials=pika.PlainCredentials("guest", "wrong")
            )
        )
    assert time.monotonic() - started >= 0.9  # never sooner than the 1 s delay
