"""`LocalNetwork`: start and stop the local Golem network's HTTP server.

Called by `localnet.cli` (the `golem-operator local-network` subcommand), by test fixtures
and by benchmarks. Binds to loopback only.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
from pathlib import Path

from aiohttp import web

from golem_operator.localnet import api
from golem_operator.localnet.config import LocalNetConfig
from golem_operator.localnet.network import Network

LOOPBACK = "127.0.0.1"


class LocalNetwork:
    """A yagna-compatible REST server backed by simulated providers.

    `app_key` is generated when not given; it never appears in repr() or logs.
    """

    def __init__(self, config: LocalNetConfig | None = None, app_key: str | None = None) -> None:
        self.config = config or LocalNetConfig()
        self._app_key = app_key or secrets.token_hex(16)
        self._runner: web.AppRunner | None = None
        self._network: Network | None = None
        self._work_root: Path | None = None
        self._owns_work_root = False
        self.url: str | None = None

    def __repr__(self) -> str:
        return f"LocalNetwork(url={self.url!r}, providers={len(self.config.providers)} entries)"

    @property
    def app_key(self) -> str:
        return self._app_key

    @property
    def network(self) -> Network:
        """The in-memory state (for tests and benchmarks that look inside)."""
        if self._network is None:
            raise RuntimeError("the local network is not started")
        return self._network

    async def start(self, host: str = LOOPBACK, port: int = 0) -> str:
        """Start serving; returns the base URL, e.g. http://127.0.0.1:41234."""
        if host != LOOPBACK:
            raise ValueError("the local network only listens on 127.0.0.1")
        if self.config.work_root is not None:
            self._work_root = self.config.work_root
            self._work_root.mkdir(parents=True, exist_ok=True)
        else:
            self._work_root = Path(tempfile.mkdtemp(prefix="golem-localnet-"))
            self._owns_work_root = True
        self._network = Network(self.config, self._work_root)
        app = web.Application(
            middlewares=[
                api.make_auth_middleware(self._app_key),
                api.fault_middleware,
                api.error_middleware,
            ],
            client_max_size=self.config.limits.transfer_cap_bytes * 2 + 65536,
        )
        app[api.NETWORK_KEY] = self._network
        api.add_routes(app)
        self._runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound_port = int(self._runner.addresses[0][1])
        self.url = f"http://{host}:{bound_port}"
        self._network.images.base_url = self.url
        return self.url

    async def stop(self) -> None:
        """Kill every sandbox, stop serving and remove the temporary work folder."""
        if self._network is not None:
            await self._network.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._owns_work_root and self._work_root is not None:
            shutil.rmtree(self._work_root, ignore_errors=True)
        self.url = None

    async def __aenter__(self) -> LocalNetwork:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
