"""`xivo-bus ctl` against a running broker: rabbitmqctl's verbs, output and exit codes;
users, vhosts and permissions kept across a kill -9; the files that hold secrets."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time

import pika
import pytest
from conftest import start_broker
from pika.exceptions import ChannelClosedByBroker, ProbableAccessDeniedError


def ctl(broker, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    socket = os.path.join(broker.data_dir, "ctl.sock")
    return subprocess.run(
        [sys.executable, "-m", "xivo_bus", "ctl", "--socket", socket, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def login(broker, user: str, password: str, vhost: str = "/") -> pika.BlockingConnection:
    return pika.BlockingConnection(
        pika.ConnectionParameters(
            broker.host, broker.port, vhost, pika.PlainCredentials(user, password)
        )
    )


def closed_with(connection: pika.BlockingConnection, timeout: float = 30) -> str:
    """The text of the connection.close the broker sends (polled up to ``timeout``)."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            connection.process_data_events(time_limit=0.1)
    except pika.exceptions.ConnectionClosedByBroker as closed:
        return closed.reply_text
    raise AssertionError(f"still open after {timeout} s")


@pytest.fixture
def own_broker(tmp_path):
    process = start_broker("--data-dir", str(tmp_path))
    yield process
    if process.proc.poll() is None:
        process.proc.kill()
        process.proc.wait()


def test_users_as_rabbitmqctl_shows_them(own_broker):
    done = ctl(own_broker, "list_users")
    assert done.returncode == 0
    assert done.stdout == "Listing users ...\nuser\ttags\nguest\t[administrator]\n"
    done = ctl(own_broker, "add_user", "alice", "s3cret")
    assert done.returncode == 0
    assert done.stdout.startswith('Adding user "alice" ...\nDone.')
    done = ctl(own_broker, "add_user", "alice", "again")
    assert (done.returncode, done.stderr) == (70, 'Error:\nUser "alice" already exists\n')
    assert ctl(own_broker, "set_user_tags", "alice", "monitoring", "management").returncode == 0
    done = ctl(own_broker, "-q", "list_users", "--formatter", "json")
    assert json.loads(done.stdout) == [
        {"user": "alice", "tags": ["monitoring", "management"]},
        {"user": "guest", "tags": ["administrator"]},
    ]
    assert ctl(own_broker, "authenticate_user", "alice", stdin="s3cret\n").stdout.endswith(
        "Success\n"
    )
    done = ctl(own_broker, "authenticate_user", "alice", "wrong")
    assert done.returncode == 65 and "invalid credentials" in done.stderr
    assert ctl(own_broker, "change_password", "alice", stdin="n3w\n").returncode == 0
    assert ctl(own_broker, "authenticate_user", "alice", "n3w").returncode == 0
    done = ctl(own_broker, "delete_user", "bob")
    assert (done.returncode, done.stderr) == (67, 'Error:\nUser "bob" does not exist\n')


def test_vhosts_and_permissions(own_broker):
    assert ctl(own_broker, "add_vhost", "billing").returncode == 0
    assert ctl(own_broker, "add_vhost", "billing").returncode == 0  # as rabbitmqctl
    assert ctl(own_broker, "add_user", "svc", "pw").returncode == 0
    done = ctl(own_broker, "set_permissions", "-p", "nope", "svc", ".*", ".*", ".*")
    assert (done.returncode, done.stderr) == (69, "Error:\nVirtual host nope does not exist\n")
    done = ctl(own_broker, "set_permissions", "-p", "billing", "bob", ".*", ".*", ".*")
    assert (done.returncode, done.stderr) == (67, "Error:\nUser bob does not exist\n")
    done = ctl(own_broker, "set_permissions", "-p", "billing", "svc", "(", ".*", ".*")
    assert done.returncode == 69 and "invalid regular expression" in done.stderr
    done = ctl(own_broker, "set_permissions", "-p", "billing", "svc", "^svc-", ".*", ".*")
    assert done.returncode == 0
    done = ctl(own_broker, "-q", "list_permissions", "-p", "billing")
    assert done.stdout == "user\tconfigure\twrite\tread\nsvc\t^svc-\t.*\t.*\n"
    done = ctl(own_broker, "list_user_permissions", "svc", "--formatter", "json", "-q")
    assert json.loads(done.stdout) == [
        {"vhost": "billing", "configure": "^svc-", "write": ".*", "read": ".*"}
    ]
    with pytest.raises(ProbableAccessDeniedError):
        login(own_broker, "svc", "pw", "/")  # no permissions there
    connection = login(own_broker, "svc", "pw", "billing")
    channel = connection.channel()
    channel.queue_declare("svc-orders")
    with pytest.raises(ChannelClosedByBroker) as refused:
        channel.queue_declare("other")
    assert refused.value.reply_code == 403
    done = ctl(own_broker, "-q", "list_vhosts")
    assert done.stdout == "name\n/\nbilling\n"
    assert ctl(own_broker, "delete_vhost", "billing").returncode == 0
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:
        connection.process_data_events(time_limit=2)
        connection.channel()
    assert closed.value.reply_code == 320
    assert closed.value.reply_text == "CONNECTION_FORCED - vhost 'billing' is deleted"
    done = ctl(own_broker, "delete_vhost", "billing")
    assert (done.returncode, done.stderr) == (65, "Error:\nVirtual host 'billing' does not exist\n")


def test_topic_permissions_listed(own_broker):
    ctl(own_broker, "add_user", "svc", "pw")
    done = ctl(own_broker, "set_topic_permissions", "svc", "amq.topic", "^a\\.", "^b\\.")
    assert done.stdout == (
        'Setting topic permissions on "amq.topic" for user "svc" in vhost "/" ...\n'
    )
    done = ctl(own_broker, "-q", "list_topic_permissions")
    assert done.stdout == "user\texchange\twrite\tread\nsvc\tamq.topic\t^a\\.\t^b\\.\n"
    assert ctl(own_broker, "clear_topic_permissions", "svc").returncode == 0
    assert ctl(own_broker, "-q", "list_user_topic_permissions", "svc").stdout == (
        "vhost\texchange\twrite\tread\n"
    )


def test_everything_survives_kill_9_and_secrets_are_owner_only(tmp_path):
    broker = start_broker("--data-dir", str(tmp_path))
    try:
        for args in (
            ("add_user", "svc", "pw"),
            ("add_vhost", "calls"),
            ("set_permissions", "-p", "calls", "svc", ".*", ".*", ".*"),
            ("set_topic_permissions", "-p", "calls", "svc", "amq.topic", ".*", ".*"),
            ("set_user_tags", "svc", "monitoring"),
            ("delete_user", "guest"),
        ):
            assert ctl(broker, *args).returncode == 0, args
        for name in ("broker.sqlite", "broker.sqlite-wal", "ctl.sock"):
            mode = stat.S_IMODE(os.stat(tmp_path / name).st_mode)
            assert mode == 0o600, (name, oct(mode))
    finally:
        broker.stop(signal.SIGKILL)
    broker = start_broker("--data-dir", str(tmp_path))
    try:
        assert ctl(broker, "-q", "list_users").stdout == "user\ttags\nsvc\t[monitoring]\n"
        assert ctl(broker, "-q", "list_topic_permissions", "-p", "calls").stdout.endswith(
            "svc\tamq.topic\t.*\t.*\n"
        )
        login(broker, "svc", "pw", "calls").close()
        with pytest.raises(pika.exceptions.ProbableAuthenticationError):
            login(broker, "guest", "guest")  # deleted: not made again
    finally:
        broker.stop()


def test_no_broker_no_socket(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "xivo_bus", "ctl", "--data-dir", str(tmp_path), "list_users"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 69
    assert f"cannot reach the broker's control socket {tmp_path}/ctl.sock" in done.stderr


def test_listings_and_maintenance(own_broker):
    connection = login(own_broker, "guest", "guest")
    channel = connection.channel()
    channel.queue_declare("orders", arguments={"x-max-length": 10})
    channel.queue_bind("orders", "amq.direct", "new")
    channel.basic_publish("", "orders", b"1")
    channel.basic_publish("", "orders", b"2")
    channel.basic_qos(prefetch_count=1)
    channel.basic_consume("orders", lambda *args: None, consumer_tag="worker")
    deadline = time.monotonic() + 30
    while "orders\t1\t1\t1" not in ctl(
        own_broker, "-q", "list_queues", "name", "messages_ready", "messages_unacknowledged",
        "consumers",
    ).stdout:  # fmt: skip
        assert time.monotonic() < deadline, "the delivery never showed"
        connection.process_data_events(time_limit=0.1)
    done = ctl(own_broker, "list_queues", "name", "durable", "arguments")
    assert done.stdout == (
        "Listing queues for vhost / ...\nname\tdurable\targuments\n"
        'orders\tfalse\t[{"x-max-length",10}]\n'
    )
    assert ctl(own_broker, "-q", "list_bindings").stdout == (
        "source_name\tsource_kind\tdestination_name\tdestination_kind\trouting_key\targuments\n"
        "\texchange\torders\tqueue\torders\t[]\n"
        "amq.direct\texchange\torders\tqueue\tnew\t[]\n"
    )
    exchanges = ctl(own_broker, "-q", "list_exchanges", "--formatter", "json").stdout
    assert {"name": "xivo-cti", "type": "direct"} in json.loads(exchanges)
    connections = ctl(own_broker, "-q", "list_connections", "name", "user", "channels").stdout
    [header, row] = connections.splitlines()
    name, user, channels = row.split("\t")
    assert (header, user, channels) == ("name\tuser\tchannels", "guest", "1")
    consumers = ctl(own_broker, "-q", "list_consumers").stdout.splitlines()[1].split("\t")
    assert consumers[0] == "orders" and consumers[2:6] == ["worker", "true", "1", "true"]
    channels = ctl(own_broker, "-q", "list_channels").stdout.splitlines()[1].split("\t")
    assert channels[1:] == ["guest", "1", "1"]
    done = ctl(own_broker, "list_queues", "nonsense")
    assert (done.returncode, done.stderr) == (64, "Error:\nInvalid info item(s): nonsense\n")
    ctl(own_broker, "close_connection", name, "maintenance")
    assert closed_with(connection) == "CONNECTION_FORCED - maintenance"
    assert ctl(own_broker, "purge_queue", "orders").returncode == 0
    done = ctl(own_broker, "delete_queue", "orders")
    assert done.stdout.endswith("Queue was successfully deleted with 0 ready messages\n")
    done = ctl(own_broker, "purge_queue", "orders")
    assert (done.returncode, done.stderr) == (69, "Error:\nnot_found\n")
    other = login(own_broker, "guest", "guest")
    done = ctl(own_broker, "close_all_connections", "bye")
    assert done.stdout.endswith("Closed 1 connections\n")
    assert closed_with(other) == "CONNECTION_FORCED - bye"


def test_status_as_rabbitmqctl_sections_and_json(own_broker):
    connection = login(own_broker, "guest", "guest")
    shown = ctl(own_broker, "status").stdout
    assert shown.startswith("Status of node xivo-bus@")
    for section in ("Runtime", "Data directory", "Alarms", "Memory", "Totals", "Listeners"):
        assert f"\n{section}\n\n" in shown, section
    assert "Connection count: 1\n" in shown and "Alarms\n\n(none)" in shown
    assert f"port: {own_broker.port}, protocol: amqp, purpose: AMQP 0-9-1" in shown
    status = json.loads(ctl(own_broker, "-q", "status", "--formatter", "json").stdout)
    assert status["totals"]["connection_count"] == 1
    assert status["data_directory"] == own_broker.data_dir
    assert status["pid"] == own_broker.proc.pid and status["is_under_maintenance"] is False
    assert {"interface", "port", "protocol", "purpose", "node"} <= set(status["listeners"][0])
    connection.close()
