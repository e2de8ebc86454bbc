"""AMQP over TLS: pika, aio-pika and kombu through a TLS listener, SASL EXTERNAL with a
client certificate, TLS 1.2 as the floor, client certificates required on demand. The
CA and certificates are made for each test run (trustme)."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import subprocess
import sys
import warnings

import aio_pika
import kombu
import pika
import pytest
import trustme
from conftest import READY, BrokerProcess, serve_argv

TLS_READY = "accepting AMQP/TLS connections on "


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA, a server certificate for 127.0.0.1/localhost and client certificates."""
    folder = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    files = {"ca": folder / "ca.pem", "cert": folder / "server.pem", "key": folder / "key.pem"}
    ca.cert_pem.write_to_path(files["ca"])
    server.cert_chain_pems[0].write_to_path(files["cert"])
    server.private_key_pem.write_to_path(files["key"])
    for name in ("svc", "stranger"):
        client = ca.issue_cert(f"{name}.example", common_name=name)
        files[name] = folder / f"{name}.pem"
        client.private_key_and_cert_chain_pem.write_to_path(files[name])
    return files


def tls_broker(tmp_path, pki, *extra: str) -> tuple[BrokerProcess, int]:
    """A broker with a plain and a TLS listener; returns it and the TLS port."""
    proc = subprocess.Popen(
        serve_argv(
            "--port",
            "0",
            "--no-cti",
            "--data-dir",
            str(tmp_path),
            "--ssl-listen",
            "127.0.0.1:0",
            "--ssl-certfile",
            str(pki["cert"]),
            "--ssl-keyfile",
            str(pki["key"]),
            "--ssl-cacertfile",
            str(pki["ca"]),
            *extra,
        ),
        stdout=subprocess.PIPE,
        text=True,
    )
    plain = READY.search(proc.stdout.readline())
    tls_line = proc.stdout.readline()
    assert plain and TLS_READY in tls_line, tls_line
    broker = BrokerProcess(proc, plain.group(1), int(plain.group(2)), str(tmp_path))
    return broker, int(tls_line.rsplit(":", 1)[1])


@pytest.fixture
def broker_tls(tmp_path, pki):
    broker, port = tls_broker(tmp_path, pki)
    yield broker, port
    broker.stop()


def client_context(pki, cert: str | None = None, **kwargs) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    if cert is not None:
        context.load_cert_chain(str(pki[cert]))
    for key, value in kwargs.items():
        setattr(context, key, value)
    return context


def pika_params(port: int, context: ssl.SSLContext, credentials=None) -> pika.ConnectionParameters:
    return pika.ConnectionParameters(
        "127.0.0.1",
        port,
        credentials=credentials or pika.PlainCredentials("guest", "guest"),
        ssl_options=pika.SSLOptions(context, "127.0.0.1"),
    )


def ctl(broker: BrokerProcess, *args: str) -> None:
    socket = os.path.join(broker.data_dir, "ctl.sock")
    subprocess.run(
        [sys.executable, "-m", "xivo_bus", "ctl", "-q", "--socket", socket, *args],
        check=True,
        capture_output=True,
        timeout=60,
    )


def test_pika_publishes_and_consumes_over_tls(broker_tls, pki, name):
    _, port = broker_tls
    connection = pika.BlockingConnection(pika_params(port, client_context(pki)))
    channel = connection.channel()
    channel.queue_declare(name, exclusive=True)
    channel.confirm_delivery()
    channel.basic_publish("", name, b"over TLS")
    method, _props, body = channel.basic_get(name, auto_ack=True)
    assert body == b"over TLS" and method.routing_key == name
    connection.close()


def test_aio_pika_over_tls(broker_tls, pki, name):
    _, port = broker_tls

    async def run() -> bytes:
        connection = await aio_pika.connect(
            host="127.0.0.1", port=port, ssl=True, ssl_context=client_context(pki)
        )
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(name, exclusive=True)
            await channel.default_exchange.publish(aio_pika.Message(b"aio"), routing_key=name)
            message = await queue.get(timeout=5)
            await message.ack()
            return message.body

    assert asyncio.run(run()) == b"aio"


def test_kombu_over_tls(broker_tls, pki, name):
    _, port = broker_tls
    ssl_options = {"ca_certs": str(pki["ca"]), "cert_reqs": ssl.CERT_REQUIRED}
    with kombu.Connection(f"amqp://guest:guest@127.0.0.1:{port}//", ssl=ssl_options) as conn:
        queue = kombu.Queue(name, exclusive=True)
        with conn.Producer() as producer:
            producer.publish({"n": 1}, routing_key=name, declare=[queue], serializer="json")
        message = queue(conn.default_channel).get()
        assert message.payload == {"n": 1}
        message.ack()


def handshake(port: int, pki, version: ssl.TLSVersion) -> str:
    """A TLS handshake offering only ``version``: the version agreed, or the error."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(str(pki["ca"]))
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this client offer old versions at all
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = context.maximum_version = version
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        try:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                return tls.version()
        except ssl.SSLError as error:
            return f"refused: {error.reason}"


def test_ciphers_without_forward_secrecy_are_refused(broker_tls, pki):
    _, port = broker_tls
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(str(pki["ca"]))
    context.maximum_version = ssl.TLSVersion.TLSv1_2  # TLS 1.3 suites are all fine
    context.set_ciphers("AES128-GCM-SHA256:AES256-SHA:@SECLEVEL=0")  # RSA key exchange
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with pytest.raises(ssl.SSLError):
            context.wrap_socket(raw, server_hostname="127.0.0.1")


def test_tls_below_1_2_is_refused(broker_tls, pki):
    _, port = broker_tls
    assert handshake(port, pki, ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
    assert handshake(port, pki, ssl.TLSVersion.TLSv1_3) == "TLSv1.3"
    assert handshake(port, pki, ssl.TLSVersion.TLSv1_1).startswith("refused")
    assert handshake(port, pki, ssl.TLSVersion.TLSv1).startswith("refused")


def test_external_login_with_a_client_certificate(tmp_path, pki, name):
    broker, port = tls_broker(tmp_path, pki, "--ssl-verify", "verify_peer")
    try:
        ctl(broker, "add_user", "svc", "unused")
        ctl(broker, "clear_password", "svc")
        ctl(broker, "set_permissions", "svc", f"^{name}", f"^{name}|amq.default", f"^{name}")
        external = pika.credentials.ExternalCredentials()
        connection = pika.BlockingConnection(
            pika_params(port, client_context(pki, "svc"), external)
        )
        channel = connection.channel()
        channel.queue_declare(f"{name}-q")  # within its permissions
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
            channel.queue_declare("elsewhere")
        assert refused.value.reply_text == (
            "ACCESS_REFUSED - access to queue 'elsewhere' in vhost '/' refused for user 'svc'"
        )
        connection.close()
        # a certificate naming no user: refused
        with pytest.raises(pika.exceptions.AMQPConnectionError):
            pika.BlockingConnection(pika_params(port, client_context(pki, "stranger"), external))
        # EXTERNAL without a certificate: refused; PLAIN still works on that listener
        with pytest.raises(pika.exceptions.AMQPConnectionError):
            pika.BlockingConnection(pika_params(port, client_context(pki), external))
        pika.BlockingConnection(pika_params(port, client_context(pki))).close()
        # the plain listener does not offer EXTERNAL
        with pytest.raises(pika.exceptions.AMQPConnectionError):
            pika.BlockingConnection(
                pika.ConnectionParameters(broker.host, broker.port, credentials=external)
            )
    finally:
        broker.stop()


def test_external_login_from_the_subject_alternative_name(tmp_path, pki):
    broker, port = tls_broker(
        tmp_path,
        pki,
        "--ssl-verify",
        "verify_peer",
        "--ssl-cert-login-from",
        "subject_alternative_name",
    )
    try:
        ctl(broker, "add_user", "svc.example", "unused")  # the client certificate's DNS SAN
        ctl(broker, "set_permissions", "svc.example", ".*", ".*", ".*")
        external = pika.credentials.ExternalCredentials()
        connection = pika.BlockingConnection(
            pika_params(port, client_context(pki, "svc"), external)
        )
        connection.channel().queue_declare("", exclusive=True)
        connection.close()
    finally:
        broker.stop()


def test_fail_if_no_peer_cert(tmp_path, pki):
    broker, port = tls_broker(
        tmp_path, pki, "--ssl-verify", "verify_peer", "--ssl-fail-if-no-peer-cert"
    )
    try:
        with pytest.raises(pika.exceptions.AMQPConnectionError):
            pika.BlockingConnection(pika_params(port, client_context(pki)))
        pika.BlockingConnection(pika_params(port, client_context(pki, "stranger"))).close()
    finally:
        broker.stop()


def test_bad_tls_files_are_a_clear_error(tmp_path, pki):
    done = subprocess.run(
        serve_argv(
            "--port",
            "0",
            "--no-cti",
            "--data-dir",
            str(tmp_path),
            "--ssl-listen",
            "127.0.0.1:0",
            "--ssl-certfile",
            str(tmp_path / "missing.pem"),
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "TLS: No such file or directory" in done.stderr
