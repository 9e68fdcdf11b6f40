"""Status transactions: instance transitions, conditions, and the derived phase and counts."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from core_builders import T0, at, make_instance, make_spec

from golem_operator.api.spec import GolemServiceSpec
from golem_operator.api.status import (
    ConditionType,
    GolemServiceStatus,
    Instance,
    Phase,
    Price,
    Progress,
    Provider,
)
from golem_operator.api.status import InstanceState as S
from golem_operator.core import rollout
from golem_operator.core.states import Event as E
from golem_operator.core.states import InvalidTransition
from golem_operator.core.transactions import (
    MESSAGE_CAP,
    add_instance,
    created_message,
    find,
    iso,
    release_golem_objects,
    set_condition,
    summarize,
    transition,
)

LATER = T0 + timedelta(minutes=7)


def spec(**fields: Any) -> GolemServiceSpec:
    return make_spec(**fields)


# --- add_instance and find --------------------------------------------------------------------


def test_add_instance_names_in_sequence_and_records_the_renewal() -> None:
    status = GolemServiceStatus(instance_counter=4)
    first = add_instance(status, "web", T0)
    second = add_instance(status, "web", LATER, replaces=first.name)
    assert (first.name, second.name) == ("web-5", "web-6")
    assert status.instance_counter == 6
    assert status.instances == [first, second]
    assert first.state is S.PENDING and first.replaces is None and first.reason == "Created"
    assert second.replaces == "web-5" and second.reason == "Renewal"
    assert first.created_at == first.last_transition_time == iso(T0)
    assert find(status, "web-6") is second
    with pytest.raises(KeyError):
        find(status, "web-7")


def test_iso_is_rfc3339_with_seconds() -> None:
    assert iso(T0) == "2025-03-01T12:00:00+00:00"


# --- transition -------------------------------------------------------------------------------


def test_a_transition_records_reason_message_and_time() -> None:
    instance = make_instance("a", S.PENDING, last_transition_time=iso(T0))
    assert transition(instance, E.AGREEMENT_SIGNED, spec(), LATER, "agreement 42") == (
        S.PENDING,
        S.STARTING,
    )
    assert instance.state is S.STARTING
    assert (instance.reason, instance.message) == ("AgreementSigned", "agreement 42")
    assert instance.last_transition_time == iso(LATER)
    assert instance.started_at is None


def test_running_sets_started_at_and_clears_failures() -> None:
    instance = make_instance("a", S.STARTING, consecutive_failures=2)
    transition(instance, E.START_SUCCEEDED, spec(), LATER)
    assert instance.state is S.RUNNING
    assert instance.started_at == iso(LATER)
    assert instance.consecutive_failures == 0
    assert instance.restarts == 0


def test_messages_are_capped() -> None:
    instance = make_instance("a", S.PENDING)
    transition(instance, E.AGREEMENT_SIGNED, spec(), T0, "x" * 5000)
    assert len(instance.message) == MESSAGE_CAP


@pytest.mark.parametrize(
    ("state", "event", "fields"),
    [
        (S.STARTING, E.START_FAILED, {"respawnUnstartedInstances": True}),
        (S.STARTING, E.ACTIVITY_LOST, {"respawnUnstartedInstances": True}),
        (S.RUNNING, E.ACTIVITY_LOST, {"restartPolicy": "Always"}),
        (S.RUNNING, E.ACTIVITY_LOST, {"restartPolicy": "OnFailure"}),
    ],
)
def test_respawn_and_restart_count_and_reset(state: S, event: E, fields: dict[str, Any]) -> None:
    instance = make_instance(
        "a", state, restarts=3, stopping_reason="ScaleDown", consecutive_failures=2
    )
    assert transition(instance, event, spec(**fields), LATER, "gone") == (state, S.PENDING)
    assert instance.restarts == 4
    assert instance.stopping_reason == ""
    assert instance.consecutive_failures == 0
    assert (instance.reason, instance.message) == (event.value, "gone")


@pytest.mark.parametrize(
    ("state", "event", "fields"),
    [
        (S.STARTING, E.START_FAILED, {"respawnUnstartedInstances": False}),
        (S.RUNNING, E.ACTIVITY_LOST, {"restartPolicy": "Never"}),
    ],
)
def test_no_respawn_no_restart_leaves_it_terminated(
    state: S, event: E, fields: dict[str, Any]
) -> None:
    instance = make_instance("a", state, restarts=1)
    assert transition(instance, event, spec(**fields), LATER) == (state, S.TERMINATED)
    assert instance.restarts == 1


def test_a_stop_is_not_a_restart() -> None:
    instance = make_instance("a", S.RUNNING, stopping_reason="ScaleDown", agreement_id="ag")
    transition(instance, E.STOP_REQUESTED, spec(), T0)
    transition(instance, E.STOP_FINISHED, spec(), LATER)
    assert instance.state is S.TERMINATED
    assert instance.restarts == 0
    assert instance.stopping_reason == "ScaleDown"
    assert instance.reason == "Stopped"


def test_terminated_without_an_agreement_is_settled_at_once() -> None:
    pending = make_instance("a", S.PENDING)
    transition(pending, E.STOP_REQUESTED, spec(), T0)
    assert pending.state is S.TERMINATED and pending.settled

    rented = make_instance("b", S.STOPPING, agreement_id="ag-1")
    transition(rented, E.STOP_FINISHED, spec(), T0)
    assert rented.state is S.TERMINATED and not rented.settled  # the invoice is still due


def test_an_invalid_transition_changes_nothing() -> None:
    instance = make_instance("a", S.TERMINATED, reason="Stopped", message="done", restarts=2)
    before = instance.model_copy(deep=True)
    with pytest.raises(InvalidTransition):
        transition(instance, E.AGREEMENT_SIGNED, spec(), LATER, "late")
    assert instance == before


def test_release_golem_objects_forgets_the_agreement() -> None:
    instance = make_instance(
        "a",
        S.TERMINATED,
        agreement_id="ag",
        activity_id="act",
        provider=Provider(id="0x1", name="p").model_dump(),
        approved_at=at(0),
        agreement_expires_at=at(3600),
        price=Price().model_dump(by_alias=True),
        spent="1.5",
        restarts=2,
    )
    release_golem_objects(instance)
    assert instance.agreement_id is None and instance.activity_id is None
    assert instance.provider is None and instance.price is None
    assert instance.approved_at is None and instance.agreement_expires_at is None
    assert instance.spent == "0"
    assert instance.restarts == 2  # history stays


# --- set_condition ----------------------------------------------------------------------------


def test_conditions_move_their_time_only_when_the_status_flips() -> None:
    status = GolemServiceStatus()
    set_condition(status, ConditionType.READY, False, "ReplicasNotRunning", "0 of 1", 1, T0)
    ready = status.conditions[0]
    assert (ready.type, ready.status, ready.last_transition_time) == ("Ready", "False", iso(T0))

    set_condition(status, ConditionType.READY, False, "Other", "still 0 of 1", 2, LATER)
    assert len(status.conditions) == 1
    assert ready.last_transition_time == iso(T0)  # kept
    assert (ready.reason, ready.message, ready.observed_generation) == ("Other", "still 0 of 1", 2)

    set_condition(status, ConditionType.READY, True, "AllReplicasRunning", "1 of 1", 2, LATER)
    assert (ready.status, ready.last_transition_time) == ("True", iso(LATER))


def test_conditions_are_kept_apart_by_type() -> None:
    status = GolemServiceStatus()
    set_condition(status, ConditionType.READY, True, "A", "", 1, T0)
    set_condition(status, ConditionType.DEGRADED, False, "B", "m" * 3000, 1, LATER)
    assert [c.type for c in status.conditions] == ["Ready", "Degraded"]
    assert len(status.conditions[1].message) == MESSAGE_CAP
    assert status.conditions[0].last_transition_time == iso(T0)


# --- summarize --------------------------------------------------------------------------------


def summary(
    instances: list[Instance],
    replicas: int,
    now: Any = T0,
    status: GolemServiceStatus | None = None,
    **kwargs: Any,
) -> GolemServiceStatus:
    status = status or GolemServiceStatus()
    status.instances = instances
    summarize(status, service="web", replicas=replicas, generation=3, now=now, **kwargs)
    return status


def conditions(status: GolemServiceStatus) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in status.conditions}


def running(name: str, **fields: Any) -> Instance:
    return make_instance(name, S.RUNNING, **fields)


def test_nothing_yet() -> None:
    status = summary([], 2)
    assert status.phase is Phase.PENDING
    assert (status.replicas, status.ready_replicas) == (0, 0)
    assert status.selector == "services.golem.network/service=web"
    assert status.observed_generation == 3
    assert conditions(status) == {
        "Ready": ("False", "ReplicasNotRunning"),
        "Progressing": ("True", "Reconciling"),
        "Degraded": ("False", "AsExpected"),
    }
    assert all(c.observed_generation == 3 for c in status.conditions)


def test_only_pending_is_pending_and_starting_is_progressing() -> None:
    assert summary([make_instance("a", S.PENDING)], 1).phase is Phase.PENDING
    assert summary([make_instance("a", S.STARTING)], 1).phase is Phase.PROGRESSING
    partly = summary([running("a"), make_instance("b", S.PENDING)], 2)
    assert partly.phase is Phase.PROGRESSING
    assert (partly.replicas, partly.ready_replicas) == (2, 1)
    assert conditions(partly)["Ready"] == ("False", "ReplicasNotRunning")
    assert "1 of 2" in next(c.message for c in partly.conditions if c.type == "Ready")


def test_all_running_is_ready_and_stable() -> None:
    status = summary([running("a"), running("b"), make_instance("c", S.TERMINATED)], 2)
    assert status.phase is Phase.RUNNING
    assert (status.replicas, status.ready_replicas) == (2, 2)
    assert conditions(status) == {
        "Ready": ("True", "AllReplicasRunning"),
        "Progressing": ("False", "Stable"),
        "Degraded": ("False", "AsExpected"),
    }


def test_running_but_still_moving_is_ready_and_progressing() -> None:
    # A renewal: the old one still Running, its successor Starting. The counts stay true:
    # the old one serves (ready), the successor is a surge above replicas.
    instances = [running("old"), make_instance("new", S.STARTING, replaces="old")]
    status = summary(instances, 1)
    assert (status.replicas, status.ready_replicas) == (2, 1)
    assert status.phase is Phase.RUNNING
    assert conditions(status)["Ready"] == ("True", "AllReplicasRunning")
    assert conditions(status)["Progressing"] == ("True", "Reconciling")
    # Once the successor runs and the old one stops, the service is Running again.
    instances = [make_instance("old", S.STOPPING), running("new", replaces="old")]
    status = summary(instances, 1)
    assert status.phase is Phase.RUNNING
    assert conditions(status)["Ready"] == ("True", "AllReplicasRunning")
    assert conditions(status)["Progressing"] == ("True", "Reconciling")


def test_instances_leaving_do_not_count() -> None:
    status = summary([running("a", stopping_reason="ScaleDown"), running("b")], 1)
    assert (status.replicas, status.ready_replicas) == (1, 1)
    assert status.phase is Phase.RUNNING


@pytest.mark.parametrize("reason", ["StartFailed", "RunFailed", "ActivityLost"])
def test_a_failed_instance_short_of_replicas_is_degraded(reason: str) -> None:
    failed = make_instance("web-1", S.TERMINATED, reason=reason, message="image not found")
    status = summary([failed, make_instance("web-2", S.PENDING)], 1)
    assert status.phase is Phase.DEGRADED
    degraded = next(c for c in status.conditions if c.type == "Degraded")
    assert (degraded.status, degraded.reason) == ("True", "InstanceFailed")
    assert "web-1" in degraded.message and "image not found" in degraded.message


def test_a_failure_with_enough_running_is_not_degraded() -> None:
    failed = make_instance("web-1", S.TERMINATED, reason="StartFailed")
    status = summary([failed, running("web-2")], 1)
    assert status.phase is Phase.RUNNING
    assert conditions(status)["Degraded"] == ("False", "AsExpected")


def test_a_normal_stop_is_not_a_failure() -> None:
    stopped = make_instance("web-1", S.TERMINATED, reason="Stopped")
    assert summary([stopped], 1).phase is Phase.PENDING


def test_a_service_problem_degrades_whatever_the_instances() -> None:
    status = summary([running("a")], 1, problem=("BudgetExhausted", "no GLM left"))
    assert status.phase is Phase.DEGRADED
    degraded = next(c for c in status.conditions if c.type == "Degraded")
    assert (degraded.status, degraded.reason, degraded.message) == (
        "True",
        "BudgetExhausted",
        "no GLM left",
    )
    assert conditions(status)["Ready"] == ("True", "AllReplicasRunning")


def test_deleting() -> None:
    status = summary([running("a"), make_instance("b", S.STOPPING)], 1, deleting=True)
    assert status.phase is Phase.DELETING
    assert conditions(status)["Ready"][0] == "False"
    assert conditions(status)["Progressing"] == ("True", "Deleting")
    # Deleting wins over a problem.
    assert summary([], 1, deleting=True, problem=("X", "y")).phase is Phase.DELETING


def test_scaled_to_zero_is_stopped() -> None:
    status = summary([make_instance("a", S.TERMINATED, reason="Stopped")], 0)
    assert status.phase is Phase.STOPPED
    assert conditions(status)["Ready"] == ("True", "AllReplicasRunning")
    assert summary([running("a")], 0).phase is not Phase.STOPPED


def test_summarize_keeps_transition_times_until_a_flip() -> None:
    status = summary([make_instance("a", S.STARTING)], 1, now=T0)
    times = {c.type: c.last_transition_time for c in status.conditions}
    status = summary([make_instance("a", S.STARTING)], 1, now=LATER, status=status)
    assert {c.type: c.last_transition_time for c in status.conditions} == times
    status = summary([running("a")], 1, now=LATER, status=status)
    moved = {c.type: c.last_transition_time for c in status.conditions}
    assert moved["Ready"] == iso(LATER)  # False -> True
    assert moved["Progressing"] == iso(LATER)  # True -> False
    assert moved["Degraded"] == iso(T0)  # still False


def test_the_summarized_status_survives_the_wire() -> None:
    status = summary([running("a", started_at=at(5)), make_instance("b", S.PENDING)], 2)
    wire = status.model_dump(mode="json", by_alias=True)
    assert wire["phase"] == "Progressing" and wire["readyReplicas"] == 1
    assert all("lastTransitionTime" in c for c in wire["conditions"])
    assert GolemServiceStatus.model_validate(wire) == status


# --- rollout status --------------------------------------------------------------------------


NOW = T0


def condition(status: GolemServiceStatus, kind: str) -> Any:
    return next(c for c in status.conditions if c.type == kind)


def rollout_summary(
    instances: list[Instance], replicas: int, target: rollout.Target, status: Any = None
) -> GolemServiceStatus:
    status = status or GolemServiceStatus()
    status.instances = instances
    summarize(status, service="svc", replicas=replicas, generation=2, now=NOW, target=target)
    return status


def test_a_rollout_under_way_reports_updated_revisions_and_progress() -> None:
    instances = [
        running("a1", revision="a"),
        running("a2", revision="a"),
        make_instance("b1", S.STARTING, revision="b"),
    ]
    status = GolemServiceStatus(current_revision="a")
    status = rollout_summary(instances, 2, rollout.Target(revision="b"), status)
    assert (status.replicas, status.ready_replicas, status.available_replicas) == (3, 2, 2)
    assert status.updated_replicas == 1
    assert (status.current_revision, status.update_revision) == ("a", "b")
    assert [r.revision for r in status.revisions] == ["b"]
    assert conditions(status)["Progressing"] == ("True", "RevisionUpdating")
    assert conditions(status)["Ready"] == ("True", "AllReplicasRunning")


def test_a_completed_rollout_makes_the_update_revision_current() -> None:
    instances = [running("b1", revision="b"), running("b2", revision="b")]
    status = rollout_summary(
        instances, 2, rollout.Target(revision="b"), GolemServiceStatus(current_revision="a")
    )
    assert (status.current_revision, status.updated_replicas) == ("b", 2)
    assert conditions(status)["Progressing"] == ("False", "NewRevisionAvailable")
    assert status.phase is Phase.RUNNING


def test_min_ready_seconds_keeps_a_new_instance_unavailable() -> None:
    instances = [running("b1", revision="b", started_at=NOW.isoformat())]
    target = rollout.Target(revision="b", min_ready=timedelta(hours=10))
    status = rollout_summary(instances, 1, target)
    assert (status.ready_replicas, status.available_replicas) == (1, 0)


def test_a_stalled_rollout_is_reported_with_the_failure() -> None:
    failed = make_instance(
        "b1",
        S.TERMINATED,
        revision="b",
        reason="StartFailed",
        message="start script: exit 1",
        last_transition_time=NOW.isoformat(),
    )
    instances = [running("a1", revision="a"), failed, make_instance("b2", S.PENDING, revision="b")]
    target = rollout.Target(revision="b", deadline=timedelta(seconds=60))
    status = rollout_summary(instances, 1, target, GolemServiceStatus(current_revision="a"))
    status.last_progress = Progress(
        mark=status.last_progress.mark if status.last_progress else "",
        time=(NOW - timedelta(seconds=61)).isoformat(),
    )
    summarize(status, service="svc", replicas=1, generation=2, now=NOW, target=target)
    reason, message = conditions(status)["Progressing"][1], condition(status, "Progressing").message
    assert (conditions(status)["Progressing"][0], reason) == ("False", "ProgressDeadlineExceeded")
    assert "b1 StartFailed: start script: exit 1" in message
    assert conditions(status)["Degraded"] == ("True", "ProgressDeadlineExceeded")
    assert status.ready_replicas == 1  # the old one serves


def test_a_paused_rollout_says_so() -> None:
    instances = [running("a1", revision="a")]
    status = rollout_summary(instances, 1, rollout.Target(revision="b", paused=True))
    assert conditions(status)["Progressing"] == ("False", "RolloutPaused")


def test_the_created_event_names_the_first_instances_and_counts_the_rest() -> None:
    assert created_message(["svc-1"]) == "created 1 instance: svc-1"
    names = [f"svc-{n}" for n in range(1, 13)]
    message = created_message(names)
    assert message.startswith("created 12 instances: svc-1, svc-2")
    assert "svc-10" in message and "svc-11" not in message
    assert message.endswith(" and 2 more")
