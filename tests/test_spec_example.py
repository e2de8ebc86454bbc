"""Acceptance: the spec's example, end to end, each party a process of its own.

``xivo-bus serve`` runs as a child process; the spec's example client
(``spec_example_client.py``) runs as another, and a third publishes the spec's
call_form_result event to exchange ``xivo-cti`` the way the XiVO CTI server did.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pika
import pika.exceptions
import pytest
from conftest import ChildLines

CLIENT = Path(__file__).with_name("spec_example_client.py")

EVENT = {
    "name": "call_form_result",
    "data": {"user_id": 40, "variables": {"firstname": "John", "lastname": "Doe"}},
}
BODY = json.dumps(EVENT)

# The CTI server's side: another event first (no binding for it, so the client must not
# see it), then call_form_result, mandatory and confirmed so an unroutable event fails.
PUBLISHER = """
import sys, pika
port, body = int(sys.argv[1]), sys.argv[2]
connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
channel = connection.channel()
channel.confirm_delivery()
channel.basic_publish("xivo-cti", "status.user", b'{"name": "status.user", "data": null}')
channel.basic_publish("xivo-cti", "call_form_result", body.encode(), mandatory=True)
connection.close()
print("published", flush=True)
"""


def declare_xivo_cti(port: int) -> None:
    """What the CTI server did at start-up, before any client could bind."""
    with pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port)) as connection:
        connection.channel().exchange_declare("xivo-cti", "direct", durable=True)


def start_client(port: int, how: str, limit: int = 1) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if how == "argv":
        args = [str(port), str(limit)]
    else:  # the spec's bare command line, the rest from the environment
        env.update(XIVO_BUS_PORT=str(port), XIVO_BUS_EXIT_AFTER=str(limit))
        args = []
    return subprocess.Popen(
        [sys.executable, str(CLIENT), *args], stdout=subprocess.PIPE, text=True, env=env
    )


def publish(port: int, body: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PUBLISHER, str(port), body],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["published"]


def ended(client) -> None:
    """The client must have exited by itself with status 0; it is killed otherwise."""
    try:
        assert client.wait(timeout=10) == 0
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()


def test_spec_example_receives_and_acks_call_form_result(fresh_broker):
    declare_xivo_cti(fresh_broker.port)
    client = start_client(fresh_broker.port, "argv")
    try:
        out = ChildLines(client)
        queue_name = out.wait_for("ready", timeout=20).split()[1]
        assert queue_name.startswith("amq.gen-")

        publish(fresh_broker.port, BODY)

        lines = out.rest(timeout=20)
    finally:
        ended(client)

    assert lines == [f"ready {queue_name}", f"Received: {BODY}", "acked 1", "left 0"]
    assert json.loads(lines[1].removeprefix("Received: ")) == EVENT

    # The queue was exclusive: gone with the client's connection, nothing left behind.
    with pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", fresh_broker.port)) as c:
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
            c.channel().queue_declare(queue_name, passive=True)
    assert closed.value.reply_code == 404
    assert closed.value.reply_text == f"NOT_FOUND - no queue '{queue_name}' in vhost '/'"


def test_spec_example_takes_port_from_environment_and_gets_every_event(fresh_broker):
    declare_xivo_cti(fresh_broker.port)
    client = start_client(fresh_broker.port, "env", limit=2)
    try:
        out = ChildLines(client)
        out.wait_for("ready", timeout=20)
        first = json.dumps({**EVENT, "data": {**EVENT["data"], "user_id": 41}})
        publish(fresh_broker.port, first)
        publish(fresh_broker.port, BODY)
        lines = out.rest(timeout=20)
    finally:
        ended(client)
    assert lines[1:] == [f"Received: {first}", "acked 1", f"Received: {BODY}", "acked 2", "left 0"]
