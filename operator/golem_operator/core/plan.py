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
    """Forget a Terminated, settled instance record (keeps status small)."""

    name: str


Action = AddInstance | StopInstance | PruneInstance


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
_RELEASING = frozenset({"ScaleDown", "Deleted", "Superseded"})


def _holds_replica(instance: Instance) -> bool:
    if instance.final:
        # Failed for good (policy): it keeps its slot, also while its stop script runs after
        # RunFailed, until the planner itself stops it.
        return instance.stopping_reason not in _RELEASING
    return instance.state in _STOP_RANK and not instance.stopping_reason


def counted(instances: list[Instance]) -> list[Instance]:
    """Instances that count towards replicas: active, not asked to stop, not superseded; and
    final (failed, not to be replaced) ones until a scale-down releases them."""
    superseded = {i.replaces for i in instances if i.replaces and i.state is not S.TERMINATED}
    return [i for i in instances if _holds_replica(i) and i.name not in superseded]


def choose_to_stop(instances: list[Instance], count: int) -> list[Instance]:
    """Which instances a scale-down stops: failed ones that hold a replica, then Pending, then
    Starting, then the newest Running."""

    def key(instance: Instance) -> tuple[int, float]:
        created = _time(instance.started_at or instance.created_at)
        rank = _STOP_RANK.get(instance.state, -1)  # failed (final) ones first
        # Newest first within a state: negate the timestamp.
        return (rank, -(created.timestamp() if created else 0.0))

    return sorted(instances, key=key)[: max(count, 0)]


def expiry_margin(duration: timedelta, renew_before: timedelta | None = None) -> timedelta:
    """How long before an agreement ends its replacement is started: spec.renewBefore when
    given (admission keeps it below agreementDuration), else a fifth of the duration within
    [10s, 5m]."""
    if renew_before is not None:
        return min(renew_before, duration)
    return min(max(duration * 0.2, timedelta(seconds=10)), timedelta(minutes=5))


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
) -> list[Action]:
    """The actions that bring the instances towards the spec."""
    actions: list[Action] = []
    if deleting:
        return [
            StopInstance(i.name, "Deleted")
            for i in instances
            if i.state in _STOP_RANK and i.stopping_reason != "Deleted"
        ]

    live = counted(instances)
    by_name = {i.name: i for i in instances}
    missing = replicas - len(live)
    replaced = {i.replaces: i for i in instances if i.replaces and i.state is not S.TERMINATED}
    # Scale-down is chosen first: an instance about to be stopped needs no renewal.
    scale_down = [StopInstance(i.name, "ScaleDown") for i in choose_to_stop(live, -missing)]
    # A renewal successor taken by scale-down takes its predecessor along: otherwise the old
    # instance would count again once its successor is gone, to be renewed or stopped later.
    for stop in list(scale_down):
        successor = by_name[stop.name]
        old = by_name.get(successor.replaces or "")
        if old is not None and replaced.get(old.name) is successor and _holds_replica(old):
            scale_down.append(StopInstance(old.name, "ScaleDown"))
    leaving = {stop.name for stop in scale_down}

    # Expiration: a Running instance near its agreement's end gets a replacement; once the
    # replacement runs, the old one is stopped. The replica count holds throughout.
    margin = expiry_margin(agreement_duration, renew_before)
    renewals: list[str] = []
    for instance in live:
        expires = _time(instance.agreement_expires_at)
        if (
            instance.state is S.RUNNING
            and expires is not None
            and expires - now <= margin
            and instance.name not in replaced
            and instance.name not in leaving
        ):
            renewals.append(instance.name)
    # A renewal is a new agreement: it needs the budget as much as a scale-up (renewals first,
    # since they keep replicas that already serve).
    additions = [AddInstance(replaces=name) for name in renewals]
    additions += [AddInstance() for _ in range(max(missing, 0))]
    affordable = 0
    for _ in additions:
        if not budget.allows_another():
            break
        affordable += 1
        budget = Budget(
            budget.total,
            budget.spent,
            budget.committed + budget.next_instance,
            budget.next_instance,
        )
    actions += additions[:affordable]

    for old_name, successor in replaced.items():
        old = by_name.get(old_name)
        if old is None or old.state not in _STOP_RANK or old.stopping_reason:
            continue
        if old.name in leaving:
            continue  # already stopped by the scale-down
        if successor.state is S.RUNNING:
            actions.append(StopInstance(old.name, "Superseded"))
        # A successor that ended Terminated frees the old one: it is renewed again.

    actions += scale_down

    # A final instance holds its replica slot: forgetting it would replace it. (Once released
    # by a scale-down it no longer counts, and is pruned on a later pass.)
    holding = {i.name for i in live}
    settled = [
        i for i in instances if i.state is S.TERMINATED and i.settled and i.name not in holding
    ]
    for old in settled[: max(len(settled) - keep_terminated, 0)]:
        actions.append(PruneInstance(old.name))
    return actions


def budget_blocked(replicas: int, instances: list[Instance], actions: list[Action]) -> bool:
    """Whether the plan adds fewer instances than missing because of the budget."""
    missing = replicas - len(counted(instances))
    added = sum(1 for a in actions if isinstance(a, AddInstance) and a.replaces is None)
    return missing > 0 and added < missing
