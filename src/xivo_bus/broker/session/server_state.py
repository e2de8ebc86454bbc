"""What every connection shares with the server, and nothing more (as uvicorn's
``ServerState``): the vhosts, the users, the alarms, the store to wait on, the limits,
and the set of open connections."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from xivo_bus.broker.alarms import Alarms
from xivo_bus.broker.auth import Users
from xivo_bus.broker.model.vhost import VHost
from xivo_bus.broker.roles import Durability


@dataclass(frozen=True)
class Tuning:
    """What connections negotiate and how long they are given, as RabbitMQ's
    ``channel_max``, ``frame_max``, ``heartbeat`` and ``handshake_timeout``."""

    channel_max: int = 2047
    frame_max: int = 131072
    heartbeat: int = 60  # seconds
    handshake_timeout: float = 10.0  # seconds, from the socket to connection.open
    # a refused login is answered after this long (seconds), to slow password guessing
    auth_failure_delay: float = 1.0
    # what of a client certificate names its user with SASL EXTERNAL
    cert_login_from: str = "common_name"


@dataclass
class ServerState:
    vhosts: dict[str, VHost]
    users: Users
    alarms: Alarms
    store: Durability | None
    max_message_size: int
    connections: set[Any] = field(default_factory=set)  # session.connection.Connection
    tuning: Tuning = field(default_factory=Tuning)
    connections_opened: int = 0  # since start-up, for the metrics
    connections_closed: int = 0
    channels_opened: int = 0
    channels_closed: int = 0

    def channels(self) -> Iterator[Any]:
        """Every open channel of every connection (for the consumer timeout)."""
        for connection in list(self.connections):
            yield from list(connection.channels.values())
