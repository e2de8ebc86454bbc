"""Definitions both ways between xivo-bus and a real RabbitMQ (the compat suite's node):
what one exports, the other imports, users logging in with the same passwords (the
password hashes travel as they are)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import pika
import pytest
from conftest import start_broker

RABBITMQCTL = os.environ.get("XIVO_BUS_COMPAT_CTL", "")
COMPAT_URL = os.environ.get("XIVO_BUS_COMPAT_URL", "")
needs_rabbitmq = pytest.mark.skipif(
    not (RABBITMQCTL and COMPAT_URL),
    reason="XIVO_BUS_COMPAT_URL/XIVO_BUS_COMPAT_CTL are not set: no RabbitMQ node "
    "(.ci/setup-rabbitmq.sh starts one)",
)


def ours_ctl(broker, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    socket = os.path.join(broker.data_dir, "ctl.sock")
    done = subprocess.run(
        [sys.executable, "-m", "xivo_bus", "ctl", "-q", "--socket", socket, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done


def rabbitmqctl(*args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([RABBITMQCTL, "-q", *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done


def rabbitmq_port() -> int:
    return pika.URLParameters(COMPAT_URL).port


def login(port: int, user: str, password: str, vhost: str) -> pika.BlockingConnection:
    return pika.BlockingConnection(
        pika.ConnectionParameters("127.0.0.1", port, vhost, pika.PlainCredentials(user, password))
    )


@pytest.fixture
def names():
    tag = uuid.uuid4().hex[:8]
    return {"vhost": f"defs-{tag}", "user": f"svc-{tag}", "password": f"pw-{tag}"}


def set_up(admin, names) -> None:
    """The same definitions, made with either broker's admin command."""
    vhost, user = names["vhost"], names["user"]
    admin("add_vhost", vhost)
    admin("add_user", user, names["password"])
    admin("set_user_tags", user, "monitoring")
    admin("set_permissions", "-p", vhost, user, "^svc", "^svc|amq.default", "^svc")
    admin("set_topic_permissions", "-p", vhost, user, "amq.topic", "^calls", ".*")
    admin("set_vhost_limits", "-p", vhost, '{"max-queues": 50}')


def declare(port: int, names) -> None:
    connection = login(port, names["user"], names["password"], names["vhost"])
    channel = connection.channel()
    channel.exchange_declare("svc.events", "topic", durable=True)
    channel.queue_declare("svc.calls", durable=True, arguments={"x-max-length": 100})
    channel.queue_bind("svc.calls", "svc.events", "calls.#")
    connection.close()


def check_on(port: int, names) -> None:
    """The definitions work there: login, permissions, the binding routes."""
    connection = login(port, names["user"], names["password"], names["vhost"])
    channel = connection.channel()
    channel.confirm_delivery()
    channel.basic_publish("svc.events", "calls.new", b"moved")
    method, _props, body = channel.basic_get("svc.calls", auto_ack=True)
    assert body == b"moved"
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
        channel.queue_declare("other")
    assert refused.value.reply_code == 403
    connection.close()


@needs_rabbitmq
def test_xivo_bus_definitions_load_into_rabbitmq(tmp_path, names):
    broker = start_broker("--data-dir", str(tmp_path / "data"))
    try:
        set_up(lambda *args: ours_ctl(broker, *args), names)
        declare(broker.port, names)
        exported = tmp_path / "definitions.json"
        ours_ctl(broker, "export_definitions", str(exported))
    finally:
        broker.stop()
    assert oct(exported.stat().st_mode & 0o777) == "0o600"  # it holds password hashes
    definitions = json.loads(exported.read_text())
    assert {"users", "vhosts", "permissions", "queues", "exchanges", "bindings"} <= set(definitions)
    try:
        rabbitmqctl("import_definitions", str(exported))
        # RabbitMQ says its import "is asynchronous": wait (up to a generous deadline) for
        # the last thing it applies, the bindings
        deadline = time.monotonic() + 60
        while "svc.events" not in rabbitmqctl("list_bindings", "-p", names["vhost"]).stdout:
            assert time.monotonic() < deadline, "RabbitMQ never finished the import"
            time.sleep(0.5)
        users = rabbitmqctl("list_users", "--formatter", "json").stdout
        assert {"user": names["user"], "tags": ["monitoring"]} in json.loads(users)
        check_on(rabbitmq_port(), names)
        limits = rabbitmqctl("list_vhost_limits", "-p", names["vhost"]).stdout
        assert '"max-queues":50' in limits
    finally:
        subprocess.run([RABBITMQCTL, "delete_vhost", names["vhost"]], capture_output=True)
        subprocess.run([RABBITMQCTL, "delete_user", names["user"]], capture_output=True)


@needs_rabbitmq
def test_rabbitmq_definitions_load_into_xivo_bus(tmp_path, names):
    try:
        set_up(rabbitmqctl, names)
        declare(rabbitmq_port(), names)
        exported = rabbitmqctl("export_definitions", "-").stdout
    finally:
        subprocess.run([RABBITMQCTL, "delete_vhost", names["vhost"]], capture_output=True)
        subprocess.run([RABBITMQCTL, "delete_user", names["user"]], capture_output=True)
    broker = start_broker("--data-dir", str(tmp_path / "data"))
    try:
        done = ours_ctl(broker, "import_definitions", "-", stdin=exported)
        assert done.stdout.startswith("Successfully imported definitions")
        check_on(broker.port, names)
        assert ours_ctl(broker, "list_user_topic_permissions", names["user"]).stdout.endswith(
            f"{names['vhost']}\tamq.topic\t^calls\t.*\n"
        )
    finally:
        broker.stop()


def test_what_cannot_be_imported_is_refused_whole(tmp_path):
    broker = start_broker("--data-dir", str(tmp_path / "data"))
    try:
        socket = os.path.join(broker.data_dir, "ctl.sock")
        for definitions, reason in (
            ({"policies": [{"name": "ha"}]}, "policies are not supported"),
            ({"users": [{"name": "x", "hashing_algorithm": "rot13"}]}, "unknown hashing"),
            ({"parameters": [{"component": "shovel", "vhost": "/"}]}, "only vhost-limits"),
            ([1, 2], "must be a JSON object"),
        ):
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "xivo_bus",
                    "ctl",
                    "--socket",
                    socket,
                    "import_definitions",
                    "-",
                ],  # fmt: skip
                input=json.dumps(definitions),
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 65 and reason in done.stderr, done.stderr
        assert ours_ctl(broker, "list_users").stdout == "user\ttags\nguest\t[administrator]\n"
    finally:
        broker.stop()
