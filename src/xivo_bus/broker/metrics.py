"""Prometheus metrics as RabbitMQ's ``rabbitmq_prometheus`` plugin serves them on
``/metrics`` (aggregated), with its metric names, types and help texts, so that existing
dashboards and alerts read xivo-bus as they read RabbitMQ.

Everything here is computed when scraped, from the broker's own state: nothing is counted
on the path of a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import platform

from xivo_bus import __version__
from xivo_bus.broker.alarms import resident_memory
from xivo_bus.broker.session.server_state import ServerState

log = logging.getLogger("xivo_bus.broker.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# name: (type, RabbitMQ's help text)
HELP = {
    "rabbitmq_connections": ("gauge", "Connections currently open"),
    "rabbitmq_connections_opened_total": ("counter", "Total number of connections opened"),
    "rabbitmq_connections_closed_total": (
        "counter",
        "Total number of connections closed or terminated",
    ),
    "rabbitmq_channels": ("gauge", "Channels currently open"),
    "rabbitmq_consumers": ("gauge", "Consumers currently connected"),
    "rabbitmq_queues": ("gauge", "Queues available"),
    "rabbitmq_queue_messages_ready": ("gauge", "Messages ready to be delivered to consumers"),
    "rabbitmq_queue_messages_unacked": (
        "gauge",
        "Messages delivered to consumers but not yet acknowledged",
    ),
    "rabbitmq_queue_messages": (
        "gauge",
        "Sum of ready and unacknowledged messages - total queue depth",
    ),
    "rabbitmq_process_resident_memory_bytes": ("gauge", "Memory used in bytes"),
    "rabbitmq_build_info": ("untyped", "RabbitMQ & Erlang/OTP version info"),
    "rabbitmq_identity_info": ("untyped", "RabbitMQ node & cluster identity info"),
}


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render(state: ServerState) -> str:
    """The exposition text of the aggregated metrics."""
    connections = [c for c in state.connections if c.user is not None]
    queues = [queue for vhost in state.vhosts.values() for queue in vhost.queues.values()]
    ready = sum(queue.message_count for queue in queues)
    unacked = sum(queue.unacked for queue in queues)
    node = f"xivo-bus@{platform.node()}"
    values = {
        "rabbitmq_connections": len(connections),
        "rabbitmq_connections_opened_total": state.connections_opened,
        "rabbitmq_connections_closed_total": state.connections_closed,
        "rabbitmq_channels": sum(len(c.channels) for c in connections),
        "rabbitmq_consumers": sum(queue.consumer_count for queue in queues),
        "rabbitmq_queues": len(queues),
        "rabbitmq_queue_messages_ready": ready,
        "rabbitmq_queue_messages_unacked": unacked,
        "rabbitmq_queue_messages": ready + unacked,
        "rabbitmq_process_resident_memory_bytes": resident_memory(),
    }
    labels = {
        "rabbitmq_build_info": {
            "rabbitmq_version": __version__,
            "prometheus_plugin_version": __version__,
            "product": "xivo-bus",
            "python_version": platform.python_version(),
        },
        "rabbitmq_identity_info": {
            "rabbitmq_node": node,
            "rabbitmq_cluster": node,
            "rabbitmq_cluster_permanent_id": f"xivo-bus-{platform.node()}",
        },
    }
    lines = []
    for name, (kind, text) in HELP.items():
        lines.append(f"# TYPE {name} {kind}")
        lines.append(f"# HELP {name} {text}")
        if name in labels:
            shown = ",".join(f'{key}="{_label(value)}"' for key, value in labels[name].items())
            lines.append(f"{name}{{{shown}}} 1")
        else:
            lines.append(f"{name} {values[name]}")
    return "\n".join(lines) + "\n"


class MetricsServer:
    """A small HTTP/1.1 server for ``GET /metrics`` (loopback unless told otherwise)."""

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
            method, path, *_ = request.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            if method == "GET" and path.split("?")[0] == "/metrics":
                status, body = "200 OK", render(self.state).encode()
                kind = CONTENT_TYPE
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
