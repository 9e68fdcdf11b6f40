"""Status transactions: small pure functions that edit a GolemServiceStatus.

Every instance state change goes through ``transition`` (so the state machine is enforced in one
place); conditions, phase and counts are derived by ``summarize``. The status writer applies
these to its copy of the status and patches the result.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from golem_operator.api.spec import GolemServiceSpec
from golem_operator.api.status import (
    AVOIDED_MAX,
    DOWNLOADS_MAX_ITEMS,
    DOWNLOADS_TOTAL_MAX,
    MESSAGE_MAX,
    RETIRED_NETWORKS_MAX,
    Condition,
    ConditionType,
    Download,
    GolemServiceStatus,
    ImageStatus,
    Instance,
    InstanceCounts,
    NetworkStatus,
    Phase,
    RunResult,
)
from golem_operator.api.status import InstanceState as S
from golem_operator.core import network as vpn
from golem_operator.core import plan as planning
from golem_operator.core import rollout
from golem_operator.core.images import ResolvedImage
from golem_operator.core.states import Event, next_state, restart_allowed

MESSAGE_CAP = MESSAGE_MAX
#: How long a replaced instance's failure still explains a Degraded service.
FAILURE_MEMORY = timedelta(minutes=10)


def iso(now: datetime) -> str:
    return now.isoformat(timespec="seconds")


def find(status: GolemServiceStatus, name: str) -> Instance:
    for instance in status.instances:
        if instance.name == name:
            return instance
    raise KeyError(f"no instance {name}")


def add_instance(
    status: GolemServiceStatus,
    service: str,
    now: datetime,
    replaces: str | None = None,
    revision: str = "",
) -> Instance:
    status.instance_counter += 1
    instance = Instance(
        name=f"{service}-{status.instance_counter}",
        revision=revision,
        state=S.PENDING,
        created_at=iso(now),
        last_transition_time=iso(now),
        reason="Created" if replaces is None else "Renewal",
        message="looking for a provider",
        replaces=replaces,
    )
    status.instances.append(instance)
    return instance


def transition(
    instance: Instance,
    event: Event,
    spec: GolemServiceSpec,
    now: datetime,
    message: str = "",
) -> tuple[S, S]:
    """Move an instance by event; returns (old, new). Clears what the new state invalidates."""
    old = instance.state
    new = next_state(
        old,
        event,
        respawn_unstarted=spec.respawn_unstarted_instances,
        restart_policy=spec.restart_policy,
    )
    instance.state = new
    instance.reason = event.value
    instance.message = message[:MESSAGE_CAP]
    instance.last_transition_time = iso(now)
    if new is S.RUNNING:
        instance.started_at = iso(now)
        instance.consecutive_failures = 0
    if new is S.PENDING and old is not S.PENDING:
        # A respawn or restart: a new agreement on another provider will be needed.
        instance.restarts += 1
        instance.stopping_reason = ""
        instance.consecutive_failures = 0
    if new is S.TERMINATED and old is not S.TERMINATED:
        mark_terminated(instance, now)
    return old, new


def respawned(
    status: GolemServiceStatus,
    instance: Instance,
    service: str,
    now: datetime,
    message: str,
    revision: str,
) -> Instance | None:
    """After a failure event moved an instance: its successor, if it gets one.

    A failed instance that held an agreement ends (Terminated, its record kept until its
    invoice is settled: money is tracked per agreement) and a successor takes its replica
    slot and restart count. One that never held an agreement is simply Pending again. One the
    policy does not replace stays Terminated, final: it keeps its replica slot.
    """
    if instance.state is S.TERMINATED:
        instance.final = True
        return None
    if instance.state is not S.PENDING or not instance.agreement_id:
        return None
    mark_terminated(instance, now)
    successor = add_instance(status, service, now, revision=revision)
    successor.restarts = instance.restarts
    instance.restarts -= 1
    instance.message = f"{message}; replaced by {successor.name}"[:MESSAGE_CAP]
    return successor


def run_failed(instance: Instance, spec: GolemServiceSpec) -> None:
    """The run script failed failureThreshold times: the instance stops (its stop script
    still runs); the restart policy decides whether it is replaced or stays, final."""
    instance.stopping_reason = "RunFailed"
    instance.final = not restart_allowed(spec.restart_policy, failed=True)


def request_stop(instance: Instance, reason: str) -> bool:
    """Ask an instance to stop for `reason`; False if it was asked so already."""
    if instance.stopping_reason == reason:
        return False
    instance.stopping_reason = reason
    return True


def record_payment(
    status: GolemServiceStatus, instance: Instance, kind: str, amount: Decimal, accepted: bool
) -> bool:
    """A debit note or invoice of an instance's agreement was decided: what was accepted is
    added (a document states the running total of its agreement, so only the increase
    counts), and an invoice settles the agreement. False if it was recorded already."""
    if kind == "invoice" and instance.settled:
        return False
    if accepted:
        spent = Decimal(instance.spent)
        increment = max(amount - spent, Decimal(0))
        instance.spent = str(max(amount, spent))
        status.spent = str(Decimal(status.spent) + increment)
    if kind == "invoice":
        instance.settled = True
    return True


def mark_terminated(instance: Instance, now: datetime) -> None:
    """An instance reached Terminated: record when (once), the end of its agreement's life.

    Its invoice is judged against this time, also by an operator restarted later; an instance
    that never held an agreement has nothing to settle.
    """
    instance.state = S.TERMINATED
    if instance.terminated_at is None:
        instance.terminated_at = iso(now)
    if instance.agreement_id is None:
        instance.settled = True


def agreement_end(instance: Instance, now: datetime) -> datetime:
    """Until when an instance's agreement may be billed: its termination, or now while alive.

    Statuses written before `terminatedAt` existed fall back to the last transition (the
    moment it became Terminated).
    """
    if instance.state is not S.TERMINATED:
        return now
    recorded = instance.terminated_at or instance.last_transition_time
    return datetime.fromisoformat(recorded) if recorded else now


def record_image(
    status: GolemServiceStatus, image: ResolvedImage, source: dict[str, str], now: datetime
) -> bool:
    """Record the image the demand names; True if it changed (a new resolution)."""
    current = status.image
    if current is not None and (current.hash, current.url, current.source) == (
        image.hash,
        image.url,
        source,
    ):
        return False
    status.image = ImageStatus(
        hash=image.hash, url=image.url, resolved_at=iso(now), source=dict(source)
    )
    return True


def record_run(instance: Instance, result: RunResult, downloads: list[Download]) -> None:
    """A script's result and fetched files, kept within the instance's status bounds."""
    instance.last_run = result
    if downloads:
        instance.downloads = bound_downloads(downloads)


def bound_downloads(downloads: list[Download]) -> list[Download]:
    """Downloads within the status bounds: at most DOWNLOADS_MAX_ITEMS, the first ones whole
    and later ones cut to what is left of DOWNLOADS_TOTAL_MAX (marked truncated)."""
    kept: list[Download] = []
    room = DOWNLOADS_TOTAL_MAX
    for download in downloads[:DOWNLOADS_MAX_ITEMS]:
        content = download.content
        cut = len(content) > room
        kept.append(
            download.model_copy(
                update={"content": content[:room], "truncated": download.truncated or cut}
            )
        )
        room -= min(len(content), room)
    return kept


def avoid(status: GolemServiceStatus, provider_id: str, until: datetime, now: datetime) -> None:
    """Remember not to use a provider until `until`; expired entries go, and at most
    AVOIDED_MAX stay (those avoided longest)."""
    avoided = {p: u for p, u in status.avoided_providers.items() if datetime.fromisoformat(u) > now}
    avoided[provider_id] = iso(until)
    if len(avoided) > AVOIDED_MAX:
        latest = sorted(avoided.items(), key=lambda item: item[1])[-AVOIDED_MAX:]
        avoided = dict(latest)
    status.avoided_providers = avoided


def release_golem_objects(instance: Instance) -> None:
    """Forget the agreement and activity of an instance whose agreement was settled."""
    instance.agreement_id = None
    instance.activity_id = None
    instance.provider = None
    instance.approved_at = None
    instance.terminated_at = None
    instance.agreement_expires_at = None
    instance.price = None
    instance.spent = "0"


def count_states(instances: list[Instance]) -> InstanceCounts:
    counts = InstanceCounts()
    for instance in instances:
        field = instance.state.value.lower()
        setattr(counts, field, getattr(counts, field) + 1)
    return counts


def set_condition(
    status: GolemServiceStatus,
    kind: ConditionType,
    value: bool,
    reason: str,
    message: str,
    generation: int,
    now: datetime,
) -> None:
    """Set a KEP-1623 condition; lastTransitionTime moves only when the status flips."""
    text = "True" if value else "False"
    for condition in status.conditions:
        if condition.type == kind.value:
            if condition.status != text:
                condition.last_transition_time = iso(now)
            condition.status = text
            condition.reason = reason
            condition.message = message[:MESSAGE_CAP]
            condition.observed_generation = generation
            return
    status.conditions.append(
        Condition(
            type=kind.value,
            status=text,
            reason=reason,
            message=message[:MESSAGE_CAP],
            observed_generation=generation,
            last_transition_time=iso(now),
        )
    )


def summarize(
    status: GolemServiceStatus,
    *,
    service: str,
    replicas: int,
    generation: int,
    now: datetime,
    deleting: bool = False,
    problem: tuple[str, str] | None = None,
    progress: tuple[str, str] | None = None,
    target: rollout.Target | None = None,
) -> None:
    """Derive counts, selector, phase and the three conditions from the instances.

    problem: (reason, message) of a service-level trouble (budget, daemon unreachable,
    invalid spec) that makes the service Degraded regardless of its instances.
    progress: (reason, message) of what the service is waiting for (e.g. a deletion waiting
    for invoices); it keeps Progressing True with that reason.
    target: the update revision and the rollout settings of the spec: with it, the status
    says how the rollout goes (updatedReplicas, revisions, Progressing's reason).
    """
    live = planning.counted(status.instances)
    running = [i for i in live if i.state is S.RUNNING]
    min_ready = target.min_ready if target else timedelta(0)
    status.replicas = len(live)
    status.ready_replicas = len(running)
    status.available_replicas = sum(1 for i in live if rollout.available(i, now, min_ready))
    rolled: tuple[bool, str, str] | None = None
    if target is not None:
        state = rollout.rollout_state(
            live, status.instances, target.revision, replicas, now, target.min_ready
        )
        status.updated_replicas = state.updated
        status.update_revision = target.revision
        status.current_revision = rollout.current_revision(status, state, target.revision, live)
        rollout.record_revision(
            status, target.revision, generation, target.image, target.history_limit, now
        )
        if not deleting:
            rolled = rollout.progressing(
                status,
                state,
                target.revision,
                paused=target.paused,
                deadline=target.deadline,
                now=now,
                why_stalled=rollout.why_stalled(status.instances, target.revision),
            )
    status.instance_counts = count_states(status.instances)
    status.selector = f"services.golem.network/service={service}"
    status.observed_generation = generation

    # A final instance failed for good, whatever its last event (a RunFailed one ends Stopped);
    # other failures only explain missing replicas while they are recent.
    def recent(instance: Instance) -> bool:
        when = instance.last_transition_time
        return when is None or now - datetime.fromisoformat(when) < FAILURE_MEMORY

    failed = [
        i
        for i in status.instances
        if i.state is S.TERMINATED
        and (
            (i.final and i.stopping_reason in ("", "RunFailed"))
            or (i.reason in ("StartFailed", "RunFailed", "ActivityLost") and recent(i))
        )
    ]
    ready = len(running) >= replicas
    progressing = not ready or any(
        i.state in (S.PENDING, S.STARTING, S.STOPPING) for i in status.instances
    )
    if problem is not None:
        degraded_reason, degraded_message = problem
    elif rolled is not None and rolled[1] == rollout.PROGRESS_DEADLINE_EXCEEDED:
        degraded_reason, degraded_message = rolled[1], rolled[2]
    elif failed and len(running) < replicas:
        last = failed[-1]
        degraded_reason, degraded_message = (
            "InstanceFailed",
            f"instance {last.name} ended Terminated: {last.message}",
        )
    else:
        degraded_reason, degraded_message = "", ""

    set_condition(
        status,
        ConditionType.READY,
        ready and not deleting,
        "AllReplicasRunning" if ready else "ReplicasNotRunning",
        f"{len(running)} of {replicas} instances Running",
        generation,
        now,
    )
    if progress is not None:
        progressing = True
        progress_reason, progress_message = progress
    elif rolled is not None and (rolled[1] != rollout.NEW_REVISION_AVAILABLE or not progressing):
        # A rollout under way, held or stalled; or done and nothing moving (as a
        # Deployment says NewReplicaSetAvailable, but False: nothing is in progress).
        progressing = rolled[1] == rollout.REVISION_UPDATING
        progress_reason, progress_message = rolled[1], rolled[2]
    elif progressing:
        progress_reason = "Deleting" if deleting else "Reconciling"
        progress_message = "instances are moving through their lifecycle"
    else:
        progress_reason, progress_message = "Stable", "nothing to do"
    set_condition(
        status,
        ConditionType.PROGRESSING,
        progressing,
        progress_reason,
        progress_message,
        generation,
        now,
    )
    set_condition(
        status,
        ConditionType.DEGRADED,
        bool(degraded_reason),
        degraded_reason or "AsExpected",
        degraded_message,
        generation,
        now,
    )
    if deleting:
        status.phase = Phase.DELETING
    elif degraded_reason:
        status.phase = Phase.DEGRADED
    elif replicas == 0 and not live:
        status.phase = Phase.STOPPED
    elif ready:
        status.phase = Phase.RUNNING
    elif running or any(i.state is S.STARTING for i in live):
        status.phase = Phase.PROGRESSING
    else:
        status.phase = Phase.PENDING


# --- the service's VPN (spec.network; decisions in core.network) ------------------------------


def take_ordinal(instance: Instance, instances: list[Instance], limit: int) -> bool:
    """Give an instance the lowest free ordinal (once); False when none is free."""
    if instance.ordinal is not None:
        return True
    ordinal = vpn.free_ordinal(instances, limit)
    if ordinal is None:
        return False
    instance.ordinal = ordinal
    return True


def join_network(
    instance: Instance, instances: list[Instance], service: str, network: NetworkStatus
) -> None:
    """An instance with an ordinal joins the network: its host name and address (recorded
    before its provider node is added there). A lower ordinal freed since it took its own
    (an instance that was stopping has ended) is taken instead: names stay low and dense."""
    assert instance.ordinal is not None
    lower = vpn.free_ordinal(instances, instance.ordinal)
    if lower is not None:
        instance.ordinal = lower
    instance.network_id = network.id
    instance.hostname = vpn.hostname(service, instance.ordinal)
    instance.vpn_address = vpn.address(network.cidr, instance.ordinal)


def record_network(status: GolemServiceStatus, network_id: str, cidr: str) -> None:
    """The network created for spec.network."""
    status.network = NetworkStatus(id=network_id, cidr=cidr)


def retire_network(status: GolemServiceStatus) -> None:
    """spec.network no longer wants the current network: it is deleted once no live instance
    is in it."""
    if status.network is None:
        return
    if all(n.id != status.network.id for n in status.retired_networks):
        # Bounded: only a cidr changed again and again while instances stay would pass it.
        status.retired_networks = [*status.retired_networks, status.network][-RETIRED_NETWORKS_MAX:]
    status.network = None


def forget_network(status: GolemServiceStatus, network_id: str) -> None:
    """A network was deleted (or found gone)."""
    if status.network is not None and status.network.id == network_id:
        status.network = None
    status.retired_networks = [n for n in status.retired_networks if n.id != network_id]


def created_message(names: list[str], shown: int = 10) -> str:
    """The message of the Event that reports the instances created in one pass."""
    listed = ", ".join(names[:shown])
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    noun = "instance" if len(names) == 1 else "instances"
    return f"created {len(names)} {noun}: {listed}{more}"
