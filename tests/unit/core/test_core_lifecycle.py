"""The pure core driven as the engine will drive it: plan, transitions and summary together.

Random worlds: on each pass the plan is applied through ``transactions`` (add_instance,
StopRequested, pruning), then random legal events happen to random instances and time moves.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from core_builders import T0, make_spec
from hypothesis import given, settings
from hypothesis import strategies as st

from golem_operator.api.spec import GolemServiceSpec
from golem_operator.api.status import GolemServiceStatus, Phase
from golem_operator.api.status import InstanceState as S
from golem_operator.core import plan as planning
from golem_operator.core.states import TRANSITIONS, Event, restart_allowed
from golem_operator.core.transactions import (
    add_instance,
    iso,
    release_golem_objects,
    summarize,
    transition,
)

DURATION = timedelta(minutes=10)
ACTIVE = (S.PENDING, S.STARTING, S.RUNNING)
FAILURES = (Event.START_FAILED, Event.ACTIVITY_LOST)
PLENTY = planning.Budget(Decimal(10**6), Decimal(0), Decimal(0), Decimal(1))


def apply_plan(status: GolemServiceStatus, spec: GolemServiceSpec, now: object) -> None:
    actions = planning.plan(
        replicas=spec.replicas,
        instances=status.instances,
        now=now,  # type: ignore[arg-type]
        agreement_duration=DURATION,
        budget=PLENTY,
        keep_terminated=3,
    )
    for action in actions:
        if isinstance(action, planning.AddInstance):
            add_instance(status, "svc", now, replaces=action.replaces)  # type: ignore[arg-type]
        elif isinstance(action, planning.StopInstance):
            instance = next(i for i in status.instances if i.name == action.name)
            instance.stopping_reason = action.reason
            if instance.state in ACTIVE:  # a final one (Stopping, Terminated) is only released
                transition(instance, Event.STOP_REQUESTED, spec, now)  # type: ignore[arg-type]
        else:
            status.instances = [i for i in status.instances if i.name != action.name]


@settings(max_examples=250, deadline=None)
@given(
    replicas=st.integers(0, 4),
    respawn=st.booleans(),
    policy=st.sampled_from(["Always", "OnFailure", "Never"]),
    steps=st.lists(
        st.tuples(st.integers(0, 19), st.integers(0, 50), st.integers(0, 50), st.integers(1, 240)),
        min_size=1,
        max_size=60,
    ),
)
def test_random_worlds_keep_the_replica_count_and_a_coherent_status(
    replicas: int, respawn: bool, policy: str, steps: list[tuple[int, int, int, int]]
) -> None:
    status = GolemServiceStatus()
    now = T0
    for n, (resize, who, what, seconds) in enumerate(steps):
        replicas = resize if resize <= 4 else replicas  # the user scales now and then
        spec = make_spec(
            replicas=replicas,
            respawnUnstartedInstances=respawn,
            restartPolicy=policy,
            agreementDuration="10m",
        )
        apply_plan(status, spec, now)
        live = planning.counted(status.instances)
        # replicas, and while an agreement is renewed at most maxSurge (1) above it.
        assert spec.replicas <= len(live) <= spec.replicas + 1
        # A final instance (failed, not to be replaced) keeps its slot until the planner stops
        # it, or a renewal successor has taken the slot over.
        successors = {i.replaces for i in status.instances if i.state is not S.TERMINATED}
        for instance in status.instances:
            if instance.final and instance.stopping_reason in ("", "RunFailed"):
                assert instance in live or instance.name in successors
        assert len({i.name for i in status.instances}) == len(status.instances)

        summarize(status, service="svc", replicas=spec.replicas, generation=n, now=now)
        assert status.replicas == len(live)
        if status.ready_replicas == spec.replicas and status.phase is not Phase.DEGRADED:
            assert status.phase in (Phase.RUNNING, Phase.STOPPED)
        assert {c.type for c in status.conditions} == {"Ready", "Progressing", "Degraded"}

        # Something happens to one instance, then time passes.
        if status.instances:
            instance = status.instances[who % len(status.instances)]
            legal = [e for e in Event if (instance.state, e) in TRANSITIONS]
            if legal:
                event = legal[what % len(legal)]
                if event is Event.AGREEMENT_SIGNED:
                    instance.agreement_id = f"ag-{n}"
                    instance.agreement_expires_at = iso(now + DURATION)
                if event is Event.RUN_FAILED:  # as the engine marks it (handlers/running.py)
                    instance.stopping_reason = "RunFailed"
                    instance.final = not restart_allowed(spec.restart_policy, failed=True)
                _, new = transition(instance, event, spec, now)
                assert new in set(S)
                if new is S.TERMINATED and event in FAILURES and not instance.stopping_reason:
                    instance.final = True  # not replaced by policy: it keeps its replica slot
                if new is S.RUNNING:
                    assert instance.started_at == iso(now)
            elif not instance.settled:
                release_golem_objects(instance)
                instance.settled = True
        now += timedelta(seconds=seconds)
