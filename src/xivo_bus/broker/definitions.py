"""Definitions in RabbitMQ's JSON format (``rabbitmqctl export_definitions`` /
``import_definitions``): users with their password hashes, vhosts with their limits,
permissions, topic permissions, exchanges, queues and bindings. What xivo-bus exports loads
into RabbitMQ, and what RabbitMQ exports loads here, so a deployment can move either way.

Exported, as RabbitMQ 3.10 exports them: every user and vhost, every queue but exclusive
ones, every exchange but the default and ``amq.*`` ones, and the bindings whose source is
such an exchange or an ``amq.*`` one. Policies and other runtime parameters do not exist
here: importing them is refused with the reason, not silently dropped.
"""

from __future__ import annotations

import base64
from typing import Any

from xivo_bus import __version__
from xivo_bus.broker.model.exchanges import Exchange
from xivo_bus.broker.model.vhost import VHost
from xivo_bus.broker.users import HASHINGS, Permission, TopicPermission, User

RABBITMQ_VERSION = "3.10.8"  # the RabbitMQ whose format this is


class DefinitionsError(ValueError):
    """Definitions that cannot be imported; the message says which entry and why."""


def json_value(value: Any) -> Any:
    """A field table value as RabbitMQ writes it in JSON."""
    if isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode()
        except UnicodeDecodeError:
            return base64.b64encode(bytes(value)).decode()
    if isinstance(value, dict):
        return {key: json_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_value(item) for item in value]
    if hasattr(value, "isoformat"):
        return int(value.timestamp())
    if hasattr(value, "as_tuple"):  # decimal
        return float(value)
    return value


def _exported_exchange(name: str) -> bool:
    return name != "" and not name.startswith("amq.")


def export(vhosts: dict[str, VHost], users) -> dict:
    """Everything as RabbitMQ's ``export_definitions`` lays it out."""
    definitions: dict[str, Any] = {
        "rabbit_version": RABBITMQ_VERSION,
        "rabbitmq_version": RABBITMQ_VERSION,
        "product_name": "xivo-bus",
        "product_version": __version__,
        "users": [],
        "vhosts": [],
        "permissions": [],
        "topic_permissions": [],
        "parameters": [],
        "global_parameters": [],
        "policies": [],
        "queues": [],
        "exchanges": [],
        "bindings": [],
    }
    for user in users:
        definitions["users"].append(
            {
                "name": user.name,
                "password_hash": user.password_hash,
                "hashing_algorithm": user.hashing,
                "tags": list(user.tags),
                "limits": dict(user.limits),
            }
        )
        for vhost, permission in sorted(user.permissions.items()):
            definitions["permissions"].append(
                {
                    "user": user.name,
                    "vhost": vhost,
                    "configure": permission.configure,
                    "write": permission.write,
                    "read": permission.read,
                }
            )
        for vhost, by_exchange in sorted(user.topic_permissions.items()):
            for exchange, topic in sorted(by_exchange.items()):
                definitions["topic_permissions"].append(
                    {
                        "user": user.name,
                        "vhost": vhost,
                        "exchange": exchange,
                        "write": topic.write,
                        "read": topic.read,
                    }
                )
    for name, vhost in sorted(vhosts.items()):
        definitions["vhosts"].append(
            {
                "name": name,
                "limits": [[key, value] for key, value in sorted(vhost.limits.items())],
                "metadata": {"description": "", "tags": []},
            }
        )
        if vhost.limits:
            definitions["parameters"].append(
                {
                    "vhost": name,
                    "component": "vhost-limits",
                    "name": "limits",
                    "value": dict(vhost.limits),
                }
            )
        for queue in vhost.queues.values():
            if queue.exclusive:
                continue
            definitions["queues"].append(
                {
                    "name": queue.name,
                    "vhost": name,
                    "durable": queue.durable,
                    "auto_delete": queue.auto_delete,
                    "arguments": json_value(queue.arguments),
                    "type": "classic",
                }
            )
        for exchange in vhost.exchanges.values():
            if _exported_exchange(exchange.name):
                definitions["exchanges"].append(
                    {
                        "name": exchange.name,
                        "vhost": name,
                        "type": exchange.type_name,
                        "durable": exchange.durable,
                        "auto_delete": exchange.auto_delete,
                        "internal": exchange.internal,
                        "arguments": json_value(exchange.arguments),
                    }
                )
            for binding in exchange.bindings.values():
                destination = binding.destination
                is_exchange = isinstance(destination, Exchange)
                if exchange.name == "" or (not is_exchange and destination.exclusive):
                    continue
                definitions["bindings"].append(
                    {
                        "source": exchange.name,
                        "vhost": name,
                        "destination": destination.name,
                        "destination_type": "exchange" if is_exchange else "queue",
                        "routing_key": binding.routing_key,
                        "arguments": json_value(binding.arguments),
                    }
                )
    return definitions


def _entries(definitions: dict, key: str) -> list[dict]:
    entries = definitions.get(key) or []
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        raise DefinitionsError(f"'{key}' must be a list of objects")
    return entries


def _field(entry: dict, key: str, kind: str, default: Any = None) -> Any:
    value = entry.get(key, default)
    if value is None:
        raise DefinitionsError(f"{kind} {entry!r}: '{key}' is missing")
    return value


def check(definitions: Any) -> None:
    """Refuse what cannot be imported before anything is changed."""
    if not isinstance(definitions, dict):
        raise DefinitionsError("definitions must be a JSON object")
    policies = _entries(definitions, "policies")
    if policies:
        raise DefinitionsError(f"{len(policies)} policies: policies are not supported by xivo-bus")
    for parameter in _entries(definitions, "parameters"):
        if parameter.get("component") != "vhost-limits":
            raise DefinitionsError(
                f"parameter {parameter.get('component')!r} of vhost {parameter.get('vhost')!r}: "
                "only vhost-limits parameters are supported by xivo-bus"
            )
    for user in _entries(definitions, "users"):
        _field(user, "name", "user")
        hashing = user.get("hashing_algorithm", "rabbit_password_hashing_sha256")
        if hashing not in HASHINGS:
            raise DefinitionsError(f"user {user['name']!r}: unknown hashing '{hashing}'")
    for key in (
        "global_parameters",
        "vhosts",
        "permissions",
        "topic_permissions",
        "queues",
        "exchanges",
        "bindings",
    ):
        _entries(definitions, key)


def users_from(definitions: dict) -> list[User]:
    """The users of ``definitions``, with their permissions folded in."""
    users: dict[str, User] = {}
    for entry in _entries(definitions, "users"):
        tags = entry.get("tags") or []
        if isinstance(tags, str):  # RabbitMQ before 3.9 wrote "administrator,management"
            tags = [tag for tag in tags.split(",") if tag]
        users[entry["name"]] = User(
            entry["name"],
            entry.get("password_hash") or "",
            entry.get("hashing_algorithm") or "rabbit_password_hashing_sha256",
            tuple(tags),
            limits={k: v for k, v in (entry.get("limits") or {}).items() if isinstance(v, int)},
        )
    for entry in _entries(definitions, "permissions"):
        user = users.get(_field(entry, "user", "permission"))
        if user is not None:
            user.permissions[_field(entry, "vhost", "permission")] = Permission(
                entry.get("configure", ""), entry.get("write", ""), entry.get("read", "")
            )
    for entry in _entries(definitions, "topic_permissions"):
        user = users.get(_field(entry, "user", "topic permission"))
        if user is not None:
            vhost = _field(entry, "vhost", "topic permission")
            exchange = _field(entry, "exchange", "topic permission")
            user.topic_permissions.setdefault(vhost, {})[exchange] = TopicPermission(
                exchange, entry.get("write", ""), entry.get("read", "")
            )
    return list(users.values())


def vhost_limits(definitions: dict) -> dict[str, dict[str, int]]:
    """Each vhost's limits, from its entry or its vhost-limits parameter."""
    limits: dict[str, dict[str, int]] = {}
    for entry in _entries(definitions, "vhosts"):
        pairs = entry.get("limits") or []
        found = dict(pairs) if isinstance(pairs, list) else dict(pairs or {})
        limits[_field(entry, "name", "vhost")] = found
    for parameter in _entries(definitions, "parameters"):
        if parameter.get("component") == "vhost-limits":
            limits.setdefault(parameter["vhost"], {}).update(parameter.get("value") or {})
    return limits
