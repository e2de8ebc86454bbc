"""Prometheus metrics as RabbitMQ's ``rabbitmq_prometheus`` plugin serves them: ``/metrics``
(aggregated) and ``/metrics/detailed?family=...&vhost=...`` (per queue and channel), with
its metric names, types, labels and help texts, so that existing dashboards and alerts read
xivo-bus as they read RabbitMQ.

Everything here is computed when scraped, from the broker's own state and the plain
counters the broker keeps (``broker.model.stats``). The channel counters include closed
channels' counts, so that they only ever grow, as Prometheus's counters must.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import platform
from urllib.parse import parse_qs

from xivo_bus import __version__
from xivo_bus.broker.admin import connection_name
from xivo_bus.broker.alarms import default_memory_limit, resident_memory
from xivo_bus.broker.model.stats import summed
from xivo_bus.broker.session.server_state import ServerState

log = logging.getLogger("xivo_bus.management.prometheus")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# channel counters (the broker's and closed channels' included), RabbitMQ's name: our field
CHANNEL_COUNTERS = {
    "messages_published_total": (
        "publish",
        "Total number of messages published into an exchange on a channel",
    ),
    "messages_confirmed_total": (
        "confirm",
        "Total number of messages published into an exchange and confirmed on the channel",
    ),
    "messages_unroutable_returned_total": (
        "return_unroutable",
        "Total number of messages published as mandatory into an exchange and returned to "
        "the publisher as unroutable",
    ),
    "messages_unroutable_dropped_total": (
        "drop_unroutable",
        "Total number of messages published as non-mandatory into an exchange and dropped "
        "as unroutable",
    ),
    "get_ack_total": (
        "get",
        "Total number of messages fetched with basic.get in manual acknowledgement mode",
    ),
    "get_total": (
        "get_no_ack",
        "Total number of messages fetched with basic.get in automatic acknowledgement mode",
    ),
    "messages_delivered_ack_total": (
        "deliver",
        "Total number of messages delivered to consumers in manual acknowledgement mode",
    ),
    "messages_delivered_total": (
        "deliver_no_ack",
        "Total number of messages delivered to consumers in automatic acknowledgement mode",
    ),
    "messages_redelivered_total": (
        "redeliver",
        "Total number of messages redelivered to consumers",
    ),
    "messages_acked_total": ("ack", "Total number of messages acknowledged by consumers"),
    "get_empty_total": (
        "get_empty",
        "Total number of times basic.get operations fetched no message",
    ),
}


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: dict[str, str]) -> str:
    return ",".join(f'{key}="{_label(str(value))}"' for key, value in labels.items())


class Exposition:
    """Metric families written in Prometheus's text format, in the order added."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, text: str, samples) -> None:
        """``samples``: a number, or (labels, number) pairs (none: nothing written)."""
        if not isinstance(samples, int | float) and not samples:
            return
        self.lines.append(f"# TYPE {name} {kind}")
        self.lines.append(f"# HELP {name} {text}")
        if isinstance(samples, int | float):
            self.lines.append(f"{name} {samples}")
            return
        for labels, value in samples:
            self.lines.append(f"{name}{{{_labels(labels)}}} {value}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _identity(out: Exposition) -> None:
    node = f"xivo-bus@{platform.node()}"
    build = {
        "rabbitmq_version": __version__,
        "prometheus_plugin_version": __version__,
        "product": "xivo-bus",
        "python_version": platform.python_version(),
    }
    identity = {
        "rabbitmq_node": node,
        "rabbitmq_cluster": node,
        "rabbitmq_cluster_permanent_id": f"xivo-bus-{platform.node()}",
    }
    out.family("rabbitmq_build_info", "untyped", "RabbitMQ & Erlang/OTP version info", [(build, 1)])
    out.family(
        "rabbitmq_identity_info",
        "untyped",
        "RabbitMQ node & cluster identity info",
        [(identity, 1)],
    )


def render(state: ServerState) -> str:
    """The exposition text of the aggregated metrics (``/metrics``)."""
    connections = [c for c in state.connections if c.user is not None]
    queues = [queue for vhost in state.vhosts.values() for queue in vhost.queues.values()]
    ready = sum(queue.message_count for queue in queues)
    unacked = sum(queue.unacked for queue in queues)
    channels = list(state.channels())
    counts = summed(channel.stats for channel in channels)
    counts.add(summed(vhost.retired_stats for vhost in state.vhosts.values()))
    vhosts = state.vhosts.values()
    out = Exposition()
    family = out.family
    family("rabbitmq_connections", "gauge", "Connections currently open", len(connections))
    family(
        "rabbitmq_connections_opened_total",
        "counter",
        "Total number of connections opened",
        state.connections_opened,
    )
    family(
        "rabbitmq_connections_closed_total",
        "counter",
        "Total number of connections closed or terminated",
        state.connections_closed,
    )
    family("rabbitmq_channels", "gauge", "Channels currently open", len(channels))
    family(
        "rabbitmq_channels_opened_total",
        "counter",
        "Total number of channels opened",
        state.channels_opened,
    )
    family(
        "rabbitmq_channels_closed_total",
        "counter",
        "Total number of channels closed",
        state.channels_closed,
    )
    family("rabbitmq_queues", "gauge", "Queues available", len(queues))
    for name, text, attribute in (
        ("declared", "Total number of queues declared", "queues_declared"),
        ("created", "Total number of queues created", "queues_created"),
        ("deleted", "Total number of queues deleted", "queues_deleted"),
    ):
        total = sum(getattr(vhost, attribute) for vhost in vhosts)
        family(f"rabbitmq_queues_{name}_total", "counter", text, total)
    consumers = sum(queue.consumer_count for queue in queues)
    family("rabbitmq_consumers", "gauge", "Consumers currently connected", consumers)
    family("rabbitmq_queue_consumers", "gauge", "Consumers on a queue", consumers)
    family(
        "rabbitmq_queue_messages_ready",
        "gauge",
        "Messages ready to be delivered to consumers",
        ready,
    )
    family(
        "rabbitmq_queue_messages_unacked",
        "gauge",
        "Messages delivered to consumers but not yet acknowledged",
        unacked,
    )
    family(
        "rabbitmq_queue_messages",
        "gauge",
        "Sum of ready and unacknowledged messages - total queue depth",
        ready + unacked,
    )
    family(
        "rabbitmq_queue_messages_published_total",
        "counter",
        "Total number of messages published to queues",
        sum(queue.stats.publish for queue in queues),
    )
    family(
        "rabbitmq_channel_consumers",
        "gauge",
        "Consumers on a channel",
        sum(len(channel.consumers) for channel in channels),
    )
    family(
        "rabbitmq_channel_messages_unacked",
        "gauge",
        "Delivered but not yet acknowledged messages",
        sum(len(channel.unacked) for channel in channels),
    )
    for name, (field, text) in CHANNEL_COUNTERS.items():
        family(f"rabbitmq_channel_{name}", "counter", text, getattr(counts, field))
    family(
        "rabbitmq_process_resident_memory_bytes", "gauge", "Memory used in bytes", resident_memory()
    )
    family(
        "rabbitmq_resident_memory_limit_bytes",
        "gauge",
        "Memory high watermark in bytes",
        state.alarms.memory_limit or default_memory_limit(),
    )
    _identity(out)
    return out.text()


def _channel_label(channel) -> str:
    return f"<{connection_name(channel.connection)} ({channel.number})>"


# /metrics/detailed?family=...: RabbitMQ's family name -> what it writes
def _queue_coarse(out: Exposition, queues) -> None:
    for name, text, value in (
        (
            "messages_ready",
            "Messages ready to be delivered to consumers",
            lambda q: q.message_count,
        ),
        (
            "messages_unacked",
            "Messages delivered to consumers but not yet acknowledged",
            lambda q: q.unacked,
        ),
        (
            "messages",
            "Sum of ready and unacknowledged messages - total queue depth",
            lambda q: q.message_count + q.unacked,
        ),
    ):
        out.family(
            f"rabbitmq_detailed_queue_{name}",
            "gauge",
            text,
            [({"vhost": vhost, "queue": queue.name}, value(queue)) for vhost, queue in queues],
        )


def _queue_consumers(out: Exposition, queues) -> None:
    out.family(
        "rabbitmq_detailed_queue_consumers",
        "gauge",
        "Consumers on a queue",
        [({"vhost": vhost, "queue": queue.name}, queue.consumer_count) for vhost, queue in queues],
    )


def _channel_metrics(out: Exposition, channels) -> None:
    for name, text, value in (
        ("consumers", "Consumers on a channel", lambda c: len(c.consumers)),
        (
            "messages_unacked",
            "Delivered but not yet acknowledged messages",
            lambda c: len(c.unacked),
        ),
        (
            "prefetch",
            "Total limit of unacknowledged messages for all consumers on a channel",
            lambda c: c.prefetch_global,
        ),  # fmt: skip
    ):
        out.family(
            f"rabbitmq_detailed_channel_{name}",
            "gauge",
            text,
            [({"channel": _channel_label(c)}, value(c)) for c in channels],
        )


def _channel_counters(out: Exposition, channels) -> None:
    for name, (field, text) in CHANNEL_COUNTERS.items():
        out.family(
            f"rabbitmq_detailed_channel_{name}",
            "counter",
            text,
            [
                ({"channel": _channel_label(c), "vhost": c.vhost.name}, getattr(c.stats, field))
                for c in channels
            ],
        )


DETAILED = {
    "queue_coarse_metrics": ("queues", _queue_coarse),
    "queue_consumer_count": ("queues", _queue_consumers),
    "channel_metrics": ("channels", _channel_metrics),
    "channel_exchange_metrics": ("channels", _channel_counters),
}


def render_detailed(state: ServerState, families: list[str], vhosts: list[str]) -> str:
    """``/metrics/detailed``: one sample per queue or channel, for the families asked for
    (none: only the identity, as RabbitMQ), in the vhosts asked for (none: all)."""
    wanted = (
        [state.vhosts[name] for name in vhosts if name in state.vhosts]
        if vhosts
        else list(state.vhosts.values())
    )
    queues = [(vhost.name, queue) for vhost in wanted for queue in vhost.queues.values()]
    channels = [channel for channel in state.channels() if channel.vhost in wanted]
    out = Exposition()
    for family in families:
        if family in DETAILED:
            kind, write = DETAILED[family]
            write(out, queues if kind == "queues" else channels)
    _identity(out)
    return out.text()


class MetricsServer:
    """A small HTTP/1.1 server for ``GET /metrics`` and ``/metrics/detailed`` (loopback
    unless told otherwise)."""

    def __init__(self, state: ServerState, host: str, port: int):
        self.state = state
        self.host, self.port = host, port
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> tuple[str, int]:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        address = self._server.sockets[0].getsockname()
        return address[0], address[1]

    def close(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            method, target, *_ = request.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            path, _, query = target.partition("?")
            asked = parse_qs(query)
            kind = CONTENT_TYPE
            status = "200 OK"
            if method != "GET":
                status, body, kind = "405 Method Not Allowed", b"GET only\n", "text/plain"
            elif path == "/metrics":
                body = render(self.state).encode()
            elif path == "/metrics/detailed":
                families = asked.get("family", [])
                body = render_detailed(self.state, families, asked.get("vhost", [])).encode()
            else:
                status, body, kind = "404 Not Found", b"not found\n", "text/plain"
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError):
            pass  # not HTTP, or too slow: dropped
        except ConnectionError:
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()
