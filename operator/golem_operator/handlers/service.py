"""One GolemService's worker: reconcile (create/scale), adoption, and the instance drivers.

Created by the engine when kopf reports the object (create, update, resume). The worker holds
the service's summary status and every instance in memory — the operator's memory of what
exists on Golem — applies transactions from ``core``, and lets the status writers record them:
the summary on the GolemService, each instance on its own GolemServiceInstance object. Each
instance has a driver task that runs the phase modules (starting, running, stopping) for its
state. Deletion is the same reconcile with every instance asked to stop, then the demand and
allocation are released and the instance objects removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr, ValidationError

from golem_operator.api.spec import GolemServiceSpec, parse_duration
from golem_operator.api.status import GolemServiceStatus, Instance, NetworkStatus
from golem_operator.api.status import InstanceState as S
from golem_operator.core import balancing, rollout
from golem_operator.core import network as vpn_rules
from golem_operator.core import plan as planning
from golem_operator.core import transactions as tx
from golem_operator.core.images import (
    ImageQuery,
    ImageResolutionError,
    ResolvedImage,
    image_source,
    plan_image,
)
from golem_operator.core.market import (
    AVOID_FOR,
    agreement_seconds,
    avoided_providers,
    build_demand,
    demand_changed,
    next_instance_cost,
)
from golem_operator.core.payments import (
    AllocationSize,
    LinearPrice,
    allocation_mark,
    allocation_size,
    check_payable,
    find_marked,
    life_seconds,
    most_cost,
)
from golem_operator.core.redaction import Redactor
from golem_operator.core.revision import revision
from golem_operator.core.states import Event
from golem_operator.crashpoints import crashpoint
from golem_operator.golem import (
    GolemError,
    GolemGone,
    GolemNotFound,
    GolemUnauthorized,
    GolemUnavailable,
)
from golem_operator.golem.net import NetApi
from golem_operator.handlers import manifests, networking, running, starting, stopping, uploads
from golem_operator.handlers.daemons import Daemon
from golem_operator.handlers.exposure import Exposure
from golem_operator.handlers.instances import InstanceObjects
from golem_operator.handlers.kube import Kube
from golem_operator.handlers.proxy import ProxySettings
from golem_operator.handlers.status import StatusWriter
from golem_operator.observability import logs, metrics
from golem_operator.requestor.market import ServiceMarket
from golem_operator.requestor.payments import Decision, Document, Retired

if TYPE_CHECKING:
    from golem_operator.handlers.engine import Engine

RECONCILE_PERIOD = 2.0
#: How long a pass waits for the instance objects to be written before it adds or replaces.
PLAN_FLUSH_WAIT = 5.0
#: Coalescing interval of one instance object's status writes (each instance is its own
#: object: its writes need little batching, and every flush waits for it).
INSTANCE_WRITE_INTERVAL = 0.1
#: Status writes failing this long make the service Degraded (StatusWriteFailing).
WRITE_FAILURE_GRACE = 10.0
#: Longest wait between two registry queries for an image that failed to resolve.
IMAGE_RETRY_MAX = 60.0


def utcnow() -> datetime:
    return datetime.now(UTC)


class ServiceWorker:
    def __init__(self, engine: Engine, body: dict[str, Any]) -> None:
        meta = body["metadata"]
        self.engine = engine
        self.namespace: str = meta["namespace"]
        self.name: str = meta["name"]
        self.uid: str = meta.get("uid", "")
        self.log = logs.for_service(__name__, self.namespace, self.name)
        self.generation = 0
        self.spec: GolemServiceSpec | None = None
        self.spec_error: str | None = None
        self.status = GolemServiceStatus.model_validate(body.get("status") or {})
        #: Instances recorded in status.instances by earlier versions, until each has its
        #: object (then the summary write clears the list).
        self._legacy: list[dict[str, Any]] | None = (body.get("status") or {}).get("instances")
        self._legacy_instances = list(self.status.instances)
        self.status.instances = []
        self.loaded = False
        self._summary_stale = True
        self._index: dict[str, Instance] = {}
        self._indexed: list[Instance] | None = None
        self._indexed_length = 0
        self.deleting = False
        #: The object is gone (no finalizer ran): settling without writing status.
        self.orphaned = False
        self.deleted = asyncio.Event()
        self.daemon: Daemon | None = None
        self.market: ServiceMarket | None = None
        self.problem: tuple[str, str] | None = None
        self.drivers: dict[str, asyncio.Task[None]] = {}
        self.stop_signals: dict[str, asyncio.Event] = {}
        self.wake = asyncio.Event()
        #: Uploaded Secret content to keep out of status, Events and logs.
        self.redactor = Redactor()
        self._secrets_generation = -1
        self.writer = StatusWriter(
            self._snapshot, self._patch, engine.config.status_interval, body.get("status") or {}
        )
        self.objects = InstanceObjects(
            engine.kube,
            self.namespace,
            self.name,
            lambda: self.uid,
            min(engine.config.status_interval, INSTANCE_WRITE_INTERVAL),
            self.redactor.tree,
            routine_interval=engine.config.run_result_interval,
        )
        #: Instances whose run-script result this process has written once (later results
        #: with the same outcome are routine).
        self.reported_runs: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        #: What a deletion is waiting for (invoices), shown as the Progressing condition.
        self.awaiting: tuple[str, str] | None = None
        self._all_stopped_at: datetime | None = None
        #: Pending instances that found offers but none within the budget.
        self.budget_blocked: set[str] = set()
        #: Instances whose provider ended the agreement, with the reason (read by running).
        self.lost: dict[str, str] = {}
        #: Starting instances that may own an activity status does not know (its creation was
        #: interrupted by a crash or an outage): their agreement is never reused.
        self.activity_unknown: set[str] = set()
        #: Why no instance can start (an unreadable upload source), checked before renting.
        self.start_blocked: str | None = None
        #: Budget held by instances negotiating right now (name -> most it could cost).
        self.reserved: dict[str, Decimal] = {}
        self._demand_spec: GolemServiceSpec | None = None
        #: The last failed registry query: (query, next try, backoff seconds, message).
        self._image_retry: tuple[ImageQuery, datetime, float, str] | None = None
        #: The network of spec.network once recorded in status (and found on the daemon
        #: after a restart): only then do instances join it.
        self.network_ready: NetworkStatus | None = None
        #: Instances whose provider node is leaving the VPN.
        self.vpn_leaving: set[str] = set()
        self._vpn_locks: dict[tuple[str, str], asyncio.Lock] = {}
        config = engine.config
        #: spec.ports: the proxy's listeners, the Kubernetes Service and its EndpointSlice.
        self.exposure = Exposure(
            self,
            engine.kube,
            ProxySettings(config.pod_ip, config.proxy_connect_timeout, config.proxy_idle_timeout),
            self.log,
            exposed=self.status.proxy is not None,
        )
        self.update(body)

    # --- lifecycle of the worker itself ---------------------------------------------------

    def start(self) -> None:
        self.writer.start()
        self._task = asyncio.create_task(self._main(), name=f"service-{self.namespace}/{self.name}")

    def orphan(self, why: str) -> None:
        """The object is gone (`why`): end and settle its Golem objects, write nothing more.

        What the worker holds is known only to it now (the status it wrote is gone with the
        object), so it is settled as a deletion would — stop scripts, terminations, invoices,
        the allocation and demand released — rather than left open and untracked.
        """
        held = [i.agreement_id for i in self.status.instances if i.agreement_id and not i.settled]
        self.log.warning(
            "GolemService uid %s %s: stopping its instances and settling its agreements %s "
            "as a deletion would",
            self.uid,
            why,
            held,
        )
        self.orphaned = True
        self.writer.gone = True
        self.deleting = True
        self.wake.set()

    async def close(self) -> None:
        """Stop driving (operator shutdown or pause): Golem objects stay, recorded in status.

        A closed worker can be started again (`start`): it re-adopts what its status holds.
        """
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for task in list(self.drivers.values()):
            task.cancel()
        for task in list(self.drivers.values()):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.drivers.clear()
        if self.market is not None:
            await self.market.close(unsubscribe=False)
            self.market = None
        await self.exposure.close()
        await self.objects.close()
        await self.writer.close()

    def update(self, body: dict[str, Any]) -> None:
        """A new version of the object (spec change, deletion mark)."""
        self.generation = body["metadata"].get("generation", 0)
        self.uid = body["metadata"].get("uid", self.uid)
        try:
            self.spec = GolemServiceSpec.model_validate(body.get("spec") or {})
            self.spec_error = None
        except ValidationError as error:
            # What the schema could not catch: keep serving with the last good spec.
            first = error.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            message = str(first["msg"]).removeprefix("Value error, ")
            self.spec_error = f"spec.{where}: {message}"
        if body["metadata"].get("deletionTimestamp"):
            self.deleting = True
        self.wake.set()

    @property
    def kube(self) -> Kube:
        return self.engine.kube

    @property
    def ref(self) -> dict[str, str]:
        return {"namespace": self.namespace, "name": self.name, "uid": self.uid}

    def _snapshot(self) -> dict[str, Any]:
        # The one way status leaves the operator: uploaded Secret content is replaced here.
        # Instances are written to their own objects; a list written by an earlier version
        # stays as it was until every instance in it has its object.
        if self._summary_stale:
            self._derive_summary()
        body = self.status.model_dump(
            by_alias=True, mode="json", exclude_none=True, exclude={"instances"}
        )
        if self._legacy is not None:
            body["instances"] = self._legacy
        redacted: dict[str, Any] = self.redactor.tree(body)
        return redacted

    def touch(self, instance: Instance, routine: bool = False) -> None:
        """An instance changed: its object and the summary are to be written. A routine
        change (a run result like the last one written) waits for the routine interval."""
        self.objects.changed(instance.name, routine)
        if not routine:
            self.writer.changed()

    async def persist(self, instance: Instance) -> None:
        """Return once an instance's changes so far are recorded in its object."""
        self.objects.changed(instance.name)
        await self.objects.flush(instance.name)

    def _add(self, instance: Instance) -> None:
        """A new instance: its object is created, its driver started."""
        self.objects.track(instance)
        self._ensure_driver(instance)
        self.writer.changed()

    async def _load_instances(self) -> None:
        """Adopt the instance objects (after a restart), and the instances an earlier version
        recorded in status.instances: each gets its object before that list is cleared."""
        loaded = await self.objects.load()
        names = {i.name for i in loaded.instances}
        legacy = [i for i in self._legacy_instances if i.name not in names]
        self.status.instances = [*loaded.instances, *legacy]
        counter = max([planning.sequence(i.name) for i in self.status.instances], default=0)
        self.status.instance_counter = max(self.status.instance_counter, counter)
        for instance in legacy:
            self.objects.track(instance)
        if legacy:
            await self.objects.flush_all()
            self.log.info(
                "adopted %d instances from status.instances into instance objects", len(legacy)
            )
            self.post_event(
                "InstancesAdopted",
                f"{len(legacy)} instances recorded in status.instances now have their "
                "GolemServiceInstance objects",
            )
        self._legacy = None
        self._legacy_instances = []
        for name in loaded.deleting:
            self.instance_deleted(name)
        self.loaded = True
        self._summarize()

    def instance_vanished(self, name: str, uid: str) -> None:
        """An instance object left the API server without the operator's finalizer: the
        instance is stopped as its deletion asked, and recorded again until settled."""
        if self.objects.vanished(name, uid):
            self.log.warning(
                "instance %s: its object was removed without its finalizer; stopping the "
                "instance and recording it again until its agreement is settled",
                name,
            )
            self.instance_deleted(name)

    def instance_deleted(self, name: str) -> None:
        """Its object is being deleted (kubectl delete gsi): stop it; the service replaces it
        and the object goes once the instance is settled."""
        instance = self.instance(name)
        if instance is None:
            return
        if instance.stopping_reason != planning.INSTANCE_DELETED and not self.deleting:
            self.log.info("instance %s: its object is being deleted; stopping it", name)
            self.request_stop(name, planning.INSTANCE_DELETED)
            self.wake.set()

    def post_event(self, reason: str, message: str, warning: bool = False) -> None:
        """A Kubernetes Event about this service, without uploaded Secret content."""
        self.engine.kube.event_soon(self.ref, reason, self.redactor.text(message), warning)

    async def _patch(self, body: dict[str, Any]) -> bool:
        metrics.STATUS_PATCHES.labels(self.namespace, self.name).inc()
        return await self.engine.kube.patch_status(self.namespace, self.name, body, self.uid)

    # --- the reconcile loop ---------------------------------------------------------------

    async def _main(self) -> None:
        backoff = 1.0
        adopted = False
        while True:
            try:
                if not self.loaded:
                    await self._load_instances()
                if self.deleting and not adopted and not self._holds_golem_objects():
                    # Nothing was ever rented or reserved (e.g. its daemon was never
                    # reachable): nothing to settle, so the deletion must not wait for a
                    # connection.
                    await self.exposure.sync([], self.uid, withdraw=True, write=not self.orphaned)
                    await self.objects.remove_all()
                    self.deleted.set()
                    return
                if not adopted:
                    await self._connect()
                    await self._adopt()
                    adopted = True
                await self.reconcile()
                backoff = 1.0
                if self.deleting and await self._finish_deletion():
                    self.deleted.set()
                    return
            except asyncio.CancelledError:
                raise
            except GolemUnauthorized as error:
                self._set_problem(
                    "GolemUnauthorized", f"the Golem daemon refused the app key: {error.message}"
                )
                backoff = min(backoff * 2, 60.0)
            except GolemUnavailable as error:
                self._set_problem(
                    "GolemUnreachable", f"cannot reach the Golem daemon: {error.message}"
                )
                backoff = min(backoff * 2, 30.0)
            except GolemError as error:
                self._set_problem("GolemError", str(error))
                backoff = min(backoff * 2, 30.0)
            except ConfigProblem as error:
                self._set_problem(error.reason, str(error))
                backoff = min(backoff * 2, 60.0)
            except Exception as error:  # one service's bug must not stop the others
                if not self.loaded:
                    self._set_problem(
                        "InstancesUnreadable",
                        f"cannot read the GolemServiceInstance objects: {_safe(error)}",
                    )
                    backoff = min(backoff * 2, 30.0)
                    self.wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.wake.wait(), backoff)
                    continue
                self.log.exception("reconcile failed")
                metrics.RECONCILE_ERRORS.labels(
                    self.namespace, self.name, type(error).__name__
                ).inc()
                self._set_problem("ReconcileError", f"{type(error).__name__}: {error}")
                backoff = min(backoff * 2, 60.0)
            else:
                backoff = RECONCILE_PERIOD
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), backoff)

    def _holds_golem_objects(self) -> bool:
        status = self.status
        return bool(
            status.allocation_id
            or status.allocation_pending
            or status.demand_id
            or status.network
            or status.retired_networks
            or any(i.agreement_id or i.activity_id for i in status.instances)
        )

    def _set_problem(self, reason: str, message: str) -> None:
        message = self.redactor.text(message)
        if self.problem != (reason, message):
            self.log.warning("%s: %s", reason, message)
            self.post_event(reason, message, warning=True)
        self.problem = (reason, message)
        metrics.RECONCILE_ERRORS.labels(self.namespace, self.name, reason).inc()
        self._summarize()

    async def _connect(self) -> None:
        if self.spec is None:
            raise ConfigProblem("InvalidSpec", self.spec_error or "spec missing")
        url, key = await self._daemon_credentials()
        self.daemon = await self.engine.daemons.get(url, key)

    async def _daemon_credentials(self) -> tuple[str, SecretStr]:
        assert self.spec is not None
        ref = self.spec.golem_ref
        if ref is None:
            if self.engine.config.golem_app_key is None:
                raise ConfigProblem(
                    "GolemNotConfigured",
                    "no golemRef and the operator has no default app key (GOLEM_APPKEY)",
                )
            return self.engine.config.golem_url, self.engine.config.golem_app_key
        try:
            url = await self.engine.kube.read_secret_key(
                self.namespace, ref.secret_name, ref.url_key
            )
            key = await self.engine.kube.read_secret_key(
                self.namespace, ref.secret_name, ref.app_key_key
            )
        except Exception as error:
            raise ConfigProblem(
                "GolemRefInvalid", f"spec.golemRef: {type(error).__name__}: {_safe(error)}"
            ) from None
        return url.decode().strip(), SecretStr(key.decode().strip())

    async def _adopt(self) -> None:
        """Re-adopt what status records (after a restart), then make sure money and market exist."""
        assert self.daemon is not None and self.spec is not None
        client = self.daemon.client
        for instance in self.status.instances:
            # A Pending instance's agreement is registered once re-adopted (its approval time
            # is known then): until then its debit notes wait instead of being refused.
            if instance.agreement_id and instance.state is not S.PENDING:
                self.daemon.register(instance.agreement_id, self)
            if instance.state is S.STARTING and not instance.activity_id:
                self.activity_unknown.add(instance.name)
        if self.status.allocation_id:
            try:
                await client.payment.get_allocation(self.status.allocation_id)
            except (GolemNotFound, GolemGone):
                self.status.allocation_id = None
                self.status.allocation_budget = None
        if self.status.allocation_id is None and self.status.allocation_pending:
            await self._recover_allocation()
        await self._ensure_allocation()
        # Events of an old subscription were consumed by the previous run: start afresh. A
        # crash right after subscribing leaves a demand that status never recorded: withdraw
        # every demand published under this service's node name.
        stale = {self.status.demand_id} if self.status.demand_id else set()
        # A gone object's worker leaves alone the demands of a new object of the same name.
        if not self.orphaned:
            with contextlib.suppress(GolemError):
                stale |= {
                    d.demand_id
                    for d in await client.market.list_demands()
                    if d.properties.get("golem.node.id.name") == self.node_name
                }
        for demand_id in stale:
            with contextlib.suppress(GolemNotFound, GolemGone):
                await client.market.unsubscribe_demand(demand_id)
        self.status.demand_id = None
        await self._adopt_network()
        # reconcile publishes the demand once the image is resolved.
        for instance in self.status.instances:
            self._ensure_driver(instance)

    async def _adopt_network(self) -> None:
        """The network status records is relied on once the daemon still has it; one that is
        gone (a daemon reset) is forgotten, and reconcile creates another."""
        assert self.daemon is not None
        network = self.status.network
        if network is None:
            return
        try:
            await self.daemon.client.net.get_network(network.id)
        except networking.NETWORK_GONE:
            self.network_lost(network.id)
            return
        self.network_ready = network

    def network_lost(self, network_id: str) -> None:
        """The daemon no longer has a recorded network: forget it (another is created)."""
        if self.status.network is not None and self.status.network.id == network_id:
            message = f"network {network_id} ({self.status.network.cidr}) is gone from the daemon"
            self.log.warning("%s; creating another", message)
            self.post_event("NetworkLost", message, warning=True)
        tx.forget_network(self.status, network_id)
        if self.network_ready is not None and self.network_ready.id == network_id:
            self.network_ready = None
        self.writer.changed()
        self.wake.set()

    def vpn_lock(self, network_id: str, provider_id: str) -> asyncio.Lock:
        return self._vpn_locks.setdefault((network_id, provider_id), asyncio.Lock())

    async def _ensure_network(self) -> None:
        """Bring the recorded networks to spec.network (none while deleting): retire the
        current one when it is no longer wanted, delete retired ones no live instance is in,
        and create the wanted one, recorded (and written) before any instance joins it."""
        assert self.daemon is not None and self.spec is not None
        wanted = None if self.deleting or self.spec.network is None else self.spec.network.cidr
        decided = vpn_rules.plan_network(
            wanted, self.status.network, self.status.retired_networks, self.status.instances
        )
        net = self.daemon.client.net
        if decided.retire:
            self.network_ready = None
            tx.retire_network(self.status)
            self.writer.changed()
            # Written before another is created: its id must not be lost to the new record.
            await self.writer.flush()
        for network_id in decided.delete:
            with contextlib.suppress(*networking.NETWORK_GONE):
                await net.delete_network(network_id)
            tx.forget_network(self.status, network_id)
            self.writer.changed()
            self.log.info("network %s deleted", network_id)
            self.post_event("NetworkDeleted", f"network {network_id} deleted")
        if decided.create is not None:
            cidr = vpn_rules.network_of(decided.create)
            created = await net.create_network(str(cidr.network_address), str(cidr.netmask))
            tx.record_network(self.status, created.id, decided.create)
            self.writer.changed()
            await self.writer.flush()
            self.network_ready = self.status.network
            self.log.info("network %s created on %s", created.id, decided.create)
            self.post_event("NetworkCreated", f"network {created.id} on {decided.create}")

    async def _recover_allocation(self) -> None:
        """An allocation was being created when the operator stopped: find it by its mark,
        adopt one and release any other (status never recorded them)."""
        assert self.daemon is not None and self.spec is not None
        assert self.status.allocation_pending is not None
        client = self.daemon.client
        mark = datetime.fromisoformat(self.status.allocation_pending)
        listed = await client.payment.list_allocations(expiring_after=mark - timedelta(seconds=1))
        found = find_marked(
            [
                (a.allocation_id, a.timeout, _platform_name(a.payment_platform), a.address)
                for a in listed
            ],
            mark,
            platform=self.spec.market.payment.platform,
            address=self.daemon.address,
        )
        if found and not self.deleting:
            adopted, extra = found[0], found[1:]
            self.status.allocation_id = adopted
            self.status.allocation_budget = None  # its size is checked against the budget next
            self.log.info("adopted allocation %s created before a restart", adopted)
            self.engine.kube.event_soon(
                self.ref, "AllocationAdopted", f"allocation {adopted} created before a restart"
            )
        else:
            extra = found
        for allocation_id in extra:
            with contextlib.suppress(GolemNotFound, GolemGone):
                await client.payment.release_allocation(allocation_id)
            self.log.info("released allocation %s created before a restart", allocation_id)
        self.status.allocation_pending = None
        self.writer.changed()
        await self.writer.flush()

    async def _ensure_allocation(self) -> None:
        """One allocation, sized to the budget: created when missing (its mark on record
        first), amended when spec.budget changed since it was last sized."""
        assert self.daemon is not None and self.spec is not None
        if self.deleting:
            return
        client = self.daemon.client
        if self.status.allocation_id is None:
            mark = allocation_mark(utcnow(), secrets.randbelow(1000))
            self.status.allocation_pending = mark.isoformat(timespec="milliseconds")
            self.writer.changed()
            await self.writer.flush()
            size = self._allocation_size(Decimal(0))
            allocation = await client.payment.create_allocation(
                size.total,
                self.spec.market.payment.platform,
                self.daemon.address,
                timeout=mark,
            )
            crashpoint("allocation-created")
            self.status.allocation_id = allocation.allocation_id
            self.status.allocation_budget = self.spec.budget
            self.status.allocation_pending = None
            self.writer.changed()
            await self.writer.flush()
            return
        if self.status.allocation_budget == self.spec.budget:
            return
        budget = self.spec.budget
        allocation = await client.payment.get_allocation(self.status.allocation_id)
        size = self._allocation_size(allocation.spent_amount)
        if size.total != allocation.total_amount:
            await client.payment.amend_allocation(self.status.allocation_id, size.total)
            self.log.info(
                "allocation %s amended: %s -> %s GLM (budget %s GLM)",
                self.status.allocation_id,
                allocation.total_amount,
                size.total,
                budget,
            )
            self.engine.kube.event_soon(
                self.ref,
                "AllocationAmended",
                f"allocation {allocation.total_amount.normalize()} -> "
                f"{size.total.normalize()} GLM for budget {budget} GLM",
            )
        self.status.allocation_budget = budget
        self.writer.changed()

    def _allocation_size(self, allocation_spent: Decimal) -> AllocationSize:
        budget = self.budget()
        return allocation_size(
            budget=budget.total,
            spent=budget.spent,
            committed=budget.committed,
            allocation_spent=allocation_spent,
        )

    async def _resolve_image(self) -> ResolvedImage:
        """spec.payload.image as hash and URL: the recorded one while the spec names it still."""
        assert self.spec is not None
        image = self.spec.payload.image
        planned = plan_image(image, self.status.image, self.engine.config.image_registry)
        if isinstance(planned, ImageQuery):
            now = utcnow()
            retry = self._image_retry
            if retry is not None and retry[0] == planned and now < retry[1]:
                raise ConfigProblem("ImageResolutionFailed", retry[3])
            try:
                resolved = await self.engine.images.resolve(planned)
            except ImageResolutionError as error:
                # Asked again with backoff (the reconcile loop passes every few seconds).
                delay = 1.0
                if self._image_retry is not None and self._image_retry[0] == planned:
                    delay = min(self._image_retry[2] * 2, IMAGE_RETRY_MAX)
                self._image_retry = (planned, now + timedelta(seconds=delay), delay, str(error))
                raise ConfigProblem("ImageResolutionFailed", str(error)) from None
            self._image_retry = None
            what = planned.describe()
        else:
            resolved = planned
            what = "payload.image"
        if tx.record_image(self.status, resolved, image_source(image), utcnow()):
            self.engine.kube.event_soon(
                self.ref,
                "ImageResolved",
                f"{what}: sha3 {resolved.hash} at {resolved.url}",
            )
            self.writer.changed()
            # Recorded before any demand names it: renewals and restarts deploy these bits.
            await self.writer.flush()
        return resolved

    async def _subscribe(self) -> None:
        assert self.daemon is not None and self.spec is not None
        image = await self._resolve_image()
        manifest = None
        if self.spec.payload.manifest is not None:
            try:
                manifest = await manifests.resolve(self, self.spec.payload.manifest)
            except manifests.ManifestSourceError as error:
                raise ConfigProblem("ManifestInvalid", str(error)) from None
        decorations = None
        if self.status.allocation_id:
            with contextlib.suppress(GolemError):
                deco = await self.daemon.client.payment.get_demand_decorations(
                    [self.status.allocation_id]
                )
                decorations = (deco.properties_dict(), list(deco.constraints))
        demand = build_demand(
            self.spec,
            image=image,
            now=utcnow(),
            node_name=self.node_name,
            requestor_address=self.daemon.address,
            decorations=decorations,
            manifest=manifest,
        )
        subscription = await self.daemon.client.market.subscribe_demand(
            demand.properties, demand.constraints
        )
        crashpoint("demand-subscribed")
        self.status.demand_id = subscription
        self.writer.changed()
        self.market = ServiceMarket(
            self.daemon.client,
            subscription,
            (demand.properties, demand.constraints),
            lambda: self.spec_or_fail,
        )
        self.market.start()
        self._demand_spec = self.spec

    async def _refresh_demand_if_starved(self) -> None:
        """Pending instances found no usable offer for a while: publish the demand again,
        so that every matching provider offers afresh (core.market.demand_refresh_due)."""
        assert self.market is not None
        pending = sum(1 for i in self.status.instances if i.state is S.PENDING)
        if not self.market.refresh_due(pending):
            return

        async def record(demand_id: str) -> None:
            self.status.demand_id = demand_id
            self.writer.changed()
            await self.writer.flush()

        old = self.market.subscription_id
        new = await self.market.refresh(record)
        message = f"no usable offer for {pending} Pending instance(s): demand {old} -> {new}"
        self.log.info("%s", message)
        self.post_event("DemandRefreshed", message)

    @property
    def node_name(self) -> str:
        """The requestor node name of this service's demands (golem.node.id.name)."""
        return f"golem-operator/{self.namespace}/{self.name}"

    @property
    def spec_or_fail(self) -> GolemServiceSpec:
        assert self.spec is not None
        return self.spec

    async def reconcile(self) -> None:
        """One level-triggered pass: plan against the recorded instances and act."""
        if self.spec is None:
            raise ConfigProblem("InvalidSpec", self.spec_error or "spec missing")
        metrics.RECONCILES.labels(self.namespace, self.name).inc()
        spec = self.spec
        now = utcnow()
        if self._secrets_generation != self.generation:
            await uploads.remember_secrets(self)
            await manifests.remember_secrets(self, spec.payload.manifest)
            self._secrets_generation = self.generation
        if (
            not self.deleting
            and self.market is not None
            and demand_changed(self._demand_spec, spec)
        ):
            # What the demand says changed: publish a new one; running instances stay.
            old = self.market
            self.market = None
            await old.close(unsubscribe=True)
            self.status.demand_id = None
            self.writer.changed()
        if not self.deleting and self.market is not None:
            await self._refresh_demand_if_starved()
        if self.market is not None and not self.market.alive and not self.deleting:
            # The demand expired or vanished (e.g. a daemon restart): publish a new one.
            self.log.info("demand %s is gone; subscribing again", self.market.subscription_id)
            old = self.market
            self.market = None
            await old.close(unsubscribe=False)
        image_problem: tuple[str, str] | None = None
        if self.market is None and not self.deleting:
            # No demand (hence no renting) until the image is resolved and the manifest read;
            # the rest of the pass (scaling, stopping) goes on meanwhile.
            try:
                await self._subscribe()
            except ConfigProblem as error:
                image_problem = (error.reason, self.redactor.text(str(error)))
        if not self.deleting:
            await self._ensure_allocation()
        await self._ensure_network()
        current = revision(spec)
        actions = planning.plan(
            replicas=spec.replicas,
            instances=self.status.instances,
            now=now,
            agreement_duration=parse_duration(spec.agreement_duration),
            budget=self.budget(),
            renew_before=parse_duration(spec.renew_before) if spec.renew_before else None,
            deleting=self.deleting,
            invoice_wait=timedelta(seconds=self.engine.config.invoice_wait),
            revision=current,
            strategy=rollout.Strategy.of(spec),
        )
        if any(_moves_instances(a) for a in actions):
            # What the plan saw is written before what it does: whoever watches the instance
            # objects sees a successor Running before its predecessor stops, and a stopped
            # instance before the one that takes its place (maxSurge, maxUnavailable hold for
            # them too). Bounded: failing writes must not hold up the service.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.objects.flush_all(urgent_only=True), PLAN_FLUSH_WAIT)
        created: list[str] = []
        for action in actions:
            if isinstance(action, planning.AddInstance):
                instance = tx.add_instance(
                    self.status, self.name, now, action.replaces, revision=current
                )
                self._add(instance)
                if action.replaces:
                    self.event(instance, "Renewing", f"renewing {action.replaces}")
                else:
                    created.append(instance.name)
            elif isinstance(action, planning.StopInstance):
                self.request_stop(action.name, action.reason)
            elif isinstance(action, planning.PruneInstance):
                self._prune(action)
        if created:
            # On the service, one per pass, as a ReplicaSet reports the Pods it creates (the
            # instance object's creation is its own record): a burst of a thousand instances
            # is one Event, not a thousand writes.
            self.post_event("Created", tx.created_message(created))
        pending = {i.name for i in self.status.instances if i.state is S.PENDING}
        self.budget_blocked &= pending
        blocked = not self.deleting and (
            planning.budget_blocked(spec.replicas, self.status.instances, actions)
            or bool(self.budget_blocked)
        )
        previous = self.problem
        if blocked:
            self.problem = (
                "BudgetExhausted",
                f"budget {spec.budget} GLM would be exceeded by another instance "
                f"(spent {self.status.spent})",
            )
        elif self.problem is not None and self.problem[0] != "InvalidSpec":
            self.problem = None
        # The daemon's health, whichever task last called it: steady for the whole outage.
        daemon_problem = self.daemon.health.problem(self.daemon.url) if self.daemon else None
        if daemon_problem is not None:
            if previous is None or previous[0] != daemon_problem[0]:
                self.log.warning("%s: %s", *daemon_problem)
                self.engine.kube.event_soon(self.ref, *daemon_problem, warning=True)
            self.problem = daemon_problem
        # A dead payment poll or event watcher (restarting): money is not being settled.
        tasks_problem = self.daemon.tasks_problem() if self.daemon else None
        if tasks_problem is not None and daemon_problem is None:
            if previous is None or previous[0] != tasks_problem[0]:
                self.log.warning("%s: %s", *tasks_problem)
                self.engine.kube.event_soon(self.ref, *tasks_problem, warning=True)
            self.problem = tasks_problem
        shortfall = self._allocation_size(Decimal(0)).shortfall
        if shortfall > 0 and not self.deleting and daemon_problem is None:
            budget = self.budget()
            self.problem = (
                "BudgetBelowCommitted",
                f"spec.budget {spec.budget} GLM is below what was spent ({budget.spent.normalize()}"
                f" GLM) plus what open agreements may still cost "
                f"({budget.committed.normalize()} GLM): short by {shortfall.normalize()} GLM; "
                "the allocation keeps what they may cost, no new instance starts",
            )
        if image_problem is not None:
            if previous != image_problem:
                self.log.warning("%s: %s", *image_problem)
                self.engine.kube.event_soon(self.ref, *image_problem, warning=True)
            self.problem = image_problem
        if self.start_blocked and not self.deleting:
            self.problem = ("UploadSourceInvalid", self.start_blocked)
        too_small = self._network_shortfall()
        if too_small is not None and not self.deleting:
            if previous != too_small:
                self.log.warning("%s: %s", *too_small)
                self.engine.kube.event_soon(self.ref, *too_small, warning=True)
            self.problem = too_small
        proxy, ports_problem = await self.exposure.sync(
            spec.ports, self.uid, withdraw=self.deleting, write=not self.orphaned
        )
        if self.status.proxy != proxy:
            self.status.proxy = proxy
            self.writer.changed()
        if ports_problem is not None and self.problem is None:
            if previous != ports_problem:
                self.log.warning("%s: %s", *ports_problem)
                self.engine.kube.event_soon(self.ref, *ports_problem, warning=True)
            self.problem = ports_problem
        write_problem = self._write_problem()
        if write_problem is not None:
            if previous != write_problem:
                self.log.warning("%s: %s", *write_problem)
            self.problem = write_problem
        if self.spec_error:
            self.problem = ("InvalidSpec", self.spec_error)
        for instance in self.status.instances:
            self._ensure_driver(instance)
        self._summarize()

    def _network_shortfall(self) -> tuple[str, str] | None:
        """spec.network too small for replicas + maxSurge instances at once."""
        spec = self.spec
        if spec is None or spec.network is None:
            return None
        why = vpn_rules.shortfall(
            spec.network.cidr, spec.replicas, rollout.Strategy.of(spec).max_surge
        )
        return ("NetworkTooSmall", why) if why is not None else None

    def _write_problem(self) -> tuple[str, str] | None:
        """Status writes that keep failing: shown as Degraded (where it can still be written)
        instead of holding up the service."""
        seconds, error = self.objects.failing()
        what = "instance objects"
        if self.writer.failing_for() > seconds:
            seconds, error, what = self.writer.failing_for(), self.writer.last_error, "status"
        if seconds < WRITE_FAILURE_GRACE:
            return None
        return (
            "StatusWriteFailing",
            f"writing the {what} has failed for {int(seconds)}s ({error}); retrying",
        )

    def _prune(self, action: planning.PruneInstance) -> None:
        instance = self.instance(action.name)
        if instance is None:
            return
        if action.retire and instance.agreement_id and self.daemon is not None:
            text = (
                f"no invoice for agreement {instance.agreement_id} within "
                f"{timedelta(seconds=self.engine.config.invoice_wait)} after its object was "
                "deleted: not settled; an invoice arriving later is judged without it"
            )
            self.log.warning("%s: %s", instance.name, text)
            self.post_event("InvoiceMissing", f"{instance.name}: {text}", warning=True)
            self._retire(instance, f"no longer holds {instance.name} (its object was deleted)")
        self.status.instances = [i for i in self.status.instances if i.name != action.name]
        self.objects.remove_soon(action.name)
        self.writer.changed()

    def _summarize(self) -> None:
        """The summary is to be derived again: when the status is next written (at most
        once per status interval, not once per instance transition: a pass over every
        instance costs milliseconds at a thousand of them)."""
        self._summary_stale = True
        self.writer.changed()

    def _derive_summary(self) -> None:
        self._summary_stale = False
        replicas = self.spec.replicas if self.spec else 0
        tx.summarize(
            self.status,
            service=self.name,
            replicas=0 if self.deleting else replicas,
            generation=self.generation,
            now=utcnow(),
            deleting=self.deleting,
            problem=self.problem,
            progress=self.awaiting if self.deleting else None,
            target=rollout.Target.of(self.spec, revision(self.spec)) if self.spec else None,
        )
        counts: dict[str, int] = {}
        for instance in self.status.instances:
            counts[instance.state.value] = counts.get(instance.state.value, 0) + 1
        metrics.record_instances(self.namespace, self.name, counts, float(self.status.spent))

    def budget(self) -> planning.Budget:
        assert self.spec is not None
        committed = Decimal(0)
        duration = agreement_seconds(self.spec)
        for instance in self.status.instances:
            if instance.price is not None and not instance.settled:
                most = most_cost(instance.price, duration)
                committed += max(most - Decimal(instance.spent), Decimal(0))
        committed += sum(self.reserved.values(), Decimal(0))
        cheapest = self.market.cheapest_seen if self.market else None
        return planning.Budget(
            total=self.spec.budget_glm,
            spent=Decimal(self.status.spent),
            committed=committed,
            next_instance=next_instance_cost(self.spec, cheapest),
        )

    # --- spec.ports (ProxyHost) -----------------------------------------------------------

    def backends(self) -> list[balancing.Backend]:
        """The instances that take new connections to spec.ports."""
        return balancing.backends(self.status.instances)

    def net_api(self) -> NetApi | None:
        return self.daemon.client.net if self.daemon is not None else None

    # --- instances ------------------------------------------------------------------------

    def instance(self, name: str) -> Instance | None:
        # Indexed while the list stays the same object at the same length: instances are only
        # appended to it, or the list is replaced (see _prune).
        instances = self.status.instances
        if self._indexed is not instances or self._indexed_length != len(instances):
            self._index = {i.name: i for i in instances}
            self._indexed, self._indexed_length = instances, len(instances)
        return self._index.get(name)

    def _ensure_driver(self, instance: Instance) -> None:
        task = self.drivers.get(instance.name)
        if task is not None and not task.done():
            return
        if instance.state is S.TERMINATED:
            return  # payment settles it; nothing to drive
        self.stop_signals.setdefault(instance.name, asyncio.Event())
        if instance.stopping_reason:
            self.stop_signals[instance.name].set()
        self.drivers[instance.name] = asyncio.create_task(
            self._drive(instance.name), name=f"instance-{self.namespace}/{instance.name}"
        )

    def request_stop(self, name: str, reason: str) -> None:
        instance = self.instance(name)
        if instance is None or not tx.request_stop(instance, reason):
            return
        self.stop_signals.setdefault(name, asyncio.Event()).set()
        self.touch(instance)

    def stop_requested(self, name: str) -> bool:
        signal = self.stop_signals.get(name)
        return signal is not None and signal.is_set()

    def take_lost(self, name: str) -> str | None:
        """The provider's termination message for an instance, once; re-arms its signal."""
        message = self.lost.pop(name, None)
        instance = self.instance(name)
        if message is not None and instance is not None and not instance.stopping_reason:
            self.stop_signals[name].clear()
        return message

    async def sleep_or_stop(self, name: str, seconds: float) -> bool:
        """Sleep; True if a stop was requested meanwhile."""
        signal = self.stop_signals.setdefault(name, asyncio.Event())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(signal.wait(), seconds)
        return signal.is_set()

    async def _drive(self, name: str) -> None:
        backoff = 1.0
        while True:
            instance = self.instance(name)
            if instance is None:
                return
            try:
                if instance.state is S.PENDING:
                    await starting.acquire(self, instance)
                elif instance.state is S.STARTING:
                    await starting.start(self, instance)
                elif instance.state is S.RUNNING:
                    await running.run(self, instance)
                elif instance.state is S.STOPPING:
                    await stopping.stop(self, instance)
                else:
                    return
                backoff = 1.0
            except asyncio.CancelledError:
                raise
            except (GolemUnavailable, GolemUnauthorized):
                # Not the instance's fault: reconcile reports the daemon's health (Degraded);
                # the driver retries with backoff, its state untouched.
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
            except Exception as error:
                self.log.exception("instance %s: driver error", name)
                metrics.RECONCILE_ERRORS.labels(
                    self.namespace, self.name, type(error).__name__
                ).inc()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)

    def transition(self, instance: Instance, event: Event, message: str = "") -> None:
        """Apply a state-machine event to an instance, record it, and tell kubectl describe."""
        old, new = tx.transition(instance, event, self.spec_or_fail, utcnow(), message)
        metrics.TRANSITIONS.labels(self.namespace, self.name, event.value).inc()
        text = f"{instance.name}: {old.value} -> {new.value}" + (f": {message}" if message else "")
        text = self.redactor.text(text)
        self.log.info(text)
        warning = event in (Event.START_FAILED, Event.RUN_FAILED, Event.ACTIVITY_LOST)
        self.objects.event_soon(instance.name, event.value, text, warning)
        # Starting goes with the activity's id, which start() records at once (before it runs
        # anything): one write for both rather than two in a row.
        self.objects.changed(instance.name, routine=event is Event.AGREEMENT_SIGNED)
        self._summarize()
        self.wake.set()

    def respawn(self, instance: Instance, event: Event, message: str) -> None:
        """A failed instance that held an agreement ends; a successor takes its replica slot.

        The old record stays (Terminated) until its invoice is settled: money is tracked per
        agreement. Used where the state machine says Pending (respawn or restart).
        """
        if instance.provider is not None and event is not Event.START_FAILED:
            # Replacements go to another provider (fail_start already avoided it).
            self.avoid(instance.provider.id, message)
        self.transition(instance, event, message)
        successor = tx.respawned(
            self.status, instance, self.name, utcnow(), message, revision(self.spec_or_fail)
        )
        if successor is not None:
            self._add(successor)
            self._ensure_driver(instance)
        self.touch(instance)
        self._summarize()

    def avoid(self, provider_id: str, reason: str, period: timedelta = AVOID_FOR) -> None:
        now = utcnow()
        until = now + period
        tx.avoid(self.status, provider_id, until, now)
        self.log.info("avoiding provider %s until %s: %s", provider_id, until, reason)
        self.writer.changed()

    def avoided(self) -> set[str]:
        now = utcnow()
        self.status.avoided_providers = {
            p: u
            for p, u in self.status.avoided_providers.items()
            if datetime.fromisoformat(u) > now
        }
        return avoided_providers(self.status.avoided_providers, now)

    def provider_load(self) -> dict[str, int]:
        load: dict[str, int] = {}
        for instance in self.status.instances:
            if instance.provider and instance.state in (S.STARTING, S.RUNNING, S.PENDING):
                load[instance.provider.id] = load.get(instance.provider.id, 0) + 1
        return load

    def event(self, instance: Instance, reason: str, message: str, warning: bool = False) -> None:
        """An Event about an instance (on its object: kubectl describe gsi NAME)."""
        text = self.redactor.text(f"{instance.name}: {message}")
        self.objects.event_soon(instance.name, reason, text, warning)

    def agreement_terminated(self, agreement_id: str, message: str) -> None:
        instance = self._by_agreement(agreement_id)
        if instance is None or instance.state not in (S.STARTING, S.RUNNING):
            return
        self.lost[instance.name] = message
        self.stop_signals.setdefault(instance.name, asyncio.Event()).set()

    # --- payments (PaymentOwner) ----------------------------------------------------------

    def _by_agreement(self, agreement_id: str) -> Instance | None:
        for instance in self.status.instances:
            if instance.agreement_id == agreement_id:
                return instance
        return None

    def decide(self, document: Document) -> Decision:
        instance = self._by_agreement(document.agreement_id)
        accepted = Decimal(instance.spent) if instance else Decimal(0)
        if instance is None or instance.price is None or instance.approved_at is None:
            return Decision(False, f"unknown agreement {document.agreement_id}", None, accepted)
        # A terminated agreement is billed until its recorded termination (also after a
        # restart), a live one until now.
        end = tx.agreement_end(instance, utcnow())
        elapsed = life_seconds(datetime.fromisoformat(instance.approved_at), end)
        assert self.spec is not None
        verdict = check_payable(
            amount=document.amount,
            price=LinearPrice.from_status(instance.price),
            elapsed_seconds=elapsed,
            accepted_so_far=accepted,
            budget_left=self.spec.budget_glm - Decimal(self.status.spent),
            what=document.kind,
        )
        return Decision(verdict.accept, verdict.reason, self.status.allocation_id, accepted)

    async def paid(self, document: Document, decision: Decision) -> None:
        instance = self._by_agreement(document.agreement_id)
        if instance is None:
            return
        if not tx.record_payment(
            self.status, instance, document.kind, document.amount, decision.accept
        ):
            return  # recorded already (the processor repeats it after a restart)
        if not decision.accept:
            self.event(
                instance,
                f"{document.kind.title().replace(' ', '')}Rejected",
                f"{document.kind} {document.id} for {document.amount} GLM rejected: "
                f"{decision.reason}",
                warning=True,
            )
        self.objects.changed(instance.name)
        if document.kind == "invoice":
            if self.daemon is not None:
                self.daemon.unregister(document.agreement_id)
            self.event(
                instance,
                "InvoiceAccepted" if decision.accept else "InvoiceRejected",
                f"invoice {document.amount} GLM: {decision.reason}",
            )
        self._summarize()
        self.wake.set()

    # --- deletion -------------------------------------------------------------------------

    async def _finish_deletion(self) -> bool:
        """True once every instance stopped and its invoice was decided, or the wait ended.

        The allocation is kept while invoices of terminated agreements may still come (at most
        `invoice_wait` after the last termination, Progressing=AwaitingInvoices meanwhile).
        After that the agreements still unsettled are handed to the payment processor as
        retired: an invoice arriving later is judged without the service and rejected with the
        reason, since no allocation is left. They are never recorded as settled.
        """
        if any(i.state is not S.TERMINATED for i in self.status.instances):
            return False
        assert self.daemon is not None
        now = utcnow()
        if self._all_stopped_at is None:
            self._all_stopped_at = now
        unsettled = [i for i in self.status.instances if not i.settled and i.agreement_id]
        wait = timedelta(seconds=self.engine.config.invoice_wait)
        if unsettled:
            ends = [tx.agreement_end(i, now) for i in unsettled]
            # From the last termination (recorded in status, so a restart does not extend it).
            deadline = min(max(ends), self._all_stopped_at) + wait
            if now < deadline:
                agreements = ", ".join(sorted(str(i.agreement_id)[:12] for i in unsettled))
                awaiting = (
                    "AwaitingInvoices",
                    f"waiting until {tx.iso(deadline)} for the invoices of {len(unsettled)} "
                    f"terminated agreement(s) ({agreements}); the allocation is kept until then",
                )
                if self.awaiting != awaiting:
                    self.log.info("%s: %s", *awaiting)
                    self.engine.kube.event_soon(self.ref, *awaiting)
                    self.awaiting = awaiting
                    self._summarize()
                return False
        self.awaiting = None
        for instance in unsettled:
            text = (
                f"no invoice for agreement {instance.agreement_id} within {wait}: not settled; "
                "an invoice arriving later is rejected (the allocation is released)"
            )
            self.log.warning("%s: %s", instance.name, text)
            self.event(instance, "InvoiceMissing", text, warning=True)
        crashpoint("deletion-releasing")
        # The network goes before the finalizer (no instance is in it any more).
        await self._ensure_network()
        if self.status.network is not None or self.status.retired_networks:
            return False
        if self.market is not None:
            await self.market.close(unsubscribe=True)
            self.market = None
        elif self.status.demand_id:
            with contextlib.suppress(GolemNotFound, GolemGone):
                await self.daemon.client.market.unsubscribe_demand(self.status.demand_id)
        self.status.demand_id = None
        if self.status.allocation_id:
            with contextlib.suppress(GolemNotFound, GolemGone):
                await self.daemon.client.payment.release_allocation(self.status.allocation_id)
            self.status.allocation_id = None
        for instance in unsettled:
            self._retire(instance, "was deleted and its allocation released")
        self._summarize()
        await self.writer.flush()
        # Settled: the instance objects go now (garbage collection would wait for the
        # finalizer each of them carries).
        await self.objects.remove_all()
        return True

    def _retire(self, instance: Instance, why: str) -> None:
        """Hand an unsettled agreement of this deleted service to the payment processor."""
        assert self.daemon is not None and instance.agreement_id is not None
        price = LinearPrice.from_status(instance.price) if instance.price else None
        approved = datetime.fromisoformat(instance.approved_at) if instance.approved_at else None
        self.daemon.unregister(instance.agreement_id)
        self.daemon.payments.retire(
            Retired(
                agreement_id=instance.agreement_id,
                service=f"{self.namespace}/{self.name}",
                price=price,
                approved_at=approved,
                terminated_at=tx.agreement_end(instance, utcnow()),
                allocation_id=self.status.allocation_id,
                reason=f"the service {self.namespace}/{self.name} {why}",
            )
        )


def _moves_instances(action: planning.Action) -> bool:
    """Whether an action adds an instance or stops one for a rollout or a renewal."""
    if isinstance(action, planning.AddInstance):
        return True
    return isinstance(action, planning.StopInstance) and action.reason in (
        rollout.REVISION_UPDATED,
        "Superseded",
    )


def _platform_name(platform: object) -> str | None:
    """An allocation's payment platform as a name (the daemon lists it as a string)."""
    if platform is None or isinstance(platform, str):
        return platform
    driver = getattr(platform, "driver", None)
    network = getattr(platform, "network", None)
    token = getattr(platform, "token", None)
    return "-".join(str(p) for p in (driver, network, token) if p) or None


class ConfigProblem(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _safe(error: BaseException) -> str:
    """An exception text without response bodies (which could carry secret data)."""
    status = getattr(error, "status", None)
    reason = getattr(error, "reason", None)
    if status is not None:
        return f"{status} {reason or ''}".strip()
    return str(error)[:200]
