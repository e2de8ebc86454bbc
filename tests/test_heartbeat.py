"""Heartbeats and the handshake timeout, seen from raw sockets (and pika).

With heartbeat=1 negotiated the broker sends a heartbeat frame at least every second
while idle, drops a client silent for about two intervals (no connection.close, like
RabbitMQ: the socket just closes) and requeues what that client had not acked.
"""

from __future__ import annotations

import select
import socket
import time

import pika
from amqp_raw import PROTOCOL_HEADER, RawClient
from pamqp import commands

HEARTBEAT = b"\x08\x00\x00\x00\x00\x00\x00\xce"


def open_raw(broker, heartbeat: int) -> RawClient:
    client = RawClient(broker.host, broker.port)
    _start, tune, opened = client.handshake(heartbeat_interval=heartbeat)
    assert tune.heartbeat == 60  # the broker proposes RabbitMQ's 60 s; the client chose
    assert isinstance(opened[1], commands.Connection.OpenOk)
    client.open_channel(1)
    return client


def read_until(sock: socket.socket, seconds: float, send_heartbeats: bool = False):
    """Read raw bytes for ``seconds`` or until the peer closes; optionally send a
    heartbeat every 0.4 s. Returns (bytes read, seconds until EOF or None)."""
    start = time.monotonic()
    deadline = start + seconds
    next_beat = start
    data = b""
    while (now := time.monotonic()) < deadline:
        if send_heartbeats and now >= next_beat:
            sock.sendall(HEARTBEAT)
            next_beat = now + 0.4
        readable, _, _ = select.select([sock], [], [], 0.05)
        if not readable:
            continue
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return data, time.monotonic() - start
        data += chunk
    return data, None


def only_heartbeats(data: bytes) -> int:
    """How many heartbeat frames ``data`` holds; fails if it holds anything else."""
    count = data.count(HEARTBEAT)
    assert data == HEARTBEAT * count, data
    return count


def test_idle_broker_sends_heartbeats_and_keeps_a_beating_client(broker):
    client = open_raw(broker, heartbeat=1)
    try:
        data, eof = read_until(client.sock, 4.0, send_heartbeats=True)
        assert eof is None, "the broker dropped a client that kept sending heartbeats"
        assert only_heartbeats(data) >= 3  # at least one per interval while idle
        client.open_channel(2)  # still a working connection
    finally:
        client.close()


def test_silent_client_is_dropped_and_its_unacked_message_requeued(broker, name):
    client = open_raw(broker, heartbeat=1)
    try:
        client.send(1, commands.Queue.Declare(queue=name))
        client.expect(commands.Queue.DeclareOk, 1)
        client.send(1, commands.Confirm.Select())
        client.expect(commands.Confirm.SelectOk, 1)
        client.publish(1, "", name, b"held by a silent client")
        client.expect(commands.Basic.Ack, 1)
        client.send(1, commands.Basic.Get(queue=name))
        get_ok = client.expect(commands.Basic.GetOk, 1)
        assert get_ok.redelivered is False
        client.recv_frame(), client.recv_frame()  # content header and body
        assert client.buffer == b""

        data, eof = read_until(client.sock, 8.0)  # silence from now on
        assert eof is not None, "a silent client was not dropped"
        assert 1.0 <= eof <= 5.0, eof  # about two intervals
        assert only_heartbeats(data) >= 1  # no connection.close: the socket just closes
    finally:
        client.close()

    params = pika.ConnectionParameters(broker.host, broker.port)
    with pika.BlockingConnection(params) as connection:
        channel = connection.channel()
        method, _properties, body = channel.basic_get(name, auto_ack=True)
        assert body == b"held by a silent client"
        assert method.redelivered is True
        assert channel.queue_delete(name).method.message_count == 0


def test_heartbeat_zero_disables_heartbeats(broker):
    client = open_raw(broker, heartbeat=0)
    try:
        data, eof = read_until(client.sock, 3.0)
        assert (data, eof) == (b"", None)
        client.open_channel(2)
    finally:
        client.close()


def test_pika_client_with_heartbeat_stays_connected(broker):
    params = pika.ConnectionParameters(broker.host, broker.port, heartbeat=1)
    with pika.BlockingConnection(params) as connection:
        assert connection._impl.params.heartbeat == 1
        deadline = time.monotonic() + 3.5
        while time.monotonic() < deadline:
            connection.process_data_events(time_limit=0.2)
        assert connection.is_open
        connection.channel().queue_declare("", exclusive=True)


def test_handshake_timeout_drops_stalled_sockets(broker):
    """A socket that sends only the protocol header, and one that sends nothing, are both
    dropped after the 10 s handshake timeout (waited for once, together)."""
    header_only = socket.create_connection((broker.host, broker.port))
    silent = socket.create_connection((broker.host, broker.port))
    try:
        header_only.sendall(PROTOCOL_HEADER)
        start_frame, header_eof = read_until(header_only, 16.0)
        silent_data, silent_eof = read_until(silent, 16.0 - header_eof if header_eof else 0.1)
        assert start_frame[:1] == b"\x01"  # it got connection.start, then nothing more
        assert start_frame.endswith(b"\xce") and HEARTBEAT not in start_frame
        assert header_eof is not None, "a socket stuck after the header was never dropped"
        assert header_eof >= 5.0, header_eof
        assert silent_data == b""
        assert silent_eof is not None, "a socket that sent nothing was never dropped"
    finally:
        header_only.close()
        silent.close()
