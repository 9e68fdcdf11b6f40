"""A service's GolemServiceInstance objects: created, status-written and removed.

Owned by a service worker, which holds every instance in memory (``core`` edits them) and
tells this store what changed. Each instance object has its own status writer, so a change to
one instance writes that instance only, and ``flush(name)`` waits for that one. An object is
created on its first write, owned by the GolemService (controller, blockOwnerDeletion) and
labelled with the service's name and the instance's revision; it carries the operator's
finalizer, so that deleting it (kubectl delete gsi) lets the instance stop and settle first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException

from golem_operator import constants
from golem_operator.api.status import GolemServiceInstanceSpec, Instance, InstanceState
from golem_operator.core.plan import sequence
from golem_operator.crashpoints import crashpoint
from golem_operator.handlers.kube import Kube
from golem_operator.handlers.status import StatusWriter

log = logging.getLogger(__name__)

#: How long an instance's Event waits for its object to exist before it is dropped.
EVENT_WAIT = 60.0


@dataclass
class Loaded:
    """Instance objects found for a service."""

    instances: list[Instance]
    #: Names of instances whose object is being deleted (deletionTimestamp set).
    deleting: set[str] = field(default_factory=set)


class _Record:
    def __init__(self, instance: Instance, uid: str | None) -> None:
        self.instance = instance
        self.uid = uid
        self.created = asyncio.Event()
        if uid:
            self.created.set()
        #: Being removed: its writer writes what is pending, then nothing more.
        self.removed = False
        self.writer: StatusWriter
        #: The object's creation, started as soon as the instance is (its first status
        #: write may wait: it usually goes with the agreement's record).
        self.creating: asyncio.Task[None] | None = None


class InstanceObjects:
    def __init__(
        self,
        kube: Kube,
        namespace: str,
        service: str,
        owner_uid: Callable[[], str],
        interval: float,
        redact: Callable[[Any], Any],
        routine_interval: float = 0.0,
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.service = service
        self._owner_uid = owner_uid
        self._interval = interval
        self._routine_interval = routine_interval
        self._redact = redact
        self._records: dict[str, _Record] = {}
        self._background: set[asyncio.Task[None]] = set()
        #: No more writes: the service object is gone (its instance objects go with it).
        self.gone = False

    # --- reading ----------------------------------------------------------------------------

    async def load(self) -> Loaded:
        """The instance objects this service owns, as instances, each tracked from here on."""
        found = await self.kube.list_instances(self.namespace, self.service)
        owner = self._owner_uid()
        loaded = Loaded([])
        for body in sorted(found, key=_order):
            meta = body["metadata"]
            owners = {ref.get("uid") for ref in meta.get("ownerReferences") or []}
            if owner and owners and owner not in owners:
                continue  # an object of an earlier service of the same name
            status = body.get("status") or {}
            spec = GolemServiceInstanceSpec.model_validate(body.get("spec") or {})
            if not status.get("state"):
                # Created, then the operator stopped before its first status write: nothing
                # was rented for it yet.
                status = {
                    **status,
                    "state": InstanceState.PENDING.value,
                    "createdAt": meta.get("creationTimestamp"),
                }
            instance = Instance.model_validate(
                {**status, "name": meta["name"], "revision": spec.revision}
            )
            self.track(instance, uid=meta["uid"], written=body.get("status") or {})
            loaded.instances.append(instance)
            if meta.get("deletionTimestamp"):
                loaded.deleting.add(instance.name)
        return loaded

    def vanished(self, name: str, uid: str) -> bool:
        """An object was removed from the API server: True if it was a tracked one (its
        finalizer stripped by hand); it is recorded again on the next write."""
        record = self._records.get(name)
        if record is None or record.uid != uid:
            return False
        record.uid = None
        record.created.clear()
        record.writer.changed()
        return True

    def known(self, name: str) -> bool:
        return name in self._records

    def uid(self, name: str) -> str | None:
        record = self._records.get(name)
        return record.uid if record else None

    # --- writing ----------------------------------------------------------------------------

    def track(
        self, instance: Instance, uid: str | None = None, written: dict[str, Any] | None = None
    ) -> None:
        """Start writing an instance (its object is created on the first write if needed)."""
        if instance.name in self._records:
            return
        record = _Record(instance, uid)

        async def patch(body: dict[str, Any]) -> bool:
            return await self._write(record, body)

        record.writer = StatusWriter(
            lambda: self._snapshot(record),
            patch,
            self._interval,
            written,
            relaxed_interval=self._routine_interval,
        )
        self._records[instance.name] = record
        record.writer.start()
        if uid is None:
            # The object is created now (kubectl get gsi shows it); its first status (Pending)
            # is routine: it is written with the agreement's record, which follows soon.
            self._start_creating(record)
            record.writer.changed(routine=True)
        else:
            record.writer.changed()

    def _start_creating(self, record: _Record) -> None:
        task = asyncio.create_task(
            self._create(record), name=f"create-{self.namespace}/{record.instance.name}"
        )
        # A failure is retried by the first status write; it is not lost unretrieved.
        task.add_done_callback(lambda done: done.cancelled() or done.exception())
        record.creating = task

    async def _ensure_created(self, record: _Record) -> None:
        if record.uid is not None:
            return
        if record.creating is None or record.creating.done():
            self._start_creating(record)
        assert record.creating is not None
        await asyncio.shield(record.creating)

    def changed(self, name: str, routine: bool = False) -> None:
        """An instance changed: written promptly, or (routine) within the routine interval."""
        record = self._records.get(name)
        if record is not None:
            record.writer.changed(routine)

    async def flush(self, name: str) -> None:
        """Return once every change to that instance made before this call is written."""
        record = self._records.get(name)
        if record is not None:
            await record.writer.flush()

    async def flush_all(self, urgent_only: bool = False) -> None:
        """Every instance's changes written (routine ones too, unless urgent_only)."""
        await asyncio.gather(*(r.writer.flush(urgent_only) for r in list(self._records.values())))

    def failing(self) -> tuple[float, str]:
        """(seconds, error) of the instance writer failing longest, (0, '') when none."""
        worst = max(
            (r.writer for r in self._records.values()),
            key=lambda w: w.failing_for(),
            default=None,
        )
        if worst is None or worst.failing_for() == 0:
            return 0.0, ""
        return worst.failing_for(), worst.last_error

    def _snapshot(self, record: _Record) -> dict[str, Any]:
        body: dict[str, Any] = self._redact(record.instance.status_body())
        return body

    def _object(self, instance: Instance) -> dict[str, Any]:
        owner = self._owner_uid()
        return {
            "apiVersion": constants.API_VERSION,
            "kind": constants.INSTANCE_KIND,
            "metadata": {
                "name": instance.name,
                "namespace": self.namespace,
                "labels": {
                    constants.SERVICE_LABEL: self.service,
                    constants.REVISION_LABEL: instance.revision,
                },
                "finalizers": [constants.INSTANCE_FINALIZER],
                "ownerReferences": [
                    {
                        "apiVersion": constants.API_VERSION,
                        "kind": constants.KIND,
                        "name": self.service,
                        "uid": owner,
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": GolemServiceInstanceSpec(
                service=self.service, revision=instance.revision
            ).model_dump(by_alias=True, mode="json"),
        }

    async def _write(self, record: _Record, patch: dict[str, Any]) -> bool:
        """Write an instance's status (creating its object first); False once not to write."""
        if self.gone:
            return False
        name = record.instance.name
        if record.uid is None:
            if record.removed and record.creating is None:
                return False  # never created: nothing to record or remove
            await self._ensure_created(record)
            patch = self._snapshot(record)  # a new object: its whole status
        assert record.uid is not None
        written = await self.kube.patch_instance_status(self.namespace, name, patch, record.uid)
        if written or record.removed:
            return written
        # Gone without the operator's finalizer (stripped by hand): what it recorded is still
        # held on Golem, so it is recorded again under the same name.
        log.warning(
            "instance object %s/%s vanished while its instance is tracked; recreating it",
            self.namespace,
            name,
        )
        record.uid = None
        record.created.clear()
        record.creating = None
        await self._ensure_created(record)
        assert record.uid is not None
        return await self.kube.patch_instance_status(
            self.namespace, name, self._snapshot(record), record.uid
        )

    async def _create(self, record: _Record) -> None:
        try:
            created = await self.kube.create_instance(self.namespace, self._object(record.instance))
        except ApiException as error:
            if error.status != 409:
                raise
            # Created by an earlier attempt whose answer was lost: adopt it if it is ours.
            found = await self.kube.get_instance(self.namespace, record.instance.name)
            if found is None:
                raise
            owners = {ref.get("uid") for ref in found["metadata"].get("ownerReferences") or []}
            if self._owner_uid() not in owners:
                raise
            created = found
        record.uid = created["metadata"]["uid"]
        record.created.set()
        crashpoint("instance-created")

    # --- removing -----------------------------------------------------------------------------

    async def remove(self, name: str) -> None:
        """Stop writing an instance and delete its object (dropping the finalizer)."""
        record = self._records.pop(name, None)
        if record is None:
            return
        # Its last state is written first (a watcher sees it Terminated before it goes).
        record.removed = True
        await record.writer.close()
        if record.uid is None and record.creating is not None:
            with contextlib.suppress(Exception):
                await record.creating  # an object being created is removed once it exists
        if record.uid is None:
            return
        backoff = 0.5
        while True:
            try:
                await self.kube.remove_instance(self.namespace, name, record.uid)
                return
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.info("removing instance object %s failed (retrying): %s", name, error)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    def remove_soon(self, name: str) -> None:
        """Remove an instance object in the background (retried until done)."""
        task = asyncio.create_task(self.remove(name), name=f"remove-{self.namespace}/{name}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def remove_all(self) -> None:
        """Every instance object goes (the service is settled, or force-deleted)."""
        await asyncio.gather(*(self.remove(name) for name in list(self._records)))
        for task in list(self._background):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def close(self) -> None:
        """Write what is pending and stop (objects stay: a restart adopts them)."""
        for record in list(self._records.values()):
            if self.gone:
                record.writer.gone = True
            await record.writer.close()
        for task in list(self._background):
            task.cancel()
        self._records.clear()

    # --- Events -------------------------------------------------------------------------------

    def event_soon(self, name: str, reason: str, message: str, warning: bool = False) -> None:
        """An Event about an instance object (kubectl describe gsi), once the object exists."""
        record = self._records.get(name)
        if record is None:
            return
        task = asyncio.create_task(self._event(record, reason, message, warning))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _event(self, record: _Record, reason: str, message: str, warning: bool) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(record.created.wait(), EVENT_WAIT)
        if record.uid is None:
            return
        ref = {
            "kind": constants.INSTANCE_KIND,
            "namespace": self.namespace,
            "name": record.instance.name,
            "uid": record.uid,
        }
        await self.kube.event(ref, reason, message, warning)


async def abandon(kube: Kube, namespace: str, service: str, owner_uid: str) -> None:
    """Drop the finalizer of every instance object of a force-deleted service (nothing is
    settled on Golem), so that garbage collection removes them."""
    for body in await kube.list_instances(namespace, service):
        meta = body["metadata"]
        owners = {ref.get("uid") for ref in meta.get("ownerReferences") or []}
        if owner_uid in owners:
            await kube.remove_instance(namespace, meta["name"], meta["uid"])


def _order(body: dict[str, Any]) -> tuple[int, str]:
    """Instances in creation order (their names end in the service's sequence number)."""
    name = str(body["metadata"]["name"])
    return (sequence(name), name)
