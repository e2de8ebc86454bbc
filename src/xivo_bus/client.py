"""Publish and consume XiVO events over any AMQP 0-9-1 broker, reconnecting by itself.

The spec warns that broker restarts and upgrades drop every connection; these classes
ride through that. ``Publisher`` keeps a bounded buffer of unsent events and publishes
with confirms, so an event is either confirmed by the broker or reported dropped, and a
``publish`` never hangs past its timeout. ``Consumer`` re-declares its queue and bindings
after each reconnect, acks after the handler returns, requeues a failed event once and
then moves it to a dead-letter queue you can inspect.

Give several broker URLs (a list, or one string with the URLs separated by commas) to
use a RabbitMQ cluster: the client connects to the first that answers, and when it loses
that broker it goes on to the next at once (docs/scaling.md).

``SyncPublisher`` and ``SyncConsumer`` offer the same over a private event-loop thread;
they are safe to share between threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import re
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import aio_pika

from xivo_bus import events

log = logging.getLogger("xivo_bus.client")

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
DEAD_LETTER_QUEUE = "xivo-bus.failed"
BATCH = 256  # publishes in flight at once

Handler = Callable[[events.AnyEvent], Any]
Urls = str | Sequence[str]  # one URL, several separated by commas, or a list of them

# A comma starts another URL only where a scheme follows: a comma inside a URL (in a
# password, a query) stays where it is.
_URL_SEPARATOR = re.compile(r"\s*,\s*(?=amqps?://)")


def split_urls(url: Urls) -> list[str]:
    """The broker URLs in ``url``: ``"amqp://a/,amqp://b/"`` or ``["amqp://a/", ...]``."""
    texts = [url] if isinstance(url, str) else list(url)
    urls = [part.strip() for text in texts for part in _URL_SEPARATOR.split(text.strip())]
    if not urls or not all(urls):
        raise ValueError(f"not a list of AMQP URLs: {url!r}")
    return urls


class PublishError(Exception):
    """An event could not be published; the message says why."""


class PublishTimeout(PublishError):
    """No broker confirmed the event within the timeout."""


class Backoff:
    """Exponential reconnection delays: initial, doubled each failure, capped."""

    def __init__(self, initial: float = 0.2, maximum: float = 10.0):
        self.initial = initial
        self.maximum = maximum
        self.delay = initial

    def reset(self) -> None:
        self.delay = self.initial

    async def wait(self) -> None:
        await asyncio.sleep(self.delay)
        self.delay = min(self.delay * 2, self.maximum)


async def _declare_cti_exchange(channel: aio_pika.abc.AbstractChannel, name: str):
    return await channel.declare_exchange(name, aio_pika.ExchangeType.DIRECT, durable=True)


def _amqp_message(event: events.AnyEvent) -> aio_pika.Message:
    body, properties = events.encode(event)
    return aio_pika.Message(
        body,
        content_type=properties["content_type"],
        headers=properties["headers"],
        timestamp=properties["timestamp"],
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


def _closed(connection: aio_pika.abc.AbstractConnection) -> asyncio.Future:
    """A future set when ``connection`` closes, whatever the reason: a reset, the
    broker's close, or heartbeats missed (a broker that hangs, a machine that is gone)."""
    closed = asyncio.get_running_loop().create_future()
    connection.close_callbacks.add(lambda *_: closed.done() or closed.set_result(None))
    return closed


async def _until_closed(work, closed: asyncio.Future) -> None:
    """Run ``work`` until it ends, or until the connection closes: aio-pika does not fail
    the confirms awaited on a connection it gave up for missed heartbeats."""
    task = asyncio.ensure_future(work)
    try:
        await asyncio.wait({task, closed}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if task.cancelled():
        raise ConnectionError("connection lost")
    task.result()


class _Pending:
    __slots__ = ("event", "message", "future", "abandoned")

    def __init__(self, event: events.AnyEvent, future: asyncio.Future | None):
        self.event = event
        self.message = _amqp_message(event)
        self.future = future
        self.abandoned = False


class _Service:
    """What Publisher and Consumer share: a background task that keeps a connection up,
    started by ``start()`` or ``async with``."""

    _task: asyncio.Task | None
    _connected: asyncio.Event
    urls: list[str]
    timeout: float
    connected_url: str | None = None  # the broker of the current (or last) connection
    _next_url = 0

    async def _connect(self) -> aio_pika.abc.AbstractConnection:
        """Connect to the first broker that answers, trying each once, starting after the
        one connected last: a client that lost its broker goes on to the next at once."""
        failure: Exception | None = None
        for _ in self.urls:
            url = self.urls[self._next_url]
            self._next_url = (self._next_url + 1) % len(self.urls)
            try:
                connection = await aio_pika.connect(url, timeout=self.timeout)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                failure = error
                continue
            self.connected_url = url
            return connection
        assert failure is not None
        raise failure

    async def __aenter__(self):
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"xivo-bus {type(self).__name__}")

    async def wait_connected(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self._connected.wait(), timeout)

    async def _run(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class Publisher(_Service):
    """Publishes events with confirms, reconnecting with backoff when the broker goes away.

    ``publish`` waits for the broker's confirm, at most ``timeout`` seconds;
    ``publish_nowait`` buffers the event and returns at once (the event is retried until
    confirmed). At most ``buffer_size`` events wait; beyond that the oldest buffered
    event is dropped, logged, counted in ``dropped`` and passed to ``on_drop``.
    """

    def __init__(
        self,
        url: Urls = DEFAULT_URL,
        *,
        timeout: float = 10.0,
        buffer_size: int = 10_000,
        on_drop: Callable[[events.AnyEvent], Any] | None = None,
        backoff: Backoff | None = None,
    ):
        self.url = url
        self.urls = split_urls(url)
        self.timeout = timeout
        self.buffer_size = buffer_size
        self.on_drop = on_drop
        self.dropped = 0
        self.published = 0
        self._backoff = backoff or Backoff()
        self._pending: deque[_Pending] = deque()
        self._wakeup = asyncio.Event()
        self._connected = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._connection: aio_pika.abc.AbstractConnection | None = None
        self._closing = False
        self.last_error: str | None = None

    @property
    def buffered(self) -> int:
        return len(self._pending)

    async def publish(self, event: events.AnyEvent, *, timeout: float | None = None) -> None:
        """Publish and wait for the broker's confirm; raises ``PublishTimeout`` after
        ``timeout`` seconds (the event is then withdrawn if not yet sent)."""
        await self.start()
        future = asyncio.get_running_loop().create_future()
        item = self._enqueue(event, future)
        limit = self.timeout if timeout is None else timeout
        try:
            await asyncio.wait_for(asyncio.shield(future), limit)
        except TimeoutError:
            item.abandoned = True
            future.cancel()
            with contextlib.suppress(ValueError):
                self._pending.remove(item)
            reason = f": {self.last_error}" if self.last_error else ""
            raise PublishTimeout(
                f"no confirm from {safe_url(self.url)} within {limit:g} s{reason}"
            ) from None

    def publish_nowait(self, event: events.AnyEvent) -> None:
        """Buffer the event for publishing; it is retried until the broker confirms it."""
        self._enqueue(event, None)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def _enqueue(self, event: events.AnyEvent, future: asyncio.Future | None) -> _Pending:
        item = _Pending(event, future)
        if len(self._pending) >= self.buffer_size:
            self._drop(self._pending.popleft())
        self._pending.append(item)
        self._wakeup.set()
        return item

    def _drop(self, item: _Pending) -> None:
        self.dropped += 1
        log.warning(
            "publish buffer full (%d events): dropped %s event %s",
            self.buffer_size,
            item.event.name,
            item.message.body[:200],
        )
        if item.future is not None and not item.future.done():
            item.future.set_exception(PublishError("dropped: the publish buffer was full"))
        if self.on_drop is not None:
            self.on_drop(item.event)

    async def close(self) -> None:
        """Stop, after trying to send what is buffered for at most ``timeout`` seconds."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._drain(), self.timeout)
            except TimeoutError:
                pass
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._connection is not None:
            await self._connection.close()
            self._connection = None
        for item in self._pending:
            if item.future is not None and not item.future.done():
                item.future.set_exception(PublishError("publisher closed"))
        if self._pending:
            log.warning("publisher closed with %d unsent events", len(self._pending))

    async def _drain(self) -> None:
        while self._pending and self._connected.is_set():
            await asyncio.sleep(0.01)

    async def _run(self) -> None:
        while True:
            try:
                self._connection = await self._connect()
                closed = _closed(self._connection)
                channel = await self._connection.channel(publisher_confirms=True)
                exchanges: dict[str, aio_pika.abc.AbstractExchange] = {}
                self._connected.set()
                self._backoff.reset()
                self.last_error = None
                log.info("publisher connected to %s", safe_url(self.connected_url))
                # what was sent but not confirmed stays pending: sent again after this
                await _until_closed(self._send_loop(channel, exchanges), closed)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # broker gone, refused, timed out: retry
                self.last_error = f"{type(error).__name__}: {error}".rstrip(": ")
                log.warning("publisher: %s; reconnecting", self.last_error)
            self._connected.clear()
            if self._connection is not None:
                with contextlib.suppress(Exception):
                    await self._connection.close()
                self._connection = None
            await self._backoff.wait()

    async def _send_loop(self, channel, exchanges) -> None:
        while True:
            while not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
            batch = [item for item in list(self._pending)[:BATCH] if not item.abandoned]
            for item in batch:
                if item.event.exchange not in exchanges:
                    exchanges[item.event.exchange] = await _declare_cti_exchange(
                        channel, item.event.exchange
                    )
            results = await asyncio.gather(
                *(
                    exchanges[item.event.exchange].publish(
                        item.message, item.event.routing_key, mandatory=False
                    )
                    for item in batch
                ),
                return_exceptions=True,
            )
            confirmed = set()
            failure = None
            for item, result in zip(batch, results, strict=True):
                if isinstance(result, BaseException):
                    failure = failure or result
                    continue
                confirmed.add(id(item))
                self.published += 1
                if item.future is not None and not item.future.done():
                    item.future.set_result(None)
            self._pending = deque(item for item in self._pending if id(item) not in confirmed)
            if failure is not None:
                raise failure


class Consumer(_Service):
    """Subscribes handlers to events, acking each event once its handler returned.

    By default the queue is server-named and exclusive (events published while the
    consumer is away are not kept); give ``queue`` a name to use a durable queue that
    keeps them. A handler that raises gets the event once more; if it fails again the
    event goes to the ``dead_letter_queue`` with the error in its headers.
    """

    def __init__(
        self,
        url: Urls = DEFAULT_URL,
        *,
        queue: str | None = None,
        prefetch: int = 100,
        dead_letter_queue: str = DEAD_LETTER_QUEUE,
        timeout: float = 10.0,
        backoff: Backoff | None = None,
    ):
        self.url = url
        self.urls = split_urls(url)
        self.queue_name = queue
        self.prefetch = prefetch
        self.dead_letter_queue = dead_letter_queue
        self.timeout = timeout
        self._backoff = backoff or Backoff()
        self._handlers: dict[str, list[Handler]] = {}
        self._exchanges: dict[str, set[str]] = {}
        self._task: asyncio.Task | None = None
        self._connection: aio_pika.abc.AbstractConnection | None = None
        self._queue: aio_pika.abc.AbstractQueue | None = None
        self._channel: aio_pika.abc.AbstractChannel | None = None
        self._connected = asyncio.Event()
        self.failed = 0
        self.connections = 0  # successful connections so far

    def subscribe(self, event_name: str, handler: Handler, *, exchange: str | None = None) -> None:
        """Call ``handler(event)`` for each event named ``event_name`` (any callable or
        coroutine function)."""
        cls = events.CATALOGUE.get(event_name)
        exchange = exchange or (cls.exchange if cls else events.CTI_EXCHANGE)
        self._handlers.setdefault(event_name, []).append(handler)
        keys = self._exchanges.setdefault(exchange, set())
        if event_name not in keys:
            keys.add(event_name)
            if self._queue is not None and self._channel is not None:
                asyncio.get_running_loop().create_task(self._bind(exchange, event_name))

    @property
    def queue(self) -> str | None:
        """The queue currently consumed (server-named ones change on reconnect)."""
        return self._queue.name if self._queue is not None else None

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()
            self._connection = None

    async def _bind(self, exchange_name: str, routing_key: str) -> None:
        exchange = await _declare_cti_exchange(self._channel, exchange_name)
        await self._queue.bind(exchange, routing_key)

    async def _run(self) -> None:
        while True:
            try:
                self._connection = await self._connect()
                closed = _closed(self._connection)
                self._channel = await self._connection.channel(publisher_confirms=True)
                await self._channel.set_qos(prefetch_count=self.prefetch)
                if self.queue_name:
                    self._queue = await self._channel.declare_queue(self.queue_name, durable=True)
                else:
                    self._queue = await self._channel.declare_queue("", exclusive=True)
                for exchange_name, keys in self._exchanges.items():
                    for key in sorted(keys):
                        await self._bind(exchange_name, key)
                await self._queue.consume(self._on_message)
                self._backoff.reset()
                self.connections += 1
                self._connected.set()
                url = safe_url(self.connected_url)
                log.info("consumer connected to %s, queue %s", url, self.queue)
                await closed
                log.warning("consumer: connection to %s lost; reconnecting", url)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("consumer: %s: %s; reconnecting", type(error).__name__, error)
            self._connected.clear()
            self._queue = None
            if self._connection is not None:
                with contextlib.suppress(Exception):
                    await self._connection.close()
                self._connection = None
            await self._backoff.wait()

    async def _on_message(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        try:
            event = events.decode(message.body)
        except events.EventError as error:
            await self._dead_letter(message, f"undecodable event: {error}")
            return
        handlers = self._handlers.get(event.name, [])
        try:
            for handler in handlers:
                result = handler(event)
                if inspect.isawaitable(result):
                    await result
        except Exception as error:
            self.failed += 1
            log.exception("handler %r failed on %s event", handler, event.name)
            if message.redelivered:
                await self._dead_letter(message, f"{type(error).__name__}: {error}")
            else:
                await message.nack(requeue=True)
            return
        await message.ack()

    async def _dead_letter(self, message: aio_pika.abc.AbstractIncomingMessage, reason: str):
        """Park a message that cannot be handled in the dead-letter queue, then ack it."""
        channel = self._channel
        await channel.declare_queue(self.dead_letter_queue, durable=True)
        headers = dict(message.headers or {})
        headers.update(
            {
                "x-xivo-bus-error": reason[:1000],
                "x-xivo-bus-exchange": message.exchange or "",
                "x-xivo-bus-routing-key": message.routing_key or "",
            }
        )
        parked = aio_pika.Message(
            message.body,
            headers=headers,
            content_type=message.content_type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        await channel.default_exchange.publish(parked, self.dead_letter_queue, mandatory=False)
        await message.ack()
        log.warning("event moved to %s: %s", self.dead_letter_queue, reason)


def safe_url(url: Urls) -> str:
    """The URL without its password, for messages (several: comma-separated)."""
    if not isinstance(url, str) or _URL_SEPARATOR.search(url):
        return ", ".join(safe_url(one) for one in split_urls(url))
    try:
        parsed = aio_pika.connection.make_url(url)
    except Exception:
        return url
    return str(parsed.with_password(None)) if parsed.password else str(parsed)


class _LoopThread:
    """A private event loop in a daemon thread, for the synchronous forms."""

    def __init__(self, name: str):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    def run(self, coroutine, timeout: float | None = None):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class SyncPublisher:
    """``Publisher`` for synchronous code; one instance can be shared by many threads."""

    def __init__(self, url: Urls = DEFAULT_URL, **options: Any):
        self._thread = _LoopThread("xivo-bus publisher")
        self._publisher = self._thread.run(_build(Publisher, url, options))
        self._thread.run(self._publisher.start())

    @property
    def dropped(self) -> int:
        return self._publisher.dropped

    def publish(self, event: events.AnyEvent, *, timeout: float | None = None) -> None:
        self._thread.run(self._publisher.publish(event, timeout=timeout))

    def publish_nowait(self, event: events.AnyEvent) -> None:
        self._thread.loop.call_soon_threadsafe(self._publisher.publish_nowait, event)

    def close(self) -> None:
        self._thread.run(self._publisher.close())
        self._thread.stop()

    def __enter__(self) -> SyncPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SyncConsumer:
    """``Consumer`` for synchronous code: handlers run in the consumer's own thread."""

    def __init__(self, url: Urls = DEFAULT_URL, **options: Any):
        self._thread = _LoopThread("xivo-bus consumer")
        self._consumer = self._thread.run(_build(Consumer, url, options))

    def subscribe(self, event_name: str, handler: Handler, **options: Any) -> None:
        async def subscribe() -> None:
            self._consumer.subscribe(event_name, handler, **options)

        self._thread.run(subscribe())

    def start(self, wait: float | None = None) -> None:
        self._thread.run(self._consumer.start())
        if wait is not None:
            self._thread.run(self._consumer.wait_connected(wait))

    def close(self) -> None:
        self._thread.run(self._consumer.close())
        self._thread.stop()

    def __enter__(self) -> SyncConsumer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def _build(cls, url: Urls, options: dict):
    """Create an asyncio-bound object inside the loop that will run it."""
    return cls(url, **options)


__all__ = [
    "Backoff",
    "Consumer",
    "Publisher",
    "PublishError",
    "PublishTimeout",
    "SyncConsumer",
    "SyncPublisher",
    "safe_url",
    "split_urls",
]
