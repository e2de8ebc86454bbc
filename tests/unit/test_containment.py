"""A bug of ours in one connection's or one queue's callback (a timer, a callback of the
loop) is logged and contained: that connection is closed (541), or that queue's timer
stops; the shared loops (consumer timeout, memory alarm) and everyone else go on.

The bugs are played by test doubles of the roles (a consumer channel, a queue owner, a
timed channel) and of the operating system's transport that raise where the real ones
never should."""

from __future__ import annotations

import asyncio
import logging

from pamqp import commands

from xivo_bus.amqp import errors
from xivo_bus.broker import alarms as alarms_module
from xivo_bus.broker.alarms import Alarms
from xivo_bus.broker.consumer_timeout import ConsumerTimeout

from .roles_for_tests import Owner, RecordingChannel, declare, message, subscribe, vhost
from .session_for_tests import Broker, Loop, RecordingTransport


class Bug(Exception):
    pass


class CrashingChannel(RecordingChannel):
    """A consumer channel with a bug: every delivery raises."""

    def deliver(self, *_args) -> None:
        raise Bug("deliver")


class CrashingOwner(Owner):
    """An exclusive queue's owner with a bug: being told of the deletion raises."""

    def exclusive_queue_deleted(self, queue) -> None:
        raise Bug("exclusive_queue_deleted")


def test_a_failing_expiry_stops_that_queue_only(caplog):
    host, clock = vhost()
    dead = declare(host, "dead")
    subscribe(dead, CrashingChannel())  # dead-lettering into it raises
    host.bind(host.exchange("amq.fanout"), dead, "", {})
    broken = declare(
        host, "broken", **{"x-message-ttl": 10, "x-dead-letter-exchange": "amq.fanout"}
    )
    healthy = declare(host, "healthy", **{"x-message-ttl": 20})
    broken.enqueue(message(b"1", "broken"))
    healthy.enqueue(message(b"2", "healthy"))
    with caplog.at_level(logging.ERROR, "xivo_bus.broker"):
        clock.advance(0.05)  # both timers fire; the first one's bug goes no further
    assert "queue broken in vhost /: message expiry failed" in caplog.text
    assert "Bug: deliver" in caplog.text
    assert healthy.message_count == 0
    # the broken queue still serves what it is asked
    broken.enqueue(message(b"3", "broken"))
    assert broken.get(no_ack=True) is not None


def test_a_failing_queue_lease_leaves_the_other_timers_running(caplog):
    host, clock = vhost()
    # exclusive: its owner is told when it goes, and raises
    host.declare_queue("lease", False, True, False, {"x-expires": 10}, CrashingOwner())
    other = declare(host, "other", **{"x-expires": 30})
    with caplog.at_level(logging.ERROR, "xivo_bus.broker"):
        clock.advance(0.1)
    assert "queue lease in vhost /: expiry failed" in caplog.text
    assert other.deleted and "other" not in host.queues


async def until(condition, timeout: float = 10.0) -> None:
    """Let the loop run until ``condition()`` (a busy machine may be slow to fire)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition() and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)


class TimedChannel:
    """A ``roles.TimedChannel`` with one delivery unacked since the start."""

    def __init__(self, number: int, broken: bool = False):
        self.number = number
        self.closing = False
        self.broken = broken
        self.failed: list[errors.ChannelError] = []
        self.internal_errors = 0

    def unacked_tags(self):
        if self.broken:
            raise Bug("unacked_tags")
        return (1, 1)

    def fail(self, error: errors.ChannelError) -> None:
        self.failed.append(error)
        self.closing = True

    def internal_error(self) -> None:
        self.internal_errors += 1


async def test_the_consumer_timeout_survives_a_broken_channel():
    broken, overdue = TimedChannel(1, broken=True), TimedChannel(2)
    checks = []

    def channels():
        checks.append(None)
        return [broken, overdue]

    watch = ConsumerTimeout(channels, timeout=100)  # checked every 50 ms
    watch.start(asyncio.get_running_loop())
    try:
        await until(lambda: len(checks) >= 4 and broken.internal_errors >= 2)
    finally:
        watch.stop()
    assert broken.internal_errors >= 2  # its connection told at each check
    assert [error.reply_code for error in overdue.failed] == [errors.PRECONDITION_FAILED]
    assert len(checks) >= 4  # the loop went on


async def test_a_failing_memory_check_comes_back(monkeypatch, caplog):
    readings = []

    def unreadable() -> int:
        readings.append(None)
        raise OSError("/proc/self/statm: gone")

    monkeypatch.setattr(alarms_module, "resident_memory", unreadable)
    monkeypatch.setattr(alarms_module, "MEMORY_CHECK_INTERVAL", 0.02)
    alarm = Alarms(set(), memory_limit=1 << 30)
    alarm.start(asyncio.get_running_loop())
    try:
        with caplog.at_level(logging.ERROR, "xivo_bus.broker"):
            await until(lambda: len(readings) >= 3)
    finally:
        alarm.stop()
    assert len(readings) >= 3
    assert "memory alarm: check failed" in caplog.text


class BrokenTransport(RecordingTransport):
    """An operating system transport whose close raises."""

    def close(self) -> None:
        raise Bug("close")


def test_a_failing_connection_timer_drops_that_connection_only(caplog):
    loop = Loop()
    try:
        broker = Broker(loop, handshake_timeout=0.02)
        healthy = broker.connect()
        healthy.open()
        stuck = broker.connect()
        stuck.transport = BrokenTransport()
        loop.run(stuck.connection.connection_made, stuck.transport)
        stuck.send(b"AMQP\x00\x00\x09\x01")  # and then nothing: the handshake times out
        with caplog.at_level(logging.ERROR, "xivo_bus.broker"):
            loop.sleep(0.1)
        assert stuck.connection not in broker.state.connections
        assert "internal error on connection" in caplog.text
        assert not loop.escaped
        # the other connection was opened before, and goes on
        healthy.method(1, commands.Queue.Declare(queue="still-here"))
        assert [type(method) for _, method in healthy.received()] == [commands.Queue.DeclareOk]
        assert healthy.connection in broker.state.connections
    finally:
        loop.close()


def test_a_bug_while_a_connection_drains_closes_it_with_541():
    loop = Loop()
    try:
        broker = Broker(loop)
        client, other = broker.connect(), broker.connect()
        client.open()
        other.open()
        client.method(1, commands.Queue.Declare(queue="q"))
        client.method(1, commands.Basic.Qos(prefetch_count=1))
        client.method(1, commands.Basic.Consume(queue="q", consumer_tag="c"))
        queue = broker.vhost.queues["q"]
        crashing = CrashingChannel(room=0)  # takes nothing yet
        subscribe(queue, crashing, "crashing")
        client.publish(1, "", "q", b"1", b"\0\0")  # to the client (its prefetch is full)
        client.publish(1, "", "q", b"2", b"\0\0")  # stays ready
        client.received()
        assert queue.message_count == 1
        crashing.room = 10
        # the client's socket drains: the output calls back, the queue dispatches, the
        # bug surfaces in that callback and closes this connection only
        loop.run(client.connection.resume_writing)
        closes = client.closes()
        assert [(channel, close.reply_code) for channel, close in closes] == [(0, 541)]
        assert not loop.escaped
        other.method(1, commands.Queue.Declare(queue="q2"))
        assert [type(method) for _, method in other.received()] == [commands.Queue.DeclareOk]
    finally:
        loop.close()
