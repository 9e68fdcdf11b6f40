"""The engine: the operator's state across kopf handlers — workers, daemons, Kubernetes client.

Created at startup by the registration module; kopf handlers call `sync`, `delete`, `forget`
and `gone` and return quickly. Each GolemService gets one ServiceWorker, and its work lives and
dies with the object as the API server has it:

- deleted (finalizer): the worker settles everything, then is dropped (`delete`);
- force-deleted: the worker stops driving, Golem objects are left as they are (`forget`);
- gone without the finalizer (stripped, or a new object of the same name appeared: a new
  uid): the worker stops acting for the name — no more status writes, no new agreements —
  and settles its Golem objects as a deletion would (`gone`). Terminating is what the
  deletion asked for, and nobody else could: the only record of those objects was the status
  of an object that no longer exists;
- peering paused (a higher-priority operator took over): every worker stops, holding its
  Golem objects (recorded in status), and the daemons' connections close, so that this
  operator makes no Golem call and no status write; the operator in charge adopts them from
  status. On resume the workers start again from the object's current status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from typing import Any

from golem_operator import constants
from golem_operator.config import OperatorConfig
from golem_operator.core.peering import may_act
from golem_operator.handlers import instances
from golem_operator.handlers.daemons import DaemonPool
from golem_operator.handlers.kube import Kube
from golem_operator.handlers.service import ServiceWorker
from golem_operator.observability import metrics
from golem_operator.requestor.images import ImageRegistry

log = logging.getLogger(__name__)

#: How often each worker's object is looked up, for deletions the watch did not report.
GONE_CHECK_PERIOD = 30.0
#: How often the peering object is read.
PEERING_PERIOD = 0.5
#: Taking over waits this long after this operator outranks every live peer: the peer it
#: replaces reads the same object as often, and must have stopped before this one adopts.
HANDOVER_GRACE = 3.0

Key = tuple[str, str]


class Peering:
    """Where this operator's kopf peering keep-alives are, and who it is there."""

    def __init__(
        self, name: str, identity: str, priority: int, namespaces: list[str] | None
    ) -> None:
        self.name = name
        self.identity = identity
        self.priority = priority
        #: None for a cluster-wide operator (one ClusterKopfPeering object)
        self.namespaces = namespaces


class Engine:
    def __init__(self, config: OperatorConfig, kube: Kube, peering: Peering | None = None) -> None:
        self.config = config
        self.kube = kube
        self.peering = peering
        self.daemons = DaemonPool(
            unowned_wait=config.unowned_document_wait,
            max_requests=config.daemon_max_requests,
            max_long_polls=config.daemon_max_long_polls,
        )
        self.images = ImageRegistry()
        self.workers: dict[Key, ServiceWorker] = {}
        #: Workers of objects that are gone, settling their Golem objects.
        self.orphans: set[ServiceWorker] = set()
        #: Objects seen while paused (started on resume).
        self.held: set[Key] = set()
        #: Set while this operator may act (always, without peering).
        self.active = asyncio.Event()
        if peering is None:
            self.active.set()
        self.heartbeat = time.monotonic()
        self._tasks: list[asyncio.Task[None]] = []
        self._lock = asyncio.Lock()

    def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._beat(), name="heartbeat"))
        self._tasks.append(asyncio.create_task(self._check_gone(), name="gone-check"))
        if self.peering is not None:
            self._tasks.append(asyncio.create_task(self._follow_peering(), name="peering"))

    async def _beat(self) -> None:
        # The liveness probe fails when this stops advancing: a wedged event loop.
        while True:
            self.heartbeat = time.monotonic()
            await asyncio.sleep(1.0)

    def alive(self, max_lag: float = 30.0) -> bool:
        return time.monotonic() - self.heartbeat < max_lag

    # --- the objects --------------------------------------------------------------------

    def sync(self, body: dict[str, Any]) -> ServiceWorker | None:
        """Create or update the worker of a GolemService (None while paused)."""
        key = _key(body)
        uid = body["metadata"].get("uid", "")
        worker = self.workers.get(key)
        if worker is not None and uid and worker.uid != uid:
            # A new object of the same name: the one the worker served is gone.
            self._orphan(key, worker, "replaced by a new object of the same name")
            worker = None
        if not self.active.is_set():
            self.held.add(key)
            return None
        if worker is None:
            worker = ServiceWorker(self, body)
            self.workers[key] = worker
            worker.start()
        else:
            worker.update(body)
        return worker

    async def delete(self, body: dict[str, Any], wait: float) -> bool:
        """Ask the service to stop everything; True once settled (the finalizer may go)."""
        worker = self.sync(body)
        if worker is None:
            return False  # paused: the operator in charge settles it
        worker.deleting = True
        worker.wake.set()
        try:
            await asyncio.wait_for(worker.deleted.wait(), wait)
        except TimeoutError:
            return False
        await self.forget(body)
        return True

    async def forget(self, body: dict[str, Any], abandon: bool = False) -> None:
        """Drop a worker without touching Golem; with `abandon` (force-delete) its instance
        objects are released too, unsettled."""
        key = _key(body)
        self.held.discard(key)
        worker = self.workers.get(key)
        if worker is not None and worker.uid == body["metadata"].get("uid", worker.uid):
            del self.workers[key]
            await worker.close()
            metrics.forget_service(*key)
        if abandon:
            await instances.abandon(self.kube, *key, body["metadata"].get("uid", ""))

    def instance_event(self, kind: str | None, body: dict[str, Any]) -> None:
        """A GolemServiceInstance changed: its deletion is its service's business."""
        meta = body.get("metadata") or {}
        service = (meta.get("labels") or {}).get(constants.SERVICE_LABEL)
        worker = self.workers.get((meta.get("namespace", ""), service or ""))
        if worker is None or not worker.loaded:
            return  # a worker loading its instances sees the deletion mark itself
        if kind == "DELETED":
            worker.instance_vanished(meta["name"], meta.get("uid", ""))
        elif meta.get("deletionTimestamp"):
            worker.instance_deleted(meta["name"])

    def gone(self, body: dict[str, Any]) -> None:
        """The object was removed from the API server (a DELETED watch event)."""
        key = _key(body)
        worker = self.workers.get(key)
        if worker is None or worker.uid != body["metadata"].get("uid", worker.uid):
            self.held.discard(key)
            return
        if worker.deleted.is_set():
            return  # settled; the delete handler drops it
        self._orphan(key, worker, "deleted without its finalizer")

    def _orphan(self, key: Key, worker: ServiceWorker, why: str) -> None:
        del self.workers[key]
        worker.orphan(why)
        self.orphans.add(worker)
        task = asyncio.create_task(self._settle(worker), name=f"orphan-{key[0]}/{key[1]}")
        self._tasks.append(task)
        task.add_done_callback(lambda done: self._tasks.remove(done))

    async def _settle(self, worker: ServiceWorker) -> None:
        await worker.deleted.wait()
        worker.log.warning("gone GolemService (uid %s): its Golem objects are settled", worker.uid)
        await worker.close()
        self.orphans.discard(worker)

    async def _check_gone(self) -> None:
        """Find workers whose object vanished without a DELETED event (e.g. a watch gap)."""
        while True:
            await asyncio.sleep(GONE_CHECK_PERIOD)
            for key, worker in list(self.workers.items()):
                try:
                    found = await self.kube.get_service(*key)
                except asyncio.CancelledError:
                    raise
                except Exception as error:
                    log.info("looking up %s/%s failed: %s", *key, error)
                    continue
                uid = (found or {}).get("metadata", {}).get("uid")
                if self.workers.get(key) is worker and uid != worker.uid:
                    self._orphan(key, worker, "its object is gone")

    # --- peering ------------------------------------------------------------------------

    async def _follow_peering(self) -> None:
        assert self.peering is not None
        peering = self.peering
        outranking_since: float | None = None
        backoff = PEERING_PERIOD
        while True:
            try:
                now = datetime.now(UTC)
                places = peering.namespaces if peering.namespaces is not None else [None]
                acting = True
                for namespace in places:
                    peers = await self.kube.peering_status(peering.name, namespace)
                    if peers is None or not may_act(peers, peering.identity, peering.priority, now):
                        acting = False
                        break
                backoff = PEERING_PERIOD
            except asyncio.CancelledError:
                raise
            except Exception as error:
                # Unread, the peering stays as it was: kopf's keep-alives fail the same way.
                log.info("reading the peering object failed: %s", error)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if not acting:
                outranking_since = None
                if self.active.is_set():
                    await self.pause()
            elif not self.active.is_set():
                moment = time.monotonic()
                outranking_since = outranking_since or moment
                if moment - outranking_since >= HANDOVER_GRACE:
                    await self.resume()
            await asyncio.sleep(PEERING_PERIOD)

    async def pause(self) -> None:
        """Stop every worker (holding its Golem objects) and every call to Golem."""
        async with self._lock:
            if not self.active.is_set():
                return
            self.active.clear()
            log.warning("peering: another operator is in charge; pausing every service")
            workers = list(self.workers.items())
            self.workers.clear()
            for key, worker in workers:
                self.held.add(key)
                await worker.close()
            for worker in self.orphans:
                await worker.close()
            await self.daemons.close()

    async def resume(self) -> None:
        """In charge again: adopt every held object from its current status."""
        async with self._lock:
            if self.active.is_set():
                return
            log.warning("peering: this operator is in charge; resuming")
            self.active.set()
            for worker in self.orphans:
                worker.start()
            for key in sorted(self.held):
                try:
                    body = await self.kube.get_service(*key)
                except Exception as error:
                    # kopf re-delivers the object when its watch resumes: sync starts it then.
                    log.warning("reading %s/%s failed: %s", *key, error)
                    continue
                self.held.discard(key)
                if body is not None and key not in self.workers:
                    self.sync(body)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for worker in [*self.workers.values(), *self.orphans]:
            await worker.close()
        self.workers.clear()
        self.orphans.clear()
        await self.daemons.close()
        await self.images.close()
        await self.kube.close()


def _key(body: dict[str, Any]) -> Key:
    return (body["metadata"]["namespace"], body["metadata"]["name"])


def force_delete_requested(body: dict[str, Any]) -> bool:
    annotations = body.get("metadata", {}).get("annotations") or {}
    return str(annotations.get(constants.FORCE_DELETE_ANNOTATION, "")).lower() == "true"
