"""The client library against a real broker: ours, and RabbitMQ when XIVO_BUS_COMPAT_URL
points at one."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import threading

import aio_pika
import pytest
from conftest import start_broker

from xivo_bus import client, events

FAST = client.Backoff(initial=0.05, maximum=0.5)


@pytest.fixture(params=["xivo-bus", "rabbitmq"])
def bus_url(request, broker):
    if request.param == "xivo-bus":
        return broker.url
    url = os.environ.get("XIVO_BUS_COMPAT_URL")
    if not url:
        pytest.skip("XIVO_BUS_COMPAT_URL is not set: no RabbitMQ to compare with")
    return url


async def get_one(queue: aio_pika.abc.AbstractQueue, timeout: float = 10.0):
    """basic.get until a message is there; it is acked."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (message := await queue.get(fail=False)) is None:
        assert loop.time() < deadline, f"nothing arrived in {queue.name}"
        await asyncio.sleep(0.02)
    await message.ack()
    return message


def call_form(user_id: int, **variables: str) -> events.CallFormResult:
    return events.CallFormResult(user_id=user_id, variables=variables)


async def wait_for(predicate, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_round_trip(bus_url):
    received: list = []
    consumer = client.Consumer(bus_url, backoff=FAST)
    consumer.subscribe("call_form_result", received.append)
    async with consumer:
        await consumer.wait_connected(10)
        async with client.Publisher(bus_url) as publisher:
            await publisher.publish(call_form(40, firstname="John", lastname="Doe"))
            await publisher.publish(events.GenericEvent("call_form_result_other", {"x": 1}))
        await wait_for(lambda: received)
    assert received == [call_form(40, firstname="John", lastname="Doe")]


async def test_consumer_sees_spec_json_and_headers(bus_url):
    """A plain AMQP consumer (as the spec's example) receives exactly {"name", "data"}."""
    connection = await aio_pika.connect(bus_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue("", exclusive=True)
        await queue.bind("xivo-cti", "call_form_result")
        async with client.Publisher(bus_url) as publisher:
            await publisher.publish(call_form(40, firstname="John"))
        message = await queue.get(timeout=5)
        await message.ack()
    assert message.body == (
        b'{"name": "call_form_result", "data": {"user_id": 40, "variables": {"firstname": "John"}}}'
    )
    assert message.content_type == "application/json"
    assert message.headers["name"] == "call_form_result"
    assert message.exchange == "xivo-cti" and message.routing_key == "call_form_result"


async def test_any_callable_is_a_handler(bus_url):
    seen: list = []

    class Handlers:
        def method(self, event):
            seen.append(("method", event.user_id))

    async def coroutine(event):
        seen.append(("coroutine", event.user_id))

    def tagged(tag, event):
        seen.append((tag, event.user_id))

    consumer = client.Consumer(bus_url, backoff=FAST)
    for handler in (
        Handlers().method,
        coroutine,
        functools.partial(tagged, "partial"),
        lambda event: seen.append(("lambda", event.user_id)),
    ):
        consumer.subscribe("call_form_result", handler)
    async with consumer:
        await consumer.wait_connected(10)
        async with client.Publisher(bus_url) as publisher:
            await publisher.publish(call_form(7))
        await wait_for(lambda: len(seen) == 4)
    assert sorted(seen) == [("coroutine", 7), ("lambda", 7), ("method", 7), ("partial", 7)]


async def test_raising_handler_loses_nothing(bus_url, name):
    """A failing handler gets the event twice, then it is parked in the dead-letter queue."""
    attempts: list = []

    def failing(event):
        attempts.append(event.user_id)
        raise RuntimeError("handler broke")

    dead_letters = f"{name}-failed"
    consumer = client.Consumer(bus_url, backoff=FAST, dead_letter_queue=dead_letters)
    consumer.subscribe("call_form_result", failing)
    async with consumer:
        await consumer.wait_connected(10)
        async with client.Publisher(bus_url) as publisher:
            await publisher.publish(call_form(13))
        await wait_for(lambda: consumer.failed == 2)
        connection = await aio_pika.connect(bus_url)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(dead_letters, durable=True)
            parked = await get_one(queue)
            await queue.delete()
    assert attempts == [13, 13]
    assert events.decode(parked.body) == call_form(13)
    assert parked.headers["x-xivo-bus-error"] == "RuntimeError: handler broke"
    assert parked.headers["x-xivo-bus-routing-key"] == "call_form_result"


async def test_undecodable_event_is_parked_not_dropped(bus_url, name):
    dead_letters = f"{name}-failed"
    consumer = client.Consumer(bus_url, backoff=FAST, dead_letter_queue=dead_letters)
    consumer.subscribe("call_form_result", lambda event: None)
    async with consumer:
        await consumer.wait_connected(10)
        connection = await aio_pika.connect(bus_url)
        async with connection:
            channel = await connection.channel()
            exchange = await channel.get_exchange("xivo-cti")
            await exchange.publish(
                aio_pika.Message(b'{"name": "call_form_result"'), "call_form_result"
            )
            queue = await channel.declare_queue(dead_letters, durable=True)
            parked = await get_one(queue)
            await queue.delete()
    assert parked.body == b'{"name": "call_form_result"'
    assert parked.headers["x-xivo-bus-error"].startswith("undecodable event: body is not")


async def test_publish_times_out_when_no_broker_answers(unused_port):
    publisher = client.Publisher(
        f"amqp://guest:guest@127.0.0.1:{unused_port}/", timeout=0.5, backoff=FAST
    )
    with pytest.raises(client.PublishTimeout) as error:
        await publisher.publish(call_form(1))
    assert f"no confirm from amqp://guest@127.0.0.1:{unused_port}/ within 0.5 s" in str(error.value)
    assert "AMQPConnectionError" in str(error.value)
    assert publisher.buffered == 0  # a timed-out event is withdrawn
    await publisher.close()


def test_several_urls_in_one_string_or_a_list():
    """As RabbitMQ users write a cluster's addresses: a comma starts another URL only
    where a scheme follows, so a comma inside a URL (a password) stays in it."""
    a, b = "amqp://guest:guest@10.0.0.1:5672/%2F", "amqps://calld:p,w@10.0.0.2:5671/xivo"
    assert client.split_urls(a) == [a]
    assert client.split_urls(f"{a},{b}") == [a, b]
    assert client.split_urls(f" {a} , {b} ") == [a, b]
    assert client.split_urls([a, b]) == [a, b]
    assert client.safe_url(f"{a},{b}") == (
        "amqp://guest@10.0.0.1:5672/%2F, amqps://calld@10.0.0.2:5671/xivo"
    )
    for wrong in ("", [], [a, " "]):
        with pytest.raises(ValueError):
            client.split_urls(wrong)


async def test_publish_timeout_names_every_url(unused_port):
    urls = [f"amqp://guest:guest@127.0.0.1:{unused_port}/", f"amqp://u:p@127.0.0.2:{unused_port}/"]
    publisher = client.Publisher(urls, timeout=0.5, backoff=FAST)
    with pytest.raises(client.PublishTimeout) as error:
        await publisher.publish(call_form(1))
    assert str(error.value).startswith(
        f"no confirm from amqp://guest@127.0.0.1:{unused_port}/, amqp://u@127.0.0.2:{unused_port}/ "
        "within 0.5 s"
    )
    await publisher.close()


async def test_clients_go_on_to_the_next_broker_when_theirs_goes(name, unused_port):
    """Several URLs: the first that answers is used (a dead one is skipped), and when the
    broker in use goes away both go on to the next one at once, the consumer's queue
    and bindings declared there."""
    first, second = start_broker(), start_broker()
    urls = [f"amqp://guest:guest@127.0.0.1:{unused_port}/%2F", first.url, second.url]
    received: list = []
    consumer = client.Consumer(",".join(urls), queue=name, backoff=FAST)
    consumer.subscribe("call_form_result", lambda event: received.append(event.user_id))
    publisher = client.Publisher(urls, backoff=FAST, timeout=20)
    try:
        await consumer.start()
        await consumer.wait_connected(10)
        await publisher.publish(call_form(1))
        await wait_for(lambda: received == [1])
        assert consumer.connected_url == publisher.connected_url == first.url
        assert first.stop() == 0
        await wait_for(lambda: consumer.connections == 2, timeout=20)
        assert consumer.connected_url == second.url
        await publisher.publish(call_form(2))
        assert publisher.connected_url == second.url
        await wait_for(lambda: received == [1, 2], timeout=20)
    finally:
        await publisher.close()
        await consumer.close()
        first.stop()
        second.stop()


async def test_clients_leave_a_broker_that_hangs(name):
    """A broker that stops answering (SIGSTOP: its sockets stay open, as a machine that
    is gone) is given up once heartbeats are missed; what was not confirmed goes to the
    next one."""
    first, second = start_broker(), start_broker()
    urls = [f"{first.url}?heartbeat=1", f"{second.url}?heartbeat=1"]
    received: list = []
    consumer = client.Consumer(urls, queue=name, backoff=FAST)
    consumer.subscribe("call_form_result", lambda event: received.append(event.user_id))
    publisher = client.Publisher(urls, backoff=FAST)
    try:
        await consumer.start()
        await consumer.wait_connected(10)
        await publisher.publish(call_form(1))
        await wait_for(lambda: received == [1])
        # The queue waits on the next broker, whichever of the two moves there first.
        async with await aio_pika.connect(second.url) as connection:
            queue = await (await connection.channel()).declare_queue(name, durable=True)
            await queue.bind("xivo-cti", "call_form_result")
        first.proc.send_signal(signal.SIGSTOP)
        await publisher.publish(call_form(2), timeout=30)
        assert publisher.connected_url == urls[1]
        await wait_for(lambda: received == [1, 2], timeout=30)
        assert consumer.connected_url == urls[1]
    finally:
        first.proc.send_signal(signal.SIGCONT)
        await publisher.close()
        await consumer.close()
        first.stop()
        second.stop()


async def test_full_buffer_drops_oldest_and_reports_it(unused_port):
    dropped: list = []
    publisher = client.Publisher(
        f"amqp://guest:guest@127.0.0.1:{unused_port}/",
        timeout=0.2,
        buffer_size=3,
        on_drop=dropped.append,
        backoff=FAST,
    )
    for user_id in range(5):
        publisher.publish_nowait(call_form(user_id))
    assert [event.user_id for event in dropped] == [0, 1]
    assert publisher.dropped == 2 and publisher.buffered == 3
    await publisher.close()


async def test_publisher_and_consumer_ride_through_a_broker_restart(name):
    """Both reconnect by themselves; the consumer's named durable queue is re-declared
    and re-bound; events published after the restart arrive."""
    first = start_broker()
    port = first.port
    received: list = []
    consumer = client.Consumer(first.url, queue=name, backoff=FAST)
    consumer.subscribe("call_form_result", lambda event: received.append(event.user_id))
    publisher = client.Publisher(first.url, backoff=FAST, timeout=20)
    second = None
    try:
        await consumer.start()
        await consumer.wait_connected(10)
        await publisher.publish(call_form(1))
        await wait_for(lambda: received == [1])
        assert first.stop() == 0
        second = start_broker("--port", str(port))
        # The broker keeps nothing across a restart (yet): publish once the consumer's
        # queue is back, or the event has nowhere to go.
        await wait_for(lambda: consumer.connections == 2, timeout=20)
        await publisher.publish(call_form(2))  # waits for its own reconnection
        await wait_for(lambda: received == [1, 2], timeout=20)
    finally:
        await publisher.close()
        await consumer.close()
        for process in (first, second):
            if process is not None:
                process.stop()


def test_sync_publisher_is_safe_across_threads(broker, name):
    with client.SyncConsumer(broker.url, queue=name) as consumer:
        received: list = []
        lock = threading.Lock()

        def handler(event):
            with lock:
                received.append(event.user_id)

        consumer.subscribe("call_form_result", handler)
        consumer.start(wait=10)
        with client.SyncPublisher(broker.url) as publisher:

            def work(base: int) -> None:
                for i in range(50):
                    publisher.publish(call_form(base + i))

            threads = [threading.Thread(target=work, args=(n * 1000,)) for n in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        expected = sorted(n * 1000 + i for n in range(8) for i in range(50))
        for _ in range(200):
            with lock:
                if len(received) >= len(expected):
                    break
            threading.Event().wait(0.05)
        assert sorted(received) == expected


async def test_10000_confirmed_events_survive_a_broker_restart_mid_stream(tmp_path, name):
    """The broker restarts in the middle of the stream; publisher and consumer resume by
    themselves and every confirmed event arrives (durable queue, persistent events)."""
    first = start_broker("--data-dir", str(tmp_path))
    port = first.port
    received: set[int] = set()
    consumer = client.Consumer(first.url, queue=name, backoff=FAST, prefetch=50)

    async def slow_handler(event) -> None:  # lags behind: the queue holds events
        await asyncio.sleep(0.001)
        received.add(event.user_id)

    consumer.subscribe("call_form_result", slow_handler)
    publisher = client.Publisher(first.url, backoff=FAST, timeout=60)
    confirmed: set[int] = set()
    restarted = []

    async def publish(user_id: int) -> None:
        await publisher.publish(call_form(user_id))
        confirmed.add(user_id)

    try:
        await consumer.start()
        await consumer.wait_connected(10)
        loop = asyncio.get_running_loop()
        for start in range(0, 10_000, 500):
            batch = asyncio.gather(
                *(publish(i) for i in range(start, start + 500)), return_exceptions=True
            )
            if start == 5_000:  # mid-stream, events in flight: restart the broker
                await asyncio.sleep(0.02)
                assert await loop.run_in_executor(None, first.stop) == 0
                restarted.append(
                    await loop.run_in_executor(
                        None, start_broker, "--data-dir", str(tmp_path), "--port", str(port)
                    )
                )
            results = await batch
            assert not [r for r in results if isinstance(r, Exception)]
        await wait_for(lambda: confirmed <= received, timeout=60)
    finally:
        await publisher.close()
        await consumer.close()
        for process in (first, *restarted):
            process.stop()
    assert len(confirmed) == 10_000
    assert consumer.connections == 2
