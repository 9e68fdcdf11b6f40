"""Rolling updates: maxSurge and maxUnavailable at every step, Recreate, pause, rollback, a
failing new revision and a surge the budget cannot afford."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from core_builders import T0, make_instance, make_spec
from hypothesis import given, settings
from hypothesis import strategies as st

from golem_operator.api.status import GolemServiceStatus, Instance
from golem_operator.api.status import InstanceState as S
from golem_operator.core import rollout
from golem_operator.core.plan import (
    Action,
    AddInstance,
    Budget,
    StopInstance,
    WaitForBudget,
    counted,
    plan,
)
from golem_operator.core.rollout import Strategy, available, scaled

HOUR = timedelta(hours=1)
PLENTY = Budget(Decimal(10**6), Decimal(0), Decimal(0), Decimal(1))


@pytest.mark.parametrize(
    ("value", "total", "up", "expected"),
    [
        ("25%", 4, True, 1),
        ("25%", 5, True, 2),  # 1.25 up
        ("25%", 5, False, 1),  # 1.25 down
        ("25%", 3, False, 0),
        ("100%", 3, True, 3),
        ("0%", 10, True, 0),
        (2, 10, True, 2),
    ],
)
def test_percentages_round_as_a_deployment_does(
    value: int | str, total: int, up: bool, expected: int
) -> None:
    assert scaled(value, total, round_up=up) == expected


def test_both_zero_after_rounding_lets_one_be_unavailable() -> None:
    strategy = Strategy.resolve(3, "0%", "25%")  # 0.75 rounds down to 0
    assert (strategy.max_surge, strategy.max_unavailable) == (0, 1)


def test_the_spec_defaults_are_25_percent_each() -> None:
    strategy = Strategy.of(make_spec(replicas=8))
    assert (strategy.max_surge, strategy.max_unavailable, strategy.recreate) == (2, 2, False)


class World:
    """Instances as the engine keeps them, moved by the plan and by events."""

    def __init__(self, replicas: int, revision: str = "a") -> None:
        self.instances: list[Instance] = []
        self.now = T0
        self.counter = 0
        for _ in range(replicas):
            self.add(revision, S.RUNNING)
        self.now += timedelta(minutes=1)

    def add(self, revision: str, state: S = S.PENDING, replaces: str | None = None) -> Instance:
        self.counter += 1
        fields: dict[str, Any] = {"created_at": self.now.isoformat(), "replaces": replaces}
        if state is S.RUNNING:
            fields["started_at"] = self.now.isoformat()
            fields["agreement_expires_at"] = (self.now + HOUR).isoformat()
        instance = make_instance(f"i{self.counter}", state, revision=revision, **fields)
        self.instances.append(instance)
        return instance

    def find(self, name: str) -> Instance:
        return next(i for i in self.instances if i.name == name)

    def plan(self, replicas: int, revision: str, strategy: Strategy, **kw: Any) -> list[Action]:
        options: dict[str, Any] = {"agreement_duration": HOUR, "budget": PLENTY, **kw}
        actions = plan(
            replicas=replicas,
            instances=self.instances,
            now=self.now,
            revision=revision,
            strategy=strategy,
            **options,
        )
        for action in actions:
            if isinstance(action, AddInstance):
                self.add(revision, replaces=action.replaces)
            elif isinstance(action, StopInstance):
                instance = self.find(action.name)
                instance.stopping_reason = action.reason
                if instance.state is S.PENDING:
                    instance.state = S.TERMINATED
                elif instance.state in (S.STARTING, S.RUNNING):
                    instance.state = S.STOPPING
        return actions

    def start(self, instance: Instance) -> None:
        instance.state = S.RUNNING
        instance.started_at = self.now.isoformat()
        instance.agreement_expires_at = (self.now + HOUR).isoformat()

    def happen(self, who: int, what: str) -> None:
        """Something happens to one active instance (by index)."""
        active = [i for i in self.instances if i.state is not S.TERMINATED]
        if not active:
            return
        instance = active[who % len(active)]
        if what == "start" and instance.state is S.PENDING:
            instance.state = S.STARTING
        elif what == "run" and instance.state is S.STARTING:
            self.start(instance)
        elif (what == "fail" and instance.state in (S.PENDING, S.STARTING)) or (
            what == "stopped" and instance.state is S.STOPPING
        ):
            instance.state = S.TERMINATED  # a failed start: a respawn is a new record

    def available(self, strategy: Strategy) -> int:
        return sum(1 for i in counted(self.instances) if available(i, self.now, strategy.min_ready))

    def revisions(self) -> list[str]:
        return sorted(i.revision for i in counted(self.instances))


@settings(max_examples=300, deadline=None)
@given(
    replicas=st.integers(1, 6),
    surge=st.one_of(st.integers(0, 3), st.sampled_from(["0%", "25%", "50%", "100%"])),
    unavailable=st.one_of(st.integers(0, 3), st.sampled_from(["0%", "25%", "50%"])),
    min_ready=st.sampled_from([0, 30]),
    steps=st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "c"]),  # the revision the spec has now
            st.integers(0, 30),  # who
            st.sampled_from(["start", "run", "fail", "stopped", "nothing"]),
            st.integers(1, 90),  # seconds passing
        ),
        min_size=1,
        max_size=40,
    ),
)
def test_a_rollout_never_exceeds_max_surge_nor_drops_below_max_unavailable(
    replicas: int,
    surge: int | str,
    unavailable: int | str,
    min_ready: int,
    steps: list[tuple[str, int, str, int]],
) -> None:
    strategy = Strategy.resolve(
        replicas, surge, unavailable, min_ready=timedelta(seconds=min_ready)
    )
    world = World(replicas)
    for revision, who, what, seconds in steps:
        before = world.available(strategy)
        world.plan(replicas, revision, strategy)
        holding = counted(world.instances)
        assert len(holding) <= replicas + strategy.max_surge
        # The planner itself never takes availability below replicas - maxUnavailable.
        assert world.available(strategy) >= min(before, replicas - strategy.max_unavailable)
        # Something happens to one instance, then time passes.
        world.happen(who, what)
        world.now += timedelta(seconds=seconds)


@settings(max_examples=100, deadline=None)
@given(
    replicas=st.integers(1, 6),
    surge=st.integers(0, 3),
    unavailable=st.integers(0, 3),
    recreate=st.booleans(),
)
def test_a_rollout_whose_instances_start_completes_on_the_new_revision(
    replicas: int, surge: int, unavailable: int, recreate: bool
) -> None:
    strategy = Strategy.resolve(replicas, surge, unavailable, recreate=recreate)
    world = World(replicas)
    for _ in range(4 * replicas + 8):
        world.plan(replicas, "b", strategy)
        for instance in world.instances:  # everything moves one step
            if instance.state is S.PENDING:
                instance.state = S.STARTING
            elif instance.state is S.STARTING:
                world.start(instance)
            elif instance.state is S.STOPPING:
                instance.state = S.TERMINATED
        world.now += timedelta(seconds=10)
    assert world.revisions() == ["b"] * replicas
    assert world.plan(replicas, "b", strategy) == []


def test_rolling_update_of_four_with_the_defaults() -> None:
    strategy = Strategy.resolve(4, "25%", "25%")  # surge 1, unavailable 1
    world = World(4)
    actions = world.plan(4, "b", strategy)
    # One new (surge), one old stopped (unavailable): 4 + 1 - 1 exist, 3 serve.
    assert sum(isinstance(a, AddInstance) for a in actions) == 1
    assert [a.reason for a in actions if isinstance(a, StopInstance)] == ["RevisionUpdated"]
    assert len(counted(world.instances)) == 4
    assert world.available(strategy) == 3
    # Nothing more until a new one is available.
    added = [a for a in world.plan(4, "b", strategy) if isinstance(a, AddInstance)]
    assert len(added) == 1  # the stopped one's slot is refilled within the surge
    assert len(counted(world.instances)) == 5
    assert world.plan(4, "b", strategy) == []


def test_recreate_stops_every_old_instance_before_starting_new_ones() -> None:
    strategy = Strategy.resolve(3, "25%", 0, recreate=True)
    world = World(3)
    actions = world.plan(3, "b", strategy)
    assert all(isinstance(a, StopInstance) and a.reason == "RevisionUpdated" for a in actions)
    assert len(actions) == 3
    assert world.plan(3, "b", strategy) == []  # still Stopping: nothing new yet
    for instance in world.instances:
        instance.state = S.TERMINATED
    actions = world.plan(3, "b", strategy)
    assert actions == [AddInstance()] * 3


def test_paused_holds_the_rollout_but_scales() -> None:
    strategy = Strategy.resolve(2, 1, 0, paused=True)
    world = World(2)
    assert world.plan(2, "b", strategy) == []
    assert world.revisions() == ["a", "a"]
    # Scaling up while paused starts instances of the spec as it is now.
    assert world.plan(3, "b", Strategy.resolve(3, 1, 0, paused=True)) == [AddInstance()]
    # Scaling down while paused keeps, as a Deployment does, up to replicas + maxSurge, the
    # least far along going first.
    actions = world.plan(1, "b", Strategy.resolve(1, 1, 0, paused=True))
    assert [a.name for a in actions if isinstance(a, StopInstance)] == ["i3"]
    assert world.revisions() == ["a", "a"]
    actions = world.plan(0, "b", Strategy.resolve(0, 1, 0, paused=True))
    assert len(counted(world.instances)) == 1


def test_paused_renewals_go_on() -> None:
    strategy = Strategy.resolve(1, 1, 0, paused=True)
    world = World(1)
    world.now = T0 + HOUR - timedelta(seconds=30)  # its agreement ends soon
    assert world.plan(1, "a", strategy) == [AddInstance(replaces="i1")]


def test_a_failing_new_revision_stops_old_ones_only_within_max_unavailable() -> None:
    strategy = Strategy.resolve(4, 1, 1)
    world = World(4)
    for _ in range(20):
        world.plan(4, "b", strategy)
        for instance in world.instances:
            if instance.revision == "b" and instance.state in (S.PENDING, S.STARTING):
                instance.state = S.TERMINATED  # the start script fails on every provider
            elif instance.state is S.STOPPING:
                instance.state = S.TERMINATED
        world.now += timedelta(seconds=10)
    serving = [i for i in world.instances if i.state is S.RUNNING]
    assert [i.revision for i in serving] == ["a"] * 3  # 4 - maxUnavailable keep serving


def test_rollback_keeps_the_instances_of_the_previous_revision() -> None:
    strategy = Strategy.resolve(3, 1, 0)
    world = World(3)
    world.plan(3, "b", strategy)  # one new instance of b, Pending
    assert world.revisions() == ["a", "a", "a", "b"]
    # The previous manifest again: revision a. The three of a are kept, b goes.
    actions = world.plan(3, "a", strategy)
    assert [(a.name, a.reason) for a in actions if isinstance(a, StopInstance)] == [
        ("i4", "RevisionUpdated")
    ]
    assert not any(isinstance(a, AddInstance) for a in actions)
    assert world.revisions() == ["a", "a", "a"]


def test_a_surge_the_budget_cannot_afford_falls_back_to_max_unavailable() -> None:
    strategy = Strategy.resolve(2, 1, 1)
    world = World(2)
    broke = Budget(Decimal(10), Decimal(0), Decimal(10), Decimal(1))
    actions = world.plan(2, "b", strategy, budget=broke)
    assert WaitForBudget(1) in actions
    # No surge: one old instance is stopped within maxUnavailable, its replacement waits.
    assert [a.reason for a in actions if isinstance(a, StopInstance)] == ["RevisionUpdated"]
    assert world.available(strategy) == 1


def test_min_ready_seconds_delays_availability() -> None:
    strategy = Strategy.resolve(1, 1, 0, min_ready=timedelta(seconds=30))
    world = World(1)
    world.plan(1, "b", strategy)
    new = world.instances[-1]
    world.start(new)
    assert world.plan(1, "b", strategy) == []  # Running, not yet available
    world.now += timedelta(seconds=30)
    assert world.plan(1, "b", strategy) == [StopInstance("i1", "RevisionUpdated")]


# --- status --------------------------------------------------------------------------------


def test_revision_history_is_bounded_and_keeps_the_current_revision() -> None:
    status = GolemServiceStatus(current_revision="r0")
    now = T0
    for n in range(8):
        rollout.record_revision(status, f"r{n}", n + 1, "img", 3, now)
    names = [r.revision for r in status.revisions]
    assert names == ["r0", "r4", "r5", "r6", "r7"]  # current, 3 older, the update
    # Re-applying an older revision moves it to the end, with the new generation.
    rollout.record_revision(status, "r5", 9, "img", 3, now)
    assert [r.revision for r in status.revisions][-1] == "r5"
    assert status.revisions[-1].generation == 9
    assert len({r.revision for r in status.revisions}) == len(status.revisions)


def test_progress_deadline_is_reported_after_no_progress() -> None:
    status = GolemServiceStatus()
    state = rollout.RolloutState(updated=1, updated_available=0, old=2, complete=False)
    deadline = timedelta(seconds=600)
    now = T0
    ok = rollout.progressing(status, state, "b", paused=False, deadline=deadline, now=now)
    assert ok[:2] == (True, "RevisionUpdating")
    later = now + timedelta(seconds=601)
    stalled = rollout.progressing(
        status, state, "b", paused=False, deadline=deadline, now=later, why_stalled="x failed"
    )
    assert stalled[:2] == (False, "ProgressDeadlineExceeded") and "x failed" in stalled[2]
    # Progress (one more available) resets the clock.
    moved = rollout.RolloutState(updated=1, updated_available=1, old=2, complete=False)
    assert rollout.progressing(status, moved, "b", paused=False, deadline=deadline, now=later)[
        :2
    ] == (True, "RevisionUpdating")
    paused = rollout.progressing(status, moved, "b", paused=True, deadline=deadline, now=later)
    assert paused[:2] == (False, "RolloutPaused")
    done = rollout.RolloutState(updated=3, updated_available=3, old=0, complete=True)
    assert rollout.progressing(status, done, "b", paused=False, deadline=deadline, now=later)[
        :2
    ] == (True, "NewRevisionAvailable")


@settings(max_examples=200, deadline=None)
@given(
    replicas=st.integers(1, 5),
    surge=st.integers(0, 2),
    unavailable=st.integers(0, 2),
    pause_at=st.integers(0, 6),
    steps=st.lists(
        st.tuples(st.integers(0, 30), st.sampled_from(["start", "run", "fail", "stopped"])),
        min_size=1,
        max_size=30,
    ),
)
def test_a_paused_rollout_stops_nothing_that_serves(
    replicas: int,
    surge: int,
    unavailable: int,
    pause_at: int,
    steps: list[tuple[int, str]],
) -> None:
    rolling = Strategy.resolve(replicas, surge, unavailable)
    paused = Strategy.resolve(replicas, surge, unavailable, paused=True)
    world = World(replicas)
    for n, (who, what) in enumerate(steps):
        strategy = paused if n >= pause_at else rolling
        actions = world.plan(replicas, "b", strategy)
        assert len(counted(world.instances)) <= replicas + strategy.max_surge
        if strategy.paused:
            # Held: nothing Running is stopped, nothing is added beyond what was there.
            stopped = {a.name for a in actions if isinstance(a, StopInstance)}
            assert not any(
                i.name in stopped and i.started_at and i.stopping_reason != "Superseded"
                for i in world.instances
            )
        world.happen(who, what)
        world.now += timedelta(seconds=10)
