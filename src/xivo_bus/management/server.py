"""The management API and dashboard on their own HTTP listener (127.0.0.1:15672 unless the
operator says otherwise), in the broker's event loop."""

from __future__ import annotations

from xivo_bus.broker.admin import Admin
from xivo_bus.broker.session.server_state import ServerState
from xivo_bus.http_server import EmbeddedHttpServer
from xivo_bus.management.api import ManagementApi
from xivo_bus.management.sampler import Sampler

DEFAULT_INTERVAL = 5.0  # seconds: RabbitMQ's collect_statistics_interval


class ManagementServer:
    def __init__(
        self,
        state: ServerState,
        admin: Admin,
        listeners,
        host: str,
        port: int,
        interval: float = DEFAULT_INTERVAL,
        data_dir: str | None = None,
    ):
        self.sampler = Sampler(state, interval)
        self.api = ManagementApi(state, admin, self.sampler, listeners, data_dir)
        self.http = EmbeddedHttpServer(self.api, host, port, "xivo-bus management")

    async def start(self) -> str:
        """Bind and serve; the dashboard's URL. ``OSError`` when the address is taken."""
        url = await self.http.start()
        self.api.host, self.api.port = self.http.host, self.http.port
        self.sampler.start()
        return url

    async def close(self) -> None:
        self.sampler.close()
        await self.http.close()
