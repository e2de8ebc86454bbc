"""xivo-bus events / publish / listen, run as a person would run them."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

from conftest import ChildLines

CLI = [sys.executable, "-m", "xivo_bus"]


def run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


def test_events_lists_the_catalogue():
    result = run("events")
    assert result.returncode == 0
    assert result.stdout.splitlines()[:3] == [
        "call_form_result",
        "  exchange xivo-cti (direct), routing key call_form_result",
        "  data: {user_id: integer, variables: object of string or boolean or integer or number}",
    ]


def test_events_schema_prints_json_schema_and_asyncapi():
    document = json.loads(run("events", "schema").stdout)
    assert document["schemas"]["call_form_result"]["properties"]["name"] == {
        "const": "call_form_result"
    }
    assert document["asyncapi"]["asyncapi"].startswith("2.")
    assert "call_form_result" in document["asyncapi"]["channels"]


def test_publish_rejects_invalid_data_with_one_line(broker):
    result = run(
        "publish", "call_form_result", '{"user_id": "40", "variables": {}}', "--url", broker.url
    )
    assert result.returncode == 1
    assert result.stderr == (
        "xivo-bus: invalid call_form_result event: data.user_id: input should be a valid integer\n"
    )
    result = run("publish", "call_form_result", "{nope", "--url", broker.url)
    assert result.returncode == 1
    assert result.stderr.startswith("xivo-bus: DATA_JSON is not valid JSON: ")


def test_publish_without_broker_fails_within_timeout(unused_port):
    result = run(
        "publish",
        "call_form_result",
        '{"user_id": 1, "variables": {}}',
        "--url",
        f"amqp://guest:guest@127.0.0.1:{unused_port}/",
        "--timeout",
        "1",
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(
        f"xivo-bus: not published: no confirm from amqp://guest@127.0.0.1:{unused_port}/ "
        "within 1 s: AMQPConnectionError"
    )


def listen(*args: str) -> tuple[subprocess.Popen, ChildLines]:
    proc = subprocess.Popen(
        [*CLI, "listen", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    return proc, ChildLines(proc)


def wait_until_listening(proc: subprocess.Popen) -> None:
    line = proc.stderr.readline()
    assert line.startswith("listening for call_form_result"), line


def test_listen_prints_published_events(broker):
    proc, lines = listen("--url", broker.url)
    try:
        wait_until_listening(proc)
        result = run(
            "publish",
            "call_form_result",
            '{"user_id": 40, "variables": {"firstname": "John"}}',
            "--url",
            broker.url,
        )
        assert result.returncode == 0
        assert result.stdout == "published call_form_result to xivo-cti\n"
        stamp, name, data = lines.wait_for("20").split("  ")
        assert name == "call_form_result"
        assert json.loads(data) == {"user_id": 40, "variables": {"firstname": "John"}}
        assert len(stamp) == len("2026-11-27 10:56:33.936")
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0


def test_listen_json_lines(broker):
    proc, lines = listen("call_form_result", "--json", "--url", broker.url)
    try:
        wait_until_listening(proc)
        run("publish", "call_form_result", '{"user_id": 5, "variables": {}}', "--url", broker.url)
        document = json.loads(lines.wait_for("{"))
        assert document["name"] == "call_form_result"
        assert set(document["data"]) == {"user_id", "variables"}
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0


def test_url_may_list_several_brokers(broker, unused_port):
    """As for a RabbitMQ cluster: --url takes URLs separated by commas, the first that
    answers is used."""
    urls = f"amqp://guest:guest@127.0.0.1:{unused_port}/%2F,{broker.url}"
    proc, lines = listen("call_form_result", "--json", "--url", urls)
    try:
        line = proc.stderr.readline()
        assert line == (
            f"listening for call_form_result on amqp://guest@127.0.0.1:{unused_port}/%2F, "
            f"amqp://guest@{broker.host}:{broker.port}/%2F (Ctrl-C to stop)\n"
        )
        result = run(
            "publish", "call_form_result", '{"user_id": 9, "variables": {}}', "--url", urls
        )
        assert result.returncode == 0, result.stderr
        assert json.loads(lines.wait_for("{"))["data"]["user_id"] == 9
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
