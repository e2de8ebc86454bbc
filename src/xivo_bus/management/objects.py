"""The broker's objects as RabbitMQ's management API shows them: the same JSON field names
and value types (RabbitMQ 3.10's), so that scripts, ``rabbitmqadmin`` and dashboards read
xivo-bus as they read RabbitMQ. Fields that mean nothing here (Erlang processes, paging,
garbage collection) keep RabbitMQ's type with a neutral value.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import platform
import time
from typing import Any
from urllib.parse import quote_plus

from xivo_bus import __version__
from xivo_bus.broker.admin import connection_name
from xivo_bus.broker.alarms import default_memory_limit, resources
from xivo_bus.broker.definitions import RABBITMQ_VERSION, json_value
from xivo_bus.broker.model.exchanges import Exchange
from xivo_bus.management.sampler import Sampler, churn, queue_lengths

NODE = f"xivo-bus@{platform.node()}"
EXCHANGE_TYPES = ("direct", "fanout", "headers", "topic")
# message_stats fields, in groups: RabbitMQ shows a group (zeros included) once any of its
# fields has counted something
PUBLISHING = ("publish", "confirm", "return_unroutable", "drop_unroutable")
DELIVERING = (
    "deliver_get",
    "deliver",
    "deliver_no_ack",
    "get",
    "get_no_ack",
    "get_empty",
    "redeliver",
    "ack",
)
QUEUE_STATS = (("publish",), DELIVERING)
CHANNEL_STATS = (PUBLISHING, DELIVERING)
EXCHANGE_STATS = (("publish_in", "publish_out"),)
OVERVIEW_STATS = ((*PUBLISHING, *DELIVERING, "disk_reads", "disk_writes"),)


def message_stats(counts: dict[str, int], rates: dict[str, float], groups) -> dict:
    """``{field: count, field_details: {rate}}`` for each group of fields that counted
    something."""
    shown: dict[str, Any] = {}
    for group in groups:
        if any(counts.get(name) for name in group):
            for name in group:
                shown[name] = counts.get(name, 0)
                shown[f"{name}_details"] = {"rate": rates.get(name, 0.0)}
    return shown


def _details(rates: dict[str, float], names) -> dict:
    return {f"{name}_details": {"rate": rates.get(name, 0.0)} for name in names}


def timestamp(seconds: float) -> int:
    return int(seconds * 1000)


def properties_key(routing_key: str, arguments: dict) -> str:
    """A binding's ``properties_key``, which names it in URLs: the routing key (``~`` when
    empty), followed by ``~`` and a digest of the arguments when there are some."""
    quoted = quote_plus(routing_key)
    if not arguments:
        return quoted or "~"
    packed = json.dumps(json_value(arguments), sort_keys=True).encode()
    digest = base64.urlsafe_b64encode(hashlib.md5(packed).digest()).decode().rstrip("=")
    return f"{quoted}~{digest}"


# -- queues, exchanges, bindings ------------------------------------------------------


def queue(vhost: str, found, sampler: Sampler) -> dict:
    rates = sampler.rates(found)
    lengths = queue_lengths(found)
    counts = found.stats.totals()
    consumers = found.consumer_count
    paged, paged_bytes = found.paged_out
    info: dict[str, Any] = {
        "arguments": json_value(found.arguments),
        "auto_delete": found.auto_delete,
        "consumer_capacity": 1.0 if consumers else 0,
        "consumer_utilisation": 1.0 if consumers else 0,
        "consumers": consumers,
        "durable": found.durable,
        "effective_policy_definition": {},
        "exclusive": found.exclusive,
        "exclusive_consumer_tag": next(
            (consumer.tag for consumer in found.consumers if consumer.exclusive), None
        ),
        "head_message_timestamp": None,
        "memory": 0,
        "message_bytes": 0,
        "message_bytes_paged_out": paged_bytes,
        "message_bytes_persistent": 0,
        "message_bytes_ram": 0,
        "message_bytes_ready": 0,
        "message_bytes_unacknowledged": 0,
        "messages_paged_out": paged,
        "messages_persistent": 0,
        "messages_ram": lengths["messages"] - paged,
        "messages_ready_ram": lengths["messages_ready"] - paged,
        "messages_unacknowledged_ram": lengths["messages_unacknowledged"],
        "name": found.name,
        "node": NODE,
        "operator_policy": None,
        "policy": None,
        "recoverable_slaves": None,
        "reductions": 0,
        "reductions_details": {"rate": 0.0},
        "single_active_consumer_tag": None,
        "state": "running",
        "type": "classic",
        "vhost": vhost,
        **lengths,
        **_details(rates, lengths),
    }
    stats = message_stats(counts, rates, QUEUE_STATS)
    if stats:
        info["message_stats"] = stats
    return info


def exchange(vhost: str, found: Exchange, sampler: Sampler) -> dict:
    info: dict[str, Any] = {
        "arguments": json_value(found.arguments),
        "auto_delete": found.auto_delete,
        "durable": found.durable,
        "internal": found.internal,
        "name": found.name,
        "type": found.type_name,
        "user_who_performed_action": "rmq-internal",
        "vhost": vhost,
    }
    stats = message_stats(found.stats.totals(), sampler.rates(found), EXCHANGE_STATS)
    if stats:
        info["message_stats"] = stats
    return info


def binding(vhost: str, source: str, destination, kind: str, key: str, arguments: dict):
    return {
        "source": source,
        "vhost": vhost,
        "destination": destination,
        "destination_type": kind,
        "routing_key": key,
        "arguments": json_value(arguments),
        "properties_key": properties_key(key, arguments),
    }


def bindings(vhost) -> list[dict]:
    """Every binding of a vhost, the default exchange's first, as RabbitMQ lists them."""
    found = [binding(vhost.name, "", name, "queue", name, {}) for name in vhost.queues]
    for source in vhost.exchanges.values():
        for bound in source.bindings.values():
            destination = bound.destination
            kind = "exchange" if isinstance(destination, Exchange) else "queue"
            found.append(
                binding(
                    vhost.name,
                    source.name,
                    destination.name,
                    kind,
                    bound.routing_key,
                    bound.arguments,
                )
            )
    return found


# -- connections, channels, consumers -------------------------------------------------


def _peer(connection) -> tuple[str, int]:
    host, _, port = connection.peer.rpartition(":")
    return host.strip("[]"), int(port) if port.isdigit() else 0


def _local(connection) -> tuple[str, int]:
    local = connection.transport.get_extra_info("sockname") if connection.transport else None
    return (local[0], local[1]) if local else ("", 0)


def connection_details(connection) -> dict:
    host, port = _peer(connection)
    return {"name": connection_name(connection), "peer_host": host, "peer_port": port}


def connection(found) -> dict:
    host, port = _peer(found)
    local_host, local_port = _local(found)
    tls = found.transport.get_extra_info("ssl_object") if found.transport else None
    info = {
        "auth_mechanism": found.auth_mechanism,
        "channel_max": found.channel_max,
        "channels": len(found.channels),
        "client_properties": json_value(found.client_properties),
        "connected_at": timestamp(found.connected_at),
        "frame_max": found.frame_max,
        "garbage_collection": {},
        "host": local_host,
        "name": connection_name(found),
        "node": NODE,
        "peer_cert_issuer": None,
        "peer_cert_subject": None,
        "peer_cert_validity": None,
        "peer_host": host,
        "peer_port": port,
        "port": local_port,
        "protocol": "AMQP 0-9-1",
        "reductions": 0,
        "reductions_details": {"rate": 0.0},
        "recv_cnt": 0,
        "recv_oct": 0,
        "recv_oct_details": {"rate": 0.0},
        "send_cnt": 0,
        "send_oct": 0,
        "send_oct_details": {"rate": 0.0},
        "send_pend": 0,
        "ssl": tls is not None,
        "ssl_cipher": tls.cipher()[0] if tls else None,
        "ssl_hash": None,
        "ssl_key_exchange": None,
        "ssl_protocol": tls.version() if tls else None,
        "state": found.flow_state,
        "timeout": found.heartbeat,
        "type": "network",
        "user": found.user.name,
        "user_who_performed_action": found.user.name,
        "vhost": found.vhost.name if found.vhost is not None else None,
    }
    if found.client_properties.get("connection_name"):
        info["user_provided_name"] = _text(found.client_properties["connection_name"])
    return info


def _text(value: Any) -> Any:
    return value.decode(errors="replace") if isinstance(value, bytes | bytearray) else value


def channel_name(connection, number: int) -> str:
    return f"{connection_name(connection)} ({number})"


def channel_details(connection, number: int) -> dict:
    host, port = _peer(connection)
    return {
        "connection_name": connection_name(connection),
        "name": channel_name(connection, number),
        "node": NODE,
        "number": number,
        "peer_host": host,
        "peer_port": port,
        "user": connection.user.name,
    }


def channel(connection, found, sampler: Sampler) -> dict:
    rates = sampler.rates(found)
    info: dict[str, Any] = {
        "acks_uncommitted": 0,
        "confirm": found.confirms is not None,
        "connection_details": connection_details(connection),
        "consumer_count": len(found.consumers),
        "garbage_collection": {},
        "global_prefetch_count": found.prefetch_global,
        "messages_unacknowledged": len(found.unacked),
        "messages_uncommitted": 0,
        "messages_unconfirmed": 0,
        "name": channel_name(connection, found.number),
        "node": NODE,
        "number": found.number,
        "pending_raft_commands": 0,
        "prefetch_count": found.prefetch_count,
        "reductions": 0,
        "reductions_details": {"rate": 0.0},
        "state": "running",
        "transactional": found.tx is not None,
        "user": connection.user.name,
        "user_who_performed_action": connection.user.name,
        "vhost": connection.vhost.name,
    }
    stats = message_stats(found.stats.totals(), rates, CHANNEL_STATS)
    if stats:
        info["message_stats"] = stats
    return info


def consumer(found) -> dict:
    connection = found.channel.connection
    return {
        "ack_required": not found.no_ack,
        "active": True,
        "activity_status": "up",
        "arguments": {"x-priority": found.priority} if found.priority else {},
        "channel_details": channel_details(connection, found.channel.number),
        "consumer_tag": found.tag,
        "exclusive": found.exclusive,
        "prefetch_count": found.prefetch,
        "queue": {"name": found.queue.name, "vhost": found.queue.host.name},
    }


# -- vhosts, users, permissions -------------------------------------------------------


def vhost(found, sampler: Sampler) -> dict:
    counts, rates = sampler.vhost_stats(found).totals(), sampler.rates(found)
    stats = message_stats(counts, rates, CHANNEL_STATS)
    ready = sum(queue.message_count for queue in found.queues.values())
    unacked = sum(queue.unacked for queue in found.queues.values())
    lengths = {
        "messages": ready + unacked,
        "messages_ready": ready,
        "messages_unacknowledged": unacked,
    }
    return {
        "cluster_state": {NODE: "running"},
        "default_queue_type": "undefined",
        "description": "",
        "metadata": {"description": "", "tags": []},
        "name": found.name,
        "tags": [],
        "tracing": False,
        **lengths,
        **_details({}, lengths),
        "recv_oct": 0,
        "recv_oct_details": {"rate": 0.0},
        "send_oct": 0,
        "send_oct_details": {"rate": 0.0},
        **({"message_stats": stats} if stats else {}),
    }


def user(found) -> dict:
    return {
        "name": found.name,
        "password_hash": found.password_hash,
        "hashing_algorithm": found.hashing,
        "tags": list(found.tags),
        "limits": dict(found.limits),
    }


def permission(user_name: str, vhost_name: str, found) -> dict:
    return {
        "user": user_name,
        "vhost": vhost_name,
        "configure": found.configure,
        "write": found.write,
        "read": found.read,
    }


def topic_permission(user_name: str, vhost_name: str, exchange_name: str, found) -> dict:
    return {
        "user": user_name,
        "vhost": vhost_name,
        "exchange": exchange_name,
        "write": found.write,
        "read": found.read,
    }


# -- the node and the overview --------------------------------------------------------


def versions() -> dict:
    return {
        "management_version": RABBITMQ_VERSION,
        "rabbitmq_version": RABBITMQ_VERSION,
        "product_name": "xivo-bus",
        "product_version": __version__,
        "erlang_version": platform.python_version(),
        "erlang_full_version": f"Python {platform.python_version()}",
    }


def node(state, started_at: float, data_dir: str | None) -> dict:
    """This broker as one RabbitMQ node: memory, file descriptors, disk, uptime."""
    memory_limit = state.alarms.memory_limit or default_memory_limit()
    used = resources(data_dir)
    soft = used["fd_total"]
    raised = state.alarms.raised
    connections = [c for c in state.connections if c.user is not None]
    return {
        "name": NODE,
        "type": "disc",
        "running": True,
        "os_pid": str(os.getpid()),
        "processors": os.cpu_count() or 1,
        "uptime": timestamp(time.time() - started_at),
        "rates_mode": "basic",
        "run_queue": 0,
        "mem_used": used["mem_used"],
        "mem_used_details": {"rate": 0.0},
        "mem_limit": memory_limit,
        "mem_alarm": "memory" in raised,
        "mem_calculation_strategy": "rss",
        "disk_free": used["disk_free"],
        "disk_free_details": {"rate": 0.0},
        "disk_free_limit": 0,
        "disk_free_alarm": "disk" in raised,
        "fd_used": used["fd_used"],
        "fd_used_details": {"rate": 0.0},
        "fd_total": soft,
        "sockets_used": len(connections),
        "sockets_used_details": {"rate": 0.0},
        "sockets_total": soft,
        "proc_used": len(state.connections) + 1,
        "proc_used_details": {"rate": 0.0},
        "proc_total": soft,
        **{
            key: value
            for name, count in churn(state).items()
            for key, value in ((name, count), (f"{name}_details", {"rate": 0.0}))
        },
        "db_dir": data_dir or "",
        "config_files": [],
        "log_files": [],
        "enabled_plugins": ["rabbitmq_management", "rabbitmq_prometheus"],
        "exchange_types": [
            {"name": name, "description": "", "enabled": True} for name in EXCHANGE_TYPES
        ],
        "auth_mechanisms": [
            {"name": name, "description": "", "enabled": True} for name in ("PLAIN", "AMQPLAIN")
        ],
        "applications": [
            {"name": "xivo_bus", "description": "The XiVO message bus", "version": __version__}
        ],
        "contexts": [],
        "partitions": [],
        "cluster_links": [],
        "net_ticktime": 60,
    }
