"""The reconcile plan: scaling, stop order, deletion, agreement renewal, budget and pruning."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from core_builders import T0, at, make_instance
from hypothesis import given, settings
from hypothesis import strategies as st

from golem_operator.api.status import Instance
from golem_operator.api.status import InstanceState as S
from golem_operator.core.plan import (
    Action,
    AddInstance,
    Budget,
    PruneInstance,
    StopInstance,
    budget_blocked,
    choose_to_stop,
    counted,
    expiry_margin,
    plan,
)

HOUR = timedelta(hours=1)
NOW = T0 + HOUR  # instances are created during the hour before
PLENTY = Budget(
    total=Decimal(10**6), spent=Decimal(0), committed=Decimal(0), next_instance=Decimal(1)
)


def at_time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def run_plan(replicas: int, instances: list[Instance], **kwargs: Any) -> list[Action]:
    options: dict[str, Any] = {
        "now": NOW,
        "agreement_duration": HOUR,
        "budget": PLENTY,
        **kwargs,
    }
    return plan(replicas=replicas, instances=instances, **options)


def adds(actions: list[Action]) -> list[AddInstance]:
    return [a for a in actions if isinstance(a, AddInstance)]


def stops(actions: list[Action]) -> list[StopInstance]:
    return [a for a in actions if isinstance(a, StopInstance)]


def running(name: str, started: float = 0, **fields: Any) -> Instance:
    return make_instance(
        name, S.RUNNING, created_at=at(started - 60), started_at=at(started), **fields
    )


def apply(instances: list[Instance], actions: list[Action]) -> list[Instance]:
    """What the engine does with a plan, reduced to the records: the planner's view of it."""
    result = [i.model_copy(deep=True) for i in instances]
    by_name = {i.name: i for i in result}
    for n, action in enumerate(actions):
        if isinstance(action, AddInstance):
            new = make_instance(
                f"added-{n}", S.PENDING, created_at=NOW.isoformat(), replaces=action.replaces
            )
            result.append(new)
            by_name[new.name] = new
        elif isinstance(action, StopInstance):
            by_name[action.name].stopping_reason = action.reason
        else:
            result.remove(by_name.pop(action.name))
    return result


# --- scale up ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("have", "want"), [(0, 1), (0, 3), (1, 3), (2, 7)])
def test_scale_up_adds_exactly_the_missing_number(have: int, want: int) -> None:
    instances = [running(f"r{k}", started=k) for k in range(have)]
    actions = run_plan(want, instances)
    assert actions == [AddInstance()] * (want - have)


def test_nothing_to_do_at_the_desired_count() -> None:
    instances = [running("a"), make_instance("b", S.STARTING), make_instance("c", S.PENDING)]
    assert run_plan(3, instances) == []


def test_stopping_and_terminated_instances_do_not_count() -> None:
    instances = [
        running("a"),
        make_instance("b", S.STOPPING),
        make_instance("c", S.TERMINATED),
    ]
    assert [i.name for i in counted(instances)] == ["a"]
    assert run_plan(3, instances) == [AddInstance(), AddInstance()]


@pytest.mark.parametrize("state", [S.PENDING, S.STARTING, S.RUNNING])
def test_instances_asked_to_stop_do_not_count(state: S) -> None:
    instances = [make_instance("a", state, stopping_reason="ScaleDown"), running("b")]
    assert [i.name for i in counted(instances)] == ["b"]
    assert run_plan(2, instances) == [AddInstance()]


def test_a_renewed_instance_counts_until_it_is_stopped_and_so_does_its_successor() -> None:
    # As a Deployment counts a surge Pod: the counts stay true while a renewal runs (the old
    # instance serves until its successor is available).
    instances = [expiring_in("old", 60), make_instance("new", S.PENDING, replaces="old")]
    assert [i.name for i in counted(instances)] == ["old", "new"]
    assert run_plan(1, instances) == []
    assert run_plan(2, instances) == [AddInstance()]


def test_a_terminated_successor_supersedes_nothing() -> None:
    instances = [running("old"), make_instance("new", S.TERMINATED, replaces="old")]
    assert [i.name for i in counted(instances)] == ["old"]
    assert run_plan(1, instances) == []


# --- scale down -------------------------------------------------------------------------------


def ladder() -> list[Instance]:
    """Two of each active state, listed in a scrambled order."""
    return [
        running("run-old", started=0),
        make_instance("start-old", S.STARTING, created_at=at(100)),
        make_instance("pend-new", S.PENDING, created_at=at(900)),
        running("run-new", started=800),
        make_instance("start-new", S.STARTING, created_at=at(700)),
        make_instance("pend-old", S.PENDING, created_at=at(200)),
    ]


STOP_ORDER = ["pend-new", "pend-old", "start-new", "start-old", "run-new", "run-old"]


@pytest.mark.parametrize("remove", range(7))
def test_scale_down_stops_pending_then_starting_then_newest_running(remove: int) -> None:
    actions = run_plan(6 - remove, ladder())
    assert actions == [StopInstance(name, "ScaleDown") for name in STOP_ORDER[:remove]]


def test_newest_running_is_judged_by_its_start_not_its_creation() -> None:
    # Created first but started last: it is the newest Running.
    late = make_instance("late", S.RUNNING, created_at=at(0), started_at=at(500))
    early = make_instance("early", S.RUNNING, created_at=at(100), started_at=at(200))
    assert [i.name for i in choose_to_stop([early, late], 1)] == ["late"]
    assert choose_to_stop([early, late], 0) == []
    assert choose_to_stop([early, late], -3) == []


def test_scale_down_ignores_instances_already_leaving() -> None:
    instances = [
        running("a", started=0),
        running("b", started=10, stopping_reason="ScaleDown"),
        make_instance("c", S.STOPPING, stopping_reason="ScaleDown"),
        running("d", started=5),
    ]
    # b and c are already on their way out: only one of a, d must go (d is newer).
    assert run_plan(1, instances) == [StopInstance("d", "ScaleDown")]


def test_scale_to_zero_stops_every_counted_instance_once() -> None:
    actions = run_plan(0, ladder())
    assert sorted(s.name for s in stops(actions)) == sorted(STOP_ORDER)
    assert adds(actions) == []


# --- final instances (failed, not to be replaced by policy) -----------------------------------


def test_a_final_instance_keeps_its_replica_slot() -> None:
    ended = make_instance("failed", S.TERMINATED, final=True, reason="StartFailed", settled=True)
    assert counted([ended]) == [ended]
    assert run_plan(1, [ended]) == []
    assert run_plan(2, [ended]) == [AddInstance()]


def test_a_run_failed_final_instance_keeps_its_slot_while_it_stops() -> None:
    # What the engine records on RunFailed with restartPolicy Never: stop script still running.
    stopping = make_instance("failed", S.STOPPING, final=True, stopping_reason="RunFailed")
    assert counted([stopping]) == [stopping]
    assert run_plan(1, [stopping]) == []
    # Without final (restartPolicy Always) it is replaced at once.
    stopping.final = False
    assert run_plan(1, [stopping]) == [AddInstance()]


@pytest.mark.parametrize("reason", ["ScaleDown", "Deleted", "Superseded"])
def test_a_planner_stop_releases_a_final_instance(reason: str) -> None:
    ended = make_instance("failed", S.TERMINATED, final=True, stopping_reason=reason)
    assert counted([ended]) == []
    assert run_plan(1, [ended]) == [AddInstance()]


@pytest.mark.parametrize("state", [S.TERMINATED, S.STOPPING])
def test_scale_down_releases_final_instances_first(state: S) -> None:
    failed = make_instance("failed", state, final=True, stopping_reason="RunFailed")
    instances = [*ladder(), failed]
    actions = run_plan(6, instances)
    assert actions == [StopInstance("failed", "ScaleDown")]
    assert run_plan(6, apply(instances, actions)) == []


def test_a_settled_final_instance_is_not_pruned_while_it_holds_a_slot() -> None:
    held = make_instance("held", S.TERMINATED, final=True, settled=True)
    others = [make_instance(f"t{k}", S.TERMINATED, settled=True) for k in range(3)]
    assert run_plan(1, [held, *others], keep_terminated=0) == [
        PruneInstance(f"t{k}") for k in range(3)
    ]
    # Released by a scale-down, it is pruned on a later pass like any settled record.
    actions = run_plan(0, [held], keep_terminated=0)
    assert actions == [StopInstance("held", "ScaleDown")]
    assert run_plan(0, apply([held], actions), keep_terminated=0) == [PruneInstance("held")]


def test_deletion_leaves_final_terminated_instances_alone() -> None:
    ended = make_instance("failed", S.TERMINATED, final=True)
    assert run_plan(1, [ended, running("a")], deleting=True) == [StopInstance("a", "Deleted")]


# --- deletion ---------------------------------------------------------------------------------


def test_deletion_stops_every_active_instance_once() -> None:
    instances = [
        *ladder(),
        running("scaled", stopping_reason="ScaleDown"),  # marked but still Running
        running("gone", stopping_reason="Deleted"),  # already asked by deletion
        make_instance("leaving", S.STOPPING),
        make_instance("ended", S.TERMINATED, settled=True),
    ]
    actions = run_plan(5, instances, deleting=True)
    assert all(isinstance(a, StopInstance) and a.reason == "Deleted" for a in actions)
    assert sorted(s.name for s in stops(actions)) == sorted([*STOP_ORDER, "scaled"])
    # Once every instance is marked, deletion plans nothing more (no adds, no prunes).
    assert run_plan(5, apply(instances, actions), deleting=True) == []


def test_deletion_never_adds_or_renews() -> None:
    expiring = running("x", agreement_expires_at=(NOW + timedelta(seconds=30)).isoformat())
    actions = run_plan(3, [expiring], deleting=True)
    assert actions == [StopInstance("x", "Deleted")]


# --- expiration -------------------------------------------------------------------------------


def expiring_in(name: str, seconds: float, started: float = 0) -> Instance:
    return running(
        name, started, agreement_expires_at=(NOW + timedelta(seconds=seconds)).isoformat()
    )


@pytest.mark.parametrize(
    ("duration", "margin"),
    [
        (timedelta(hours=1), timedelta(minutes=5)),  # capped at 5 minutes
        (timedelta(minutes=10), timedelta(minutes=2)),  # 20 %
        (timedelta(seconds=30), timedelta(seconds=10)),  # at least 10 s
        (timedelta(hours=24), timedelta(minutes=5)),
    ],
)
def test_expiry_margin(duration: timedelta, margin: timedelta) -> None:
    assert expiry_margin(duration) == margin


@pytest.mark.parametrize("seconds", [-30, 0, 1, 299, 300])
def test_a_running_instance_within_the_margin_gets_one_renewal(seconds: int) -> None:
    assert run_plan(1, [expiring_in("x", seconds)]) == [AddInstance(replaces="x")]


@pytest.mark.parametrize("seconds", [301, 3000])
def test_no_renewal_outside_the_margin(seconds: int) -> None:
    assert run_plan(1, [expiring_in("x", seconds)]) == []


@pytest.mark.parametrize("state", [S.PENDING, S.STARTING])
def test_only_running_instances_are_renewed(state: S) -> None:
    soon = (NOW + timedelta(seconds=10)).isoformat()
    instance = make_instance("x", state, agreement_expires_at=soon)
    assert run_plan(1, [instance]) == []


def test_renewal_lifecycle_keeps_the_count_and_stops_the_old_once() -> None:
    instances = [expiring_in("old", 60), running("other", started=50)]
    actions = run_plan(2, instances)
    assert actions == [AddInstance(replaces="old")]

    # The successor exists (Pending): no second renewal, nothing stopped; the old one still
    # counts (it serves), the successor as a surge above replicas.
    instances.append(make_instance("new", S.PENDING, replaces="old", created_at=NOW.isoformat()))
    assert len(counted(instances)) == 3
    assert run_plan(2, instances) == []

    # Successor Starting: still waiting.
    instances[-1].state = S.STARTING
    assert run_plan(2, instances) == []

    # Successor Running: the old one is stopped as Superseded, exactly once.
    instances[-1].state = S.RUNNING
    actions = run_plan(2, instances)
    assert actions == [StopInstance("old", "Superseded")]
    instances = apply(instances, actions)
    assert run_plan(2, instances) == []


def test_a_failed_successor_gets_a_new_renewal() -> None:
    instances = [
        expiring_in("old", 60),
        make_instance("new", S.TERMINATED, replaces="old", reason="StartFailed"),
    ]
    assert run_plan(1, instances) == [AddInstance(replaces="old")]


def test_renewal_and_scale_up_together() -> None:
    actions = run_plan(3, [expiring_in("old", 60)])
    assert sorted(actions, key=repr) == sorted(
        [AddInstance(replaces="old"), AddInstance(), AddInstance()], key=repr
    )


def test_an_instance_stopped_by_scale_down_is_not_renewed() -> None:
    # "young" expires soon and is the newest Running, so scale-down takes it: no successor.
    instances = [expiring_in("young", 60, started=500), running("elder", started=0)]
    assert run_plan(1, instances) == [StopInstance("young", "Superseded")]


def test_superseded_old_instance_already_leaving_is_not_stopped_again() -> None:
    instances = [
        running("old", stopping_reason="Superseded"),
        running("new", started=100, replaces="old"),
    ]
    assert run_plan(1, instances) == []
    instances[0].state = S.STOPPING
    instances[0].stopping_reason = ""
    assert run_plan(1, instances) == []


@pytest.mark.parametrize("state", [S.PENDING, S.STARTING, S.RUNNING])
def test_scale_down_during_a_renewal_keeps_one_serving_instance(state: S) -> None:
    # "new" renews "old"; a scale-down to 1 keeps what serves and never leaves both counted.
    instances = [
        expiring_in("old", 60, started=0),
        make_instance("new", state, replaces="old", created_at=at(3000), started_at=at(3500)),
        running("keep", started=100),
    ]
    actions = run_plan(1, instances)
    after = apply(instances, actions)
    assert "keep" in [i.name for i in counted(after)]
    assert len(counted(after)) <= 2  # at most maxSurge (1) above replicas
    # The plan converges: applied again and again, it ends at one instance and stays.
    for _ in range(3):
        for instance in after:
            if instance.stopping_reason and instance.state is not S.TERMINATED:
                instance.state = S.TERMINATED
        after = apply(after, run_plan(1, after))
    assert [i.name for i in counted(after)] == ["keep"]
    assert run_plan(1, after) == []


# --- budget -----------------------------------------------------------------------------------


def budget(total: str, spent: str = "0", committed: str = "0", nxt: str = "1") -> Budget:
    return Budget(Decimal(total), Decimal(spent), Decimal(committed), Decimal(nxt))


@pytest.mark.parametrize(
    ("money", "allowed"),
    [
        (budget("10", "4", "5", "1"), True),  # exactly the total
        (budget("10", "4", "5", "1.000000000000000001"), False),
        (budget("10", "0", "0", "10.5"), False),
        (budget("10", "10", "0", "0"), True),
        (budget("10", "10.000000000000000001", "0", "0"), False),
    ],
)
def test_allows_another(money: Budget, allowed: bool) -> None:
    assert money.allows_another() is allowed


def test_no_addition_when_the_next_instance_does_not_fit() -> None:
    money = budget("10", spent="3", committed="6", nxt="2")
    actions = run_plan(3, [], budget=money)
    assert adds(actions) == []
    assert budget_blocked(3, [], actions)


@pytest.mark.parametrize(
    ("money", "expected"),
    [
        (budget("10", nxt="3"), 3),  # 3, 6, 9 fit; 12 does not
        (budget("10", spent="2", committed="2", nxt="3"), 2),
        (budget("10", spent="1", nxt="3"), 3),  # 1 + 9 = 10 fits exactly
        (budget("10", nxt="0"), 5),
        (budget("100", nxt="1"), 5),
    ],
)
def test_partial_additions_when_only_some_fit(money: Budget, expected: int) -> None:
    actions = run_plan(5, [], budget=money)
    assert adds(actions) == [AddInstance()] * expected
    assert budget_blocked(5, [], actions) is (expected < 5)


def test_budget_blocked_is_false_when_nothing_is_missing() -> None:
    instances = [running("a")]
    assert not budget_blocked(1, instances, [])
    assert not budget_blocked(0, instances, [StopInstance("a", "ScaleDown")])


def test_renewals_need_the_budget_too_and_come_before_scale_up() -> None:
    instances = [expiring_in("old", 60)]
    # Room for one more instance: the renewal gets it, the scale-up does not.
    actions = run_plan(2, instances, budget=budget("10", committed="8", nxt="2"))
    assert adds(actions) == [AddInstance(replaces="old")]
    assert budget_blocked(2, instances, actions)
    # No room at all: not even the renewal (reported as blocked: the agreement will end).
    actions = run_plan(1, instances, budget=budget("10", committed="9", nxt="2"))
    assert adds(actions) == [] and stops(actions) == []
    assert budget_blocked(1, instances, actions)


# --- pruning ----------------------------------------------------------------------------------


def test_pruning_keeps_the_last_settled_records() -> None:
    settled = [make_instance(f"t{k}", S.TERMINATED, settled=True) for k in range(25)]
    unsettled = [make_instance(f"u{k}", S.TERMINATED) for k in range(3)]
    instances = [*unsettled, *settled, running("a")]
    actions = run_plan(1, instances)
    assert actions == [PruneInstance(f"t{k}") for k in range(5)]
    assert run_plan(1, instances, keep_terminated=0) == [PruneInstance(f"t{k}") for k in range(25)]
    assert run_plan(1, instances, keep_terminated=30) == []
    assert run_plan(1, apply(instances, actions)) == []


# --- properties -------------------------------------------------------------------------------


@st.composite
def instance_sets(draw: st.DrawFn) -> list[Instance]:
    """Realistic records: at most one unfinished successor per instance."""
    instances: list[Instance] = []
    succeeded: set[str] = set()  # names with an unfinished successor
    for k in range(draw(st.integers(0, 9))):
        state = draw(st.sampled_from(list(S)))
        created = draw(st.integers(0, 3000))
        fields: dict[str, Any] = {"created_at": at(created)}
        if state in (S.PENDING, S.STARTING, S.RUNNING, S.STOPPING):
            fields["stopping_reason"] = draw(st.sampled_from(["", "", "", "ScaleDown", "Deleted"]))
        if state is S.RUNNING:
            fields["started_at"] = at(created + draw(st.integers(0, 500)))
            if draw(st.booleans()):
                fields["agreement_expires_at"] = at(draw(st.integers(3000, 7200)))
        if state is S.TERMINATED:
            fields["settled"] = draw(st.booleans())
        if state in (S.STOPPING, S.TERMINATED) and draw(st.booleans()):
            fields["final"] = True  # failed, not to be replaced
            if state is S.STOPPING:
                fields["stopping_reason"] = "RunFailed"
        earlier = [i.name for i in instances]
        if state is not S.TERMINATED:
            earlier = [n for n in earlier if n not in succeeded]
        renews = draw(st.booleans())
        if earlier and renews:
            fields["replaces"] = draw(st.sampled_from(earlier))
            if state is not S.TERMINATED:
                succeeded.add(fields["replaces"])
        instances.append(make_instance(f"i{k}", state, **fields))
    return instances


@settings(max_examples=300, deadline=None)
@given(instances=instance_sets(), replicas=st.integers(0, 8), keep=st.integers(0, 3))
def test_after_the_plan_the_counted_instances_equal_replicas(
    instances: list[Instance], replicas: int, keep: int
) -> None:
    actions = run_plan(replicas, instances, keep_terminated=keep)
    assert run_plan(replicas, instances, keep_terminated=keep) == actions  # deterministic
    stopped = [s.name for s in stops(actions)]
    assert len(stopped) == len(set(stopped))  # nobody is stopped twice in one plan
    after = apply(instances, actions)
    # Exactly replicas, and a surge of at most maxSurge (1) while an agreement is renewed.
    due = [
        i
        for i in counted(after)
        if i.state is S.RUNNING
        and i.agreement_expires_at
        and at_time(i.agreement_expires_at) - NOW <= expiry_margin(HOUR)
        and not i.stopping_reason
    ]
    assert replicas <= len(counted(after)) <= replicas + min(1, len(due))
    # A plan applied leaves nothing to add or stop: the next pass is quiet.
    again = run_plan(replicas, after, keep_terminated=keep)
    assert adds(again) == [] and stops(again) == []
    assert not budget_blocked(replicas, instances, actions)


@settings(max_examples=200, deadline=None)
@given(
    instances=instance_sets(),
    replicas=st.integers(0, 8),
    room=st.integers(0, 6),
    nxt=st.sampled_from(["1", "0.3", "2.000000000000000001"]),
)
def test_a_tight_budget_takes_a_prefix_of_the_additions(
    instances: list[Instance], replicas: int, room: int, nxt: str
) -> None:
    per = Decimal(nxt)
    money = Budget(Decimal(100), Decimal(40), Decimal(60) - room * per, per)
    unlimited = run_plan(replicas, instances)
    limited = run_plan(replicas, instances, budget=money)
    assert adds(limited) == adds(unlimited)[:room]  # renewals first, then scale-up
    assert stops(limited) == stops(unlimited)
    spent = money.spent + money.committed + len(adds(limited)) * per
    assert spent <= money.total


@settings(max_examples=150, deadline=None)
@given(instances=instance_sets(), replicas=st.integers(0, 8))
def test_deletion_marks_every_active_instance_and_then_rests(
    instances: list[Instance], replicas: int
) -> None:
    actions = run_plan(replicas, instances, deleting=True)
    after = apply(instances, actions)
    active = [i for i in after if i.state in (S.PENDING, S.STARTING, S.RUNNING)]
    assert all(i.stopping_reason == "Deleted" for i in active)
    assert run_plan(replicas, after, deleting=True) == []


def test_renew_before_sets_the_margin() -> None:
    five = timedelta(minutes=5)
    assert expiry_margin(five, timedelta(minutes=4, seconds=30)) == timedelta(minutes=4, seconds=30)
    # Never more than the agreement itself (admission keeps renewBefore below it).
    assert expiry_margin(five, timedelta(minutes=9)) == five


@pytest.mark.parametrize(("seconds", "renews"), [(271, False), (270, True), (30, True)])
def test_a_running_instance_is_renewed_renew_before_its_end(seconds: int, renews: bool) -> None:
    actions = run_plan(
        1,
        [expiring_in("x", seconds)],
        agreement_duration=timedelta(minutes=5),
        renew_before=timedelta(minutes=4, seconds=30),
    )
    assert (actions == [AddInstance(replaces="x")]) is renews
    # Without renewBefore the default margin of a 5m agreement (1m) renews much later.
    default = run_plan(1, [expiring_in("x", seconds)], agreement_duration=timedelta(minutes=5))
    assert (default == [AddInstance(replaces="x")]) is (seconds <= 60)
