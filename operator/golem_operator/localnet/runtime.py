"""What every part of the simulated network shares: config, the requestor, providers, tasks.

`Runtime` is built once by the facade (`localnet.network.Network`) and handed to the market,
the exe-units, the payments and the VPN parts (`Part` subclasses), so that none of them owns
another's state.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from golem_operator.localnet.config import LocalNetConfig
from golem_operator.localnet.config import expand_providers as _expand
from golem_operator.localnet.model import Provider, log_failure


class Runtime:
    """The configuration and the supervised background tasks of one local network."""

    def __init__(self, config: LocalNetConfig, work_root: Path) -> None:
        self.config = config
        self.work_root = work_root
        self.requestor_id = "0x" + secrets.token_hex(20)
        self.providers = {spec.name: Provider(spec) for spec in _expand(config)}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop = asyncio.get_running_loop()

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(log_failure)
        return task

    def now(self) -> float:
        return self._loop.time()

    def cancel_tasks(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    async def wait_tasks(self) -> None:
        await asyncio.gather(*self._tasks, return_exceptions=True)


class Part:
    """One concern of the network (market, exe-units, payments, VPN) on the shared runtime."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @property
    def config(self) -> LocalNetConfig:
        return self.runtime.config

    @property
    def requestor_id(self) -> str:
        return self.runtime.requestor_id

    @property
    def providers(self) -> dict[str, Provider]:
        return self.runtime.providers

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        return self.runtime.spawn(coroutine)

    def now(self) -> float:
        return self.runtime.now()
