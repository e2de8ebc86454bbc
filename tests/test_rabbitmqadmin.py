"""``rabbitmqadmin``, as Debian's rabbitmq-server package ships it, against xivo-bus's
management API: it lists, declares, publishes, gets, purges and deletes, and prints the
same as against RabbitMQ's (the compat node's, when there is one)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from urllib.parse import urlsplit

import pytest
from conftest import start_management_broker

RABBITMQADMIN = shutil.which("rabbitmqadmin") or "/usr/bin/rabbitmqadmin"
RABBITMQ_API = os.environ.get("XIVO_BUS_COMPAT_MANAGEMENT_URL", "")
pytestmark = pytest.mark.skipif(
    not os.path.exists(RABBITMQADMIN),
    reason="rabbitmqadmin is not installed (Debian's rabbitmq-server package has it; "
    ".ci/setup-rabbitmq.sh installs it)",
)


@pytest.fixture(scope="module")
def ours():
    process, base = start_management_broker()
    yield urlsplit(base).port
    process.stop()


def admin(port: int, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(
        ["python3", RABBITMQADMIN, "-H", "127.0.0.1", "-P", str(port), "-V", "/", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


def listed_when(port: int, queue: str, messages: int) -> str:
    """``list queues name messages`` once it shows ``messages`` for ``queue`` (RabbitMQ's
    statistics lag by up to 5 s): the queue's row as printed in JSON."""
    deadline = time.monotonic() + 30
    while True:
        listed = json.loads(
            admin(port, "-f", "raw_json", "list", "queues", "name", "messages").stdout
        )
        rows = [row for row in listed if row["name"] == queue]
        if rows and rows[0].get("messages") == messages or time.monotonic() > deadline:
            return repr(rows)
        time.sleep(0.2)


def session(port: int, tag: str) -> list[str]:
    """What rabbitmqadmin prints through a whole session of an operator."""
    queue, exchange = f"adm-q-{tag}", f"adm-x-{tag}"
    printed = [
        admin(port, "declare", "queue", f"name={queue}", "durable=false").stdout,
        admin(port, "declare", "exchange", f"name={exchange}", "type=fanout").stdout,
        admin(
            port,
            "declare",
            "binding",
            f"source={exchange}",
            f"destination={queue}",
            "routing_key=r",
        ).stdout,  # fmt: skip
        admin(port, "publish", f"exchange={exchange}", "routing_key=r", "payload=hello").stdout,
        admin(port, "publish", "routing_key=" + queue, "payload=second").stdout,
    ]
    printed.append(listed_when(port, queue, 2))
    rows = admin(port, "list", "queues", "name", "messages").stdout.splitlines()
    printed.append("\n".join(row for row in rows if queue in row or "name" in row))
    exchanges = json.loads(admin(port, "-f", "raw_json", "list", "exchanges").stdout)
    printed.append(repr([row["type"] for row in exchanges if row["name"] == exchange]))
    bindings = json.loads(admin(port, "-f", "raw_json", "list", "bindings").stdout)
    printed.append(repr(sorted((b["source"], b["routing_key"]) for b in bindings
                               if b["destination"] == queue)))  # fmt: skip
    printed.append(admin(port, "get", f"queue={queue}", "ackmode=ack_requeue_true").stdout)
    printed.append(admin(port, "-f", "tsv", "get", f"queue={queue}", "count=2").stdout)
    printed.append(admin(port, "purge", "queue", f"name={queue}").stdout)
    printed.append(listed_when(port, queue, 0))
    printed.append(admin(port, "delete", "queue", f"name={queue}").stdout)
    printed.append(admin(port, "delete", "exchange", f"name={exchange}").stdout)
    missing = admin(port, "get", f"queue={queue}", check=False)
    printed.append(f"{missing.returncode} {missing.stdout}{missing.stderr}")
    return printed


def test_operator_session_against_xivo_bus(ours):
    tag = uuid.uuid4().hex[:8]
    printed = session(ours, tag)
    queue = f"adm-q-{tag}"
    assert printed[0].strip() == "queue declared"
    assert printed[1].strip() == "exchange declared"
    assert printed[2].strip() == "binding declared"
    assert printed[3].strip() == printed[4].strip() == "Message published"
    assert printed[5] == repr([{"messages": 2, "name": queue}])  # keys sorted, as RabbitMQ
    assert queue in printed[6] and "| 2 " in printed[6]
    assert printed[7] == repr(["fanout"])
    assert printed[8] == repr([("", queue), (f"adm-x-{tag}", "r")])
    assert "hello" in printed[9]
    assert "hello" in printed[10] and "second" in printed[10]
    assert printed[11].strip() == "queue purged"
    assert printed[12] == repr([{"messages": 0, "name": queue}])
    assert printed[13].strip() == "queue deleted"
    assert printed[14].strip() == "exchange deleted"
    assert printed[15].startswith("1 ") and "Not found" in printed[15]


@pytest.mark.skipif(not RABBITMQ_API, reason="no RabbitMQ management API to compare with")
def test_same_output_as_against_rabbitmq(ours):
    tag = uuid.uuid4().hex[:8]
    assert session(ours, tag) == session(urlsplit(RABBITMQ_API).port, tag)
