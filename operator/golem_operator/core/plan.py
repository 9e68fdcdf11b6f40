"""Reconcile decisions: desired replicas and instance records in, actions out. Pure.

Called by the service worker on every reconcile pass. Level-triggered: the plan depends only
on the spec, the recorded instances and the clock, so a rerun after a crash plans the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from golem_operator.api.status import Instance
from golem_operator.api.status import InstanceState as S
from golem_operator.core.rollout import REVISION_UPDATED, Strategy, available

#: Stop order on scale-down: least far along first.
_STOP_RANK = {S.PENDING: 0, S.STARTING: 1, S.RUNNING: 2}


@dataclass(frozen=True)
class AddInstance:
    """Create a Pending instance (replaces names the instance it will supersede)."""

    replaces: str | None = None


@dataclass(frozen=True)
class StopInstance:
    name: str
    reason: str  # CamelCase: ScaleDown, Deleted, AgreementExpired, Superseded


@dataclass(frozen=True)
class PruneInstance:
    """Forget a Terminated instance record and remove its object: settled, or deleted by
    the user and its invoice not come within the wait (`retire`: hand the agreement to the
    payment processor, which judges a late invoice without the instance)."""

    name: str
    retire: bool = False


@dataclass(frozen=True)
class WaitForBudget:
    """`count` more instances are wanted than the budget allows now (no action; reported)."""

    count: int


Action = AddInstance | StopInstance | PruneInstance | WaitForBudget

#: The stop reason of an instance whose object the user deleted (kubectl delete gsi).
INSTANCE_DELETED = "InstanceDeleted"


@dataclass(frozen=True)
class Budget:
    """Money known to the planner, in GLM."""

    total: Decimal
    spent: Decimal
    #: The most that agreements open now can still cost beyond what was accepted.
    committed: Decimal
    #: The most one more instance could cost (from the price caps or the offers seen).
    next_instance: Decimal

    def allows_another(self) -> bool:
        return self.spent + self.committed + self.next_instance <= self.total


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


#: Stop reasons the planner gives; only these release a final instance's replica slot.
_RELEASING = frozenset({"ScaleDown", "Deleted", "Superseded", "InstanceDeleted", REVISION_UPDATED})


def _holds_replica(instance: Instance) -> bool:
    if instance.final:
        # Failed for good (policy): it keeps its slot, also while its stop script runs after
        # RunFailed, until the planner itself stops it.
        return instance.stopping_reason not in _RELEASING
    return instance.state in _STOP_RANK and not instance.stopping_reason


def counted(instances: list[Instance]) -> list[Instance]:
    """Instances that count: active and not asked to stop, and final (failed, not to be
    replaced) ones until the planner releases them. As a Deployment counts its Pods, a
    surge (a renewal's successor, a rollout's new instance) counts as well: an old instance
    counts until it is stopped, which is once its successor is available."""
    return [i for i in instances if _holds_replica(i)]


def choose_to_stop(
    instances: list[Instance], count: int, revision: str | None = None
) -> list[Instance]:
    """Which instances a scale-down stops: failed ones that hold a replica, then Pending, then
    Starting, then Running; within a state those of an older revision first, newest first."""

    def key(instance: Instance) -> tuple[int, int, float, int]:
        created = _time(instance.started_at or instance.created_at)
        rank = _STOP_RANK.get(instance.state, -1)  # failed (final) ones first
        current = int(revision is not None and instance.revision == revision)
        # Newest first within a state: negate the timestamp (seconds; within one second the
        # later name of the service's sequence is the newer).
        return (rank, current, -(created.timestamp() if created else 0.0), -sequence(instance.name))

    return sorted(instances, key=key)[: max(count, 0)]


def sequence(name: str) -> int:
    """An instance's number in its service's sequence (its name ends in it), 0 if none."""
    tail = name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def expiry_margin(duration: timedelta, renew_before: timedelta | None = None) -> timedelta:
    """How long before an agreement ends its replacement is started: spec.renewBefore when
    given (admission keeps it below agreementDuration), else a fifth of the duration within
    [10s, 5m]."""
    if renew_before is not None:
        return min(renew_before, duration)
    return min(max(duration * 0.2, timedelta(seconds=10)), timedelta(minutes=5))


def _expires_soon(instance: Instance, now: datetime, margin: timedelta) -> bool:
    expires = _time(instance.agreement_expires_at)
    return instance.state is S.RUNNING and expires is not None and expires - now <= margin


def _expiry_key(instance: Instance) -> float:
    expires = _time(instance.agreement_expires_at)
    return expires.timestamp() if expires else float("inf")


@dataclass(frozen=True)
class Classes:
    """The instances that hold a replica, by what a rollout does with them."""

    #: Of the update revision, not about to end: what the service converges to.
    fresh: list[Instance]
    #: To be replaced, new first: Starting or Running of an older revision, and Running ones
    #: of the update revision whose agreement ends within the renewal margin.
    old: list[Instance]
    #: Of an older revision and holding nothing that serves (Pending, failed): stopped at once.
    idle_stale: list[Instance]


def classify(
    holding: list[Instance], revision: str | None, now: datetime, margin: timedelta
) -> Classes:
    fresh: list[Instance] = []
    old: list[Instance] = []
    idle: list[Instance] = []
    for instance in holding:
        stale = revision is not None and instance.revision != revision
        if stale and instance.state in (S.STARTING, S.RUNNING) and not instance.final:
            old.append(instance)
        elif stale:
            idle.append(instance)
        elif _expires_soon(instance, now, margin):
            old.append(instance)
        else:
            fresh.append(instance)
    return Classes(fresh, old, idle)


def plan(
    *,
    replicas: int,
    instances: list[Instance],
    now: datetime,
    agreement_duration: timedelta,
    budget: Budget,
    renew_before: timedelta | None = None,
    deleting: bool = False,
    keep_terminated: int = 20,
    invoice_wait: timedelta = timedelta(minutes=5),
    revision: str | None = None,
    strategy: Strategy | None = None,
) -> list[Action]:
    """The actions that bring the instances towards the spec.

    revision: the update revision (None: every instance is taken as of it). strategy: maxSurge,
    maxUnavailable, minReadySeconds, Recreate and paused as numbers (default: surge 1,
    unavailable 0, as renewals did before strategies existed).
    """
    if deleting:
        return [
            StopInstance(i.name, "Deleted")
            for i in instances
            if i.state in _STOP_RANK and i.stopping_reason != "Deleted"
        ]
    strategy = strategy or Strategy()
    margin = expiry_margin(agreement_duration, renew_before)
    holding = counted(instances)
    classes = classify(holding, revision, now, margin)
    stops: list[StopInstance] = []

    def stop(chosen: list[Instance], reason: str) -> None:
        stops.extend(StopInstance(i.name, reason) for i in chosen)

    fresh, old = list(classes.fresh), list(classes.old)
    replacing = not strategy.paused

    def stale(instance: Instance) -> bool:
        return revision is not None and instance.revision != revision

    # Of an older revision but serving nothing (no agreement yet, or failed for good): nothing
    # is lost by stopping them now; left alone, a Pending one would start the new spec.
    if replacing:
        stop(classes.idle_stale, REVISION_UPDATED)
        idle: list[Instance] = []
    else:
        idle = list(classes.idle_stale)
    # Paused: instances of older revisions stay as they are; renewals go on.
    kept = [] if replacing else [i for i in old if stale(i)] + idle
    renewing = [i for i in old if i not in kept]

    # Scale-down: above replicas of the update revision, or (old ones included) above what
    # the rollout may hold. Older revisions and the least far along go first.
    excess_fresh = choose_to_stop(fresh, len(fresh) - replicas)
    stop(excess_fresh, "ScaleDown")
    fresh = [i for i in fresh if i not in excess_fresh]
    others = [*old, *idle]
    # A rollout (or a pause in one) may hold maxSurge more; the least far along go first.
    ceiling = replicas + (strategy.max_surge if others else 0)
    excess = choose_to_stop([*fresh, *others], len(fresh) + len(others) - ceiling, revision)
    stop(excess, "ScaleDown")
    fresh = [i for i in fresh if i not in excess]
    old = [i for i in old if i not in excess]
    idle = [i for i in idle if i not in excess]
    kept = [i for i in kept if i not in excess]
    renewing = [i for i in renewing if i not in excess]
    total = len(fresh) + len(old) + len(idle)

    # Recreate: every instance of an older revision is stopped at once, and none of the new
    # one starts while one of an older revision is still about (its stop script running).
    if strategy.recreate and replacing:
        stale_old = [i for i in renewing if stale(i)]
        stop(stale_old, REVISION_UPDATED)
        renewing = [i for i in renewing if i not in stale_old]
        old = [i for i in old if i not in stale_old]
        total -= len(stale_old)
    lingering = strategy.recreate and any(
        stale(i) and i.state in (S.STARTING, S.RUNNING, S.STOPPING) for i in instances
    )

    # Additions: up to replicas (less those of older revisions a pause keeps) of the update
    # revision, within maxSurge above replicas.
    wanted = 0
    if not (lingering and replacing):
        target = replicas - len(kept)
        wanted = max(min(target - len(fresh), replicas + strategy.max_surge - total), 0)
    affordable = 0
    for _ in range(wanted):
        if not budget.allows_another():
            break
        affordable += 1
        budget = Budget(
            budget.total,
            budget.spent,
            budget.committed + budget.next_instance,
            budget.next_instance,
        )
    # A renewal names the instance it takes over from (its Event and reason say so).
    due = sorted((i for i in renewing if not stale(i)), key=_expiry_key)
    taken = {i.replaces for i in fresh if i.replaces}
    successors = [i.name for i in due if i.name not in taken]
    additions: list[Action] = [
        AddInstance(replaces=successors[n] if n < len(successors) else None)
        for n in range(affordable)
    ]
    if affordable < wanted:
        additions.append(WaitForBudget(wanted - affordable))

    # Stopping the old (a Deployment's reconcileOldReplicaSets): the unavailable ones first,
    # as far as replicas - maxUnavailable stay possible; then available ones while that many
    # stay available.
    if renewing:
        min_available = replicas - strategy.max_unavailable
        ready = [i for i in [*fresh, *old] if available(i, now, strategy.min_ready)]
        new_unavailable = len(fresh) + affordable - len([i for i in ready if i in fresh])
        room = total + affordable - min_available - new_unavailable
        if room > 0:
            unhealthy = choose_to_stop([i for i in renewing if i not in ready], room, revision)
            for instance in unhealthy:
                stop([instance], _why(instance, revision))
            can = len(ready) - min_available
            serving = sorted((i for i in renewing if i in ready), key=_expiry_key)
            for instance in serving[: max(can, 0)]:
                stop([instance], _why(instance, revision))

    actions: list[Action] = [*additions, *stops]

    # A final instance holds its replica slot: forgetting it would replace it. (Once released
    # by this plan it no longer counts, and is pruned on a later pass.)
    holding_names = {i.name for i in holding}
    # An instance whose object the user deleted goes as soon as it is settled, or once its
    # invoice did not come within the wait; other settled ones are kept as history.
    deleted = [
        i for i in instances if i.state is S.TERMINATED and i.stopping_reason == INSTANCE_DELETED
    ]
    for gone in deleted:
        if gone.settled:
            actions.append(PruneInstance(gone.name))
        elif _waited(gone, now, invoice_wait):
            actions.append(PruneInstance(gone.name, retire=True))
    settled = [
        i
        for i in instances
        if i.state is S.TERMINATED
        and i.settled
        and i.name not in holding_names
        and i.stopping_reason != INSTANCE_DELETED
    ]
    for gone in settled[: max(len(settled) - keep_terminated, 0)]:
        actions.append(PruneInstance(gone.name))
    return actions


def _why(instance: Instance, revision: str | None) -> str:
    """An old instance's stop reason: replaced by a newer revision, or renewed."""
    return (
        REVISION_UPDATED if revision is not None and instance.revision != revision else "Superseded"
    )


def _waited(instance: Instance, now: datetime, wait: timedelta) -> bool:
    ended = _time(instance.terminated_at or instance.last_transition_time)
    return ended is not None and now - ended >= wait


def budget_blocked(replicas: int, instances: list[Instance], actions: list[Action]) -> bool:
    """Whether the plan adds fewer instances than wanted (missing replicas, a renewal or a
    rollout's surge) because of the budget."""
    return any(isinstance(a, WaitForBudget) for a in actions)
