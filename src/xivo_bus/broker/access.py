"""Permission checks, where RabbitMQ makes them (``rabbit_access_control`` as
``rabbit_channel`` calls it): configure, write or read on a resource, matched against the
user's regular expressions for the vhost, and topic permissions on routing keys.

A channel keeps the resources it was allowed recently (``Access``), as RabbitMQ's channel
keeps its last 12 and forgets them when it goes idle (its process hibernates after about a
second without work): a permission change applies at once to new channels and to
resources a channel has not used lately, and to every resource of a channel once it has
been idle, as in RabbitMQ.
"""

from __future__ import annotations

import time

from xivo_bus.broker.model import wording
from xivo_bus.broker.users import User

CACHE_SIZE = 12  # RabbitMQ's ?MAX_PERMISSION_CACHE_SIZE
IDLE = 1.0  # seconds: gen_server2's ?HIBERNATE_AFTER_MIN, after which RabbitMQ forgets
DEFAULT_EXCHANGE = "amq.default"  # the name permissions see for the default exchange


class Access:
    """One channel's permission checks for its user on its vhost."""

    __slots__ = ("user", "vhost", "_allowed", "_last")

    def __init__(self, user: User, vhost: str):
        self.user = user
        self.vhost = vhost
        self._allowed: dict[tuple[str, str, str], None] = {}  # (perm, kind, name), LRU
        self._last = 0.0

    def check(self, perm: str, kind: str, name: str) -> None:
        """``perm`` (configure, write, read) on ``kind`` (exchange, queue) ``name``, or
        403 in RabbitMQ's words."""
        key = (perm, kind, name)
        allowed = self._allowed
        now = time.monotonic()
        if now - self._last > IDLE:
            allowed.clear()
        self._last = now
        if key in allowed:
            return
        permission = self.user.permissions.get(self.vhost)
        if permission is None or not permission.allows(perm, name):
            raise wording.access_refused(kind, name, self.vhost, self.user.name)
        allowed[key] = None
        if len(allowed) > CACHE_SIZE:
            del allowed[next(iter(allowed))]

    def check_exchange(self, perm: str, name: str) -> None:
        self.check(perm, "exchange", name or DEFAULT_EXCHANGE)

    def check_topic(self, perm: str, exchange: str, routing_key: str) -> None:
        """Topic permissions (write on publish, read on bind) for a topic exchange."""
        if not self.user.topic_allows(self.vhost, exchange, perm, routing_key):
            raise wording.topic_access_refused(routing_key, exchange, self.vhost, self.user.name)
