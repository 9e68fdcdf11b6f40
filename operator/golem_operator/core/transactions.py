"""Status transactions: small pure functions that edit a GolemServiceStatus.

Every instance state change goes through ``transition`` (so the state machine is enforced in one
place); conditions, phase and counts are derived by ``summarize``. The status writer applies
these to its copy of the status and patches the result.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from golem_operator.api.spec import GolemServiceSpec
from golem_operator.api.status import (
    Condition,
    ConditionType,
    GolemServiceStatus,
    ImageStatus,
    Instance,
    Phase,
)
from golem_operator.api.status import InstanceState as S
from golem_operator.core import plan as planning
from golem_operator.core.images import ResolvedImage
from golem_operator.core.states import Event, next_state

MESSAGE_CAP = 1024
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
    status: GolemServiceStatus, service: str, now: datetime, replaces: str | None = None
) -> Instance:
    status.instance_counter += 1
    instance = Instance(
        name=f"{service}-{status.instance_counter}",
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
) -> None:
    """Derive counts, selector, phase and the three conditions from the instances.

    problem: (reason, message) of a service-level trouble (budget, daemon unreachable,
    invalid spec) that makes the service Degraded regardless of its instances.
    progress: (reason, message) of what the service is waiting for (e.g. a deletion waiting
    for invoices); it keeps Progressing True with that reason.
    """
    live = planning.counted(status.instances)
    running = [i for i in live if i.state is S.RUNNING]
    status.replicas = len(live)
    status.ready_replicas = len(running)
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
