"""The broker: wires the store, the vhosts, the users, the alarms and the consumer
timeout together, listens, recovers at start-up and shuts down cleanly. Nothing imports
this module but the command line: connections get a ``ServerState``, never the broker."""

from __future__ import annotations

import asyncio
import logging
import ssl
from pathlib import Path

from xivo_bus.amqp import errors
from xivo_bus.broker.admin import Admin
from xivo_bus.broker.alarms import Alarms
from xivo_bus.broker.consumer_timeout import DEFAULT_CONSUMER_TIMEOUT, ConsumerTimeout
from xivo_bus.broker.control import Control
from xivo_bus.broker.listeners import Listener
from xivo_bus.broker.model import wording
from xivo_bus.broker.model.message import Message
from xivo_bus.broker.model.vhost import VHost
from xivo_bus.broker.session.connection import Connection
from xivo_bus.broker.session.server_state import ServerState, Tuning
from xivo_bus.broker.store import Recovered, Store, StoredUser
from xivo_bus.broker.users import (
    DEFAULT_USER,
    DEFAULT_VHOST,
    Permission,
    TopicPermission,
    User,
    Users,
)

log = logging.getLogger("xivo_bus.broker")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5672
DEFAULT_LISTENER = Listener(DEFAULT_HOST, DEFAULT_PORT)
DEFAULT_MAX_MESSAGE_SIZE = 134_217_728  # RabbitMQ 3.10's max_message_size: 128 MiB


class Broker:
    """The broker; with a ``data_dir`` it keeps durable things there (see ``store``),
    without one everything lives in memory only."""

    def __init__(
        self,
        data_dir: Path | None = None,
        store_size_limit: int | None = None,
        consumer_timeout: int | None = DEFAULT_CONSUMER_TIMEOUT,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        memory_limit: int | None = None,
        loopback_users: tuple[str, ...] = (DEFAULT_USER,),
        control_socket: Path | None = None,
        tuning: Tuning | None = None,
        default_user: tuple[str, str] = (DEFAULT_USER, DEFAULT_USER),
        default_vhost: str = DEFAULT_VHOST,
    ):
        self.store = Store(data_dir, store_size_limit) if data_dir is not None else None
        connections: set[Connection] = set()
        self.alarms = Alarms(connections, memory_limit)
        loop = asyncio.get_running_loop()
        self.loop = loop
        self.state = ServerState(
            vhosts={},
            users=Users(loopback_users),
            alarms=self.alarms,
            store=self.store,
            max_message_size=max_message_size,
            connections=connections,
            tuning=tuning or Tuning(),
        )
        self.default_user = default_user
        self.default_vhost = default_vhost
        self.vhosts = self.state.vhosts
        self.connections = connections
        # unacked deliveries older than this (ms) close their channel; None or 0: never
        self.consumer_timeout = (
            ConsumerTimeout(self.state.channels, consumer_timeout) if consumer_timeout else None
        )
        self.servers: list[asyncio.base_events.Server] = []
        self.recovered: Recovered | None = None
        self.admin = Admin(self.state, loop)
        self.control = Control(self.admin, control_socket) if control_socket else None
        if self.store is None:
            self._defaults()

    def _defaults(self) -> list[int]:
        """A broker's first start: vhost ``/`` and guest/guest, administrator, with every
        permission on ``/`` (as RabbitMQ's first start). Returns the store writes."""
        vhost = self.default_vhost
        self.vhosts[vhost] = VHost(self.loop, vhost, self.store)
        user = Users.default(*self.default_user, vhost)
        self.state.users.put(user)
        if self.store is None:
            return []
        return [self.store.save_vhost(vhost), self.store.save_user(user)]

    def _recover(self) -> None:
        """Read the store back: durable definitions and persistent messages."""
        self.recovered = recovered = self.store.open()
        if recovered.fresh:
            self._defaults()
        for name, limits in recovered.vhosts.items():
            self.vhosts[name] = VHost(self.loop, name, self.store, limits)
        for stored in recovered.users:
            self.state.users.put(user_from_store(stored))
        for vhost in self.vhosts.values():
            vhost.restore(recovered)
        shared: dict[int, Message] = {}  # one object for the queues holding the same one
        names: dict[str, bytes] = {}
        unusable: dict[str, int] = {}
        store = self.store
        for vhost_name, queue, seq, expires_at, message_id, *content in store.entries():
            try:
                message = shared.get(message_id)
                if message is None:
                    message = Message.from_store(message_id, *content, names)
                    if store.shared(message_id):
                        shared[message_id] = message
                vhost = self.vhosts.get(vhost_name)
                if vhost is not None:
                    vhost.restore_entry(queue, seq, expires_at, message)
            except Exception:  # a row that reads but makes no sense: skip it, go on
                unusable[queue] = unusable.get(queue, 0) + 1
        for queue, count in unusable.items():
            recovered.skipped.append(f"queue '{queue}': {count} unusable stored messages")
        for stored in recovered.queues:
            stored.messages -= unusable.get(stored.name, 0)
        for vhost in self.vhosts.values():
            for queue in list(vhost.queues.values()):
                queue.restored()
        self.store.on_failure_change(lambda reason: self.alarms.set("disk", reason))

    async def start(
        self, listeners: list[Listener] | tuple[Listener, ...] = (DEFAULT_LISTENER,)
    ) -> list[tuple[Listener, str, int]]:
        """Recover the store, then listen for AMQP connections on each listener; returns
        each with the address it bound (port 0 picks one). Raises ``StoreError`` for an
        unusable data dir, ``OSError`` for an address that cannot be listened on."""
        loop = asyncio.get_running_loop()
        if self.store is not None:
            self._recover()
            self.store.start(loop)
        bound = []
        for listener in listeners:
            external = listener.tls is not None and listener.tls.verify_mode != ssl.CERT_NONE
            server = await loop.create_server(
                lambda external=external: Connection(self.state, external),
                listener.host,
                listener.port,
                reuse_address=True,
                backlog=1024,
                ssl=listener.tls,
                ssl_handshake_timeout=self.state.tuning.handshake_timeout if listener.tls else None,
            )
            self.servers.append(server)
            address = server.sockets[0].getsockname()
            bound.append((listener, address[0], address[1]))
        if self.consumer_timeout is not None:
            self.consumer_timeout.start(loop)
        if self.control is not None:
            await self.control.start()
        self.alarms.start(loop)
        return bound

    async def close(self, timeout: float = 1.0) -> None:
        """Stop listening, write what the store still has to write, close every client
        with 320 CONNECTION_FORCED, wait briefly for their close-ok."""
        for server in self.servers:
            server.close()
        if self.control is not None:
            self.control.close()
        if self.consumer_timeout is not None:
            self.consumer_timeout.stop()
        self.alarms.stop()
        loop = asyncio.get_running_loop()
        if self.store is not None:
            for connection in list(self.connections):
                connection.pause_for_shutdown()
            await loop.run_in_executor(None, self.store.close)
            await asyncio.sleep(0)  # let the last commit's notifications run
        for connection in list(self.connections):
            connection.close(errors.CONNECTION_FORCED, wording.SHUTDOWN)
            connection.resume_for_close_ok()
        deadline = loop.time() + timeout
        while self.connections and loop.time() < deadline:
            await asyncio.sleep(0.02)
        for connection in list(self.connections):
            connection.abort()
        for server in self.servers:
            await server.wait_closed()


def user_from_store(stored: StoredUser) -> User:
    return User(
        stored.name,
        stored.password_hash,
        stored.hashing,
        tuple(stored.tags),
        {vhost: Permission(*patterns) for vhost, patterns in stored.permissions.items()},
        {
            vhost: {name: TopicPermission(name, *patterns) for name, patterns in by_name.items()}
            for vhost, by_name in stored.topic_permissions.items()
        },
        dict(stored.limits),
    )
