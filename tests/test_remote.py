"""A service on another host: a network namespace made by the test, joined to this one by
a veth pair (the traffic never leaves the machine). From there a service connects over
TLS as its own user with only its permissions, while guest is refused as RabbitMQ refuses
it from a non-loopback address. Skipped, with the reason, where namespaces cannot be made.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import uuid

import pytest
import trustme
from conftest import READY, serve_argv

HOST_ADDRESS, REMOTE_ADDRESS = "10.231.7.1", "10.231.7.2"  # a /30 of our own namespace


def run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=30)


@pytest.fixture
def remote_host():
    """The name of a network namespace that reaches HOST_ADDRESS over a veth pair."""
    if shutil.which("ip") is None:
        pytest.skip("no 'ip' command (iproute2) to make a network namespace")
    tag = uuid.uuid4().hex[:6]
    namespace, host_end, remote_end = f"xb-{tag}", f"xbh{tag}", f"xbr{tag}"
    made = run("ip", "netns", "add", namespace)
    if made.returncode != 0:
        pytest.skip(f"cannot make a network namespace here: {made.stderr.strip()}")
    try:
        for command in (
            ("ip", "link", "add", host_end, "type", "veth", "peer", "name", remote_end),
            ("ip", "link", "set", remote_end, "netns", namespace),
            ("ip", "addr", "add", f"{HOST_ADDRESS}/30", "dev", host_end),
            ("ip", "link", "set", host_end, "up"),
            ("ip", "-n", namespace, "addr", "add", f"{REMOTE_ADDRESS}/30", "dev", remote_end),
            ("ip", "-n", namespace, "link", "set", remote_end, "up"),
            ("ip", "-n", namespace, "link", "set", "lo", "up"),
        ):
            done = run(*command)
            if done.returncode != 0:
                pytest.skip(f"cannot wire the namespace: {' '.join(command)}: {done.stderr}")
        yield namespace
    finally:
        run("ip", "link", "del", host_end)
        run("ip", "netns", "del", namespace)


CLIENT = textwrap.dedent(
    """
    import json, ssl, sys
    import pika
    host, port, tls_port, ca = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    seen = {}
    def attempt(label, port, user, password, action=None, tls=False):
        params = pika.ConnectionParameters(
            host, port, credentials=pika.PlainCredentials(user, password),
            connection_attempts=1, socket_timeout=10,
            ssl_options=pika.SSLOptions(ssl.create_default_context(cafile=ca), host)
            if tls else None)
        try:
            connection = pika.BlockingConnection(params)
        except Exception as error:
            seen[label] = type(error).__name__ + ": " + str(error)
            return
        try:
            channel = connection.channel()
            if action:
                action(channel)
            seen[label] = "ok"
        except pika.exceptions.ChannelClosedByBroker as error:
            seen[label] = [error.reply_code, error.reply_text]
        connection.close()
    attempt("guest", port, "guest", "guest")
    attempt("svc plain", port, "svc", "svc-pw", lambda ch: ch.queue_declare("svc.jobs"))
    attempt("svc tls", tls_port, "svc", "svc-pw", lambda ch: ch.queue_declare("svc.jobs"), True)
    attempt("svc tls, not its queue", tls_port, "svc", "svc-pw",
            lambda ch: ch.queue_declare("billing.jobs"), True)
    print(json.dumps(seen))
    """
)


def test_a_service_on_another_host(remote_host, tmp_path):
    ca = trustme.CA()
    server = ca.issue_cert(HOST_ADDRESS)
    ca.cert_pem.write_to_path(tmp_path / "ca.pem")
    server.cert_chain_pems[0].write_to_path(tmp_path / "cert.pem")
    server.private_key_pem.write_to_path(tmp_path / "key.pem")
    data = tmp_path / "data"
    broker = subprocess.Popen(
        serve_argv(
            "--no-cti",
            "--data-dir",
            str(data),
            "--listen",
            f"{HOST_ADDRESS}:0",
            "--ssl-listen",
            f"{HOST_ADDRESS}:0",
            "--ssl-certfile",
            str(tmp_path / "cert.pem"),
            "--ssl-keyfile",
            str(tmp_path / "key.pem"),
        ),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        port = int(READY.search(broker.stdout.readline()).group(2))
        tls_port = int(broker.stdout.readline().rsplit(":", 1)[1])
        ctl = [sys.executable, "-m", "xivo_bus", "ctl", "-q", "--data-dir", str(data)]
        for args in (
            ("add_user", "svc", "svc-pw"),
            ("set_permissions", "svc", "^svc\\.", "^svc\\.", "^svc\\."),
        ):
            subprocess.run([*ctl, *args], check=True, capture_output=True, timeout=60)
        client = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                remote_host,
                sys.executable,
                "-c",
                CLIENT,
                HOST_ADDRESS,
                str(port),
                str(tls_port),
                str(tmp_path / "ca.pem"),
            ],  # fmt: skip
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ},
        )
        assert client.returncode == 0, client.stderr
        seen = json.loads(client.stdout)
    finally:
        broker.terminate()
        broker.wait(10)
    assert seen["guest"].startswith("ProbableAuthenticationError")
    assert (
        "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN" in (seen["guest"])
    )
    assert seen["svc plain"] == "ok"
    assert seen["svc tls"] == "ok"
    assert seen["svc tls, not its queue"] == [
        403,
        "ACCESS_REFUSED - access to queue 'billing.jobs' in vhost '/' refused for user 'svc'",
    ]
