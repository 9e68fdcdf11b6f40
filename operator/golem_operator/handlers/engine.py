"""The engine: the operator's state across kopf handlers — workers, daemons, Kubernetes client.

Created at startup by the registration module; kopf handlers call `sync`, `delete` and
`forget` and return quickly. Each GolemService gets one ServiceWorker.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from golem_operator import constants
from golem_operator.config import OperatorConfig
from golem_operator.handlers.daemons import DaemonPool
from golem_operator.handlers.kube import Kube
from golem_operator.handlers.service import ServiceWorker
from golem_operator.observability import metrics


class Engine:
    def __init__(self, config: OperatorConfig, kube: Kube) -> None:
        self.config = config
        self.kube = kube
        self.daemons = DaemonPool(unowned_wait=config.unowned_document_wait)
        self.workers: dict[tuple[str, str], ServiceWorker] = {}
        self.heartbeat = time.monotonic()
        self._heartbeat_task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._heartbeat_task = asyncio.create_task(self._beat(), name="heartbeat")

    async def _beat(self) -> None:
        # The liveness probe fails when this stops advancing: a wedged event loop.
        while True:
            self.heartbeat = time.monotonic()
            await asyncio.sleep(1.0)

    def alive(self, max_lag: float = 30.0) -> bool:
        return time.monotonic() - self.heartbeat < max_lag

    def sync(self, body: dict[str, Any]) -> ServiceWorker:
        """Create or update the worker of a GolemService."""
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        worker = self.workers.get(key)
        if worker is None or worker.uid != body["metadata"].get("uid", worker.uid):
            worker = ServiceWorker(self, body)
            self.workers[key] = worker
            worker.start()
        else:
            worker.update(body)
        return worker

    async def delete(self, body: dict[str, Any], wait: float) -> bool:
        """Ask the service to stop everything; True once settled (the finalizer may go)."""
        worker = self.sync(body)
        worker.deleting = True
        worker.wake.set()
        try:
            await asyncio.wait_for(worker.deleted.wait(), wait)
        except TimeoutError:
            return False
        await self.forget(body)
        return True

    async def forget(self, body: dict[str, Any]) -> None:
        """Drop a worker without touching Golem (force-delete or object gone)."""
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        worker = self.workers.pop(key, None)
        if worker is not None:
            await worker.close()
            metrics.forget_service(*key)

    async def close(self) -> None:
        for worker in list(self.workers.values()):
            await worker.close()
        self.workers.clear()
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
        await self.daemons.close()
        await self.kube.close()


def force_delete_requested(body: dict[str, Any]) -> bool:
    annotations = body.get("metadata", {}).get("annotations") or {}
    return str(annotations.get(constants.FORCE_DELETE_ANNOTATION, "")).lower() == "true"
