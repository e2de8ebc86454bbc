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


@dataclass
class ServerState:
    vhosts: dict[str, VHost]
    users: Users
    alarms: Alarms
    store: Durability | None
    max_message_size: int
    connections: set[Any] = field(default_factory=set)  # session.connection.Connection

    def channels(self) -> Iterator[Any]:
        """Every open channel of every connection (for the consumer timeout)."""
        for connection in list(self.connections):
            yield from list(connection.channels.values())
