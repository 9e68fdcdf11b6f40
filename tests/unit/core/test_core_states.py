"""The instance state machine: every (state, event) pair, the policy targets, and properties.

The expected table is written out here from the service model (anchors.md, states.py docs),
not derived from ``states.TRANSITIONS``, so a changed table fails these tests.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from golem_operator.api.spec import RestartPolicy
from golem_operator.api.status import InstanceState as S
from golem_operator.core.states import Event as E
from golem_operator.core.states import InvalidTransition, is_active, next_state, restart_allowed

RESPAWN = "respawn"  # Pending if respawnUnstartedInstances else Terminated
RESTART = "restart"  # Pending unless restartPolicy is Never

EXPECTED: dict[tuple[S, E], S | str] = {
    (S.PENDING, E.AGREEMENT_SIGNED): S.STARTING,
    (S.PENDING, E.START_FAILED): RESPAWN,
    (S.PENDING, E.STOP_REQUESTED): S.TERMINATED,
    (S.STARTING, E.START_SUCCEEDED): S.RUNNING,
    (S.STARTING, E.START_FAILED): RESPAWN,
    (S.STARTING, E.ACTIVITY_LOST): RESPAWN,
    (S.STARTING, E.STOP_REQUESTED): S.STOPPING,
    (S.RUNNING, E.RUN_FAILED): S.STOPPING,
    (S.RUNNING, E.ACTIVITY_LOST): RESTART,
    (S.RUNNING, E.STOP_REQUESTED): S.STOPPING,
    (S.STOPPING, E.STOP_FINISHED): S.TERMINATED,
    (S.STOPPING, E.ACTIVITY_LOST): S.TERMINATED,
}

ALL_PAIRS = list(itertools.product(S, E))
LEGAL = [pair for pair in ALL_PAIRS if pair in EXPECTED]
ILLEGAL = [pair for pair in ALL_PAIRS if pair not in EXPECTED]
OPTIONS = list(itertools.product([True, False], RestartPolicy))


def resolve(target: S | str, respawn: bool, policy: RestartPolicy) -> S:
    if target == RESPAWN:
        return S.PENDING if respawn else S.TERMINATED
    if target == RESTART:
        return S.TERMINATED if policy is RestartPolicy.NEVER else S.PENDING
    assert isinstance(target, S)
    return target


def test_the_table_covers_every_pair() -> None:
    assert len(ALL_PAIRS) == len(S) * len(E) == 35
    assert len(LEGAL) == 12


@pytest.mark.parametrize(("respawn", "policy"), OPTIONS)
@pytest.mark.parametrize(("state", "event"), LEGAL)
def test_legal_transitions_reach_the_documented_target(
    state: S, event: E, respawn: bool, policy: RestartPolicy
) -> None:
    got = next_state(state, event, respawn_unstarted=respawn, restart_policy=policy)
    assert got is resolve(EXPECTED[(state, event)], respawn, policy)


@pytest.mark.parametrize(("respawn", "policy"), OPTIONS)
@pytest.mark.parametrize(("state", "event"), ILLEGAL)
def test_illegal_transitions_raise(
    state: S, event: E, respawn: bool, policy: RestartPolicy
) -> None:
    with pytest.raises(InvalidTransition) as caught:
        next_state(state, event, respawn_unstarted=respawn, restart_policy=policy)
    # The message names both the event and the state, for the instance's status message.
    assert event.value in str(caught.value)
    assert state.value in str(caught.value)


def test_invalid_transition_is_a_value_error() -> None:
    assert issubclass(InvalidTransition, ValueError)


@pytest.mark.parametrize("event", list(E))
def test_terminated_is_final(event: E) -> None:
    for respawn, policy in OPTIONS:
        with pytest.raises(InvalidTransition):
            next_state(S.TERMINATED, event, respawn_unstarted=respawn, restart_policy=policy)


@pytest.mark.parametrize("state", [S.PENDING, S.STARTING])
@pytest.mark.parametrize("policy", list(RestartPolicy))
def test_unstarted_failures_follow_respawn_not_restart_policy(
    state: S, policy: RestartPolicy
) -> None:
    # The SDK's respawn_unstarted_instances: before Running only that flag matters.
    assert next_state(state, E.START_FAILED, respawn_unstarted=True, restart_policy=policy) is (
        S.PENDING
    )
    assert next_state(state, E.START_FAILED, respawn_unstarted=False, restart_policy=policy) is (
        S.TERMINATED
    )


@pytest.mark.parametrize("respawn", [True, False])
def test_lost_after_running_follows_restart_policy_not_respawn(respawn: bool) -> None:
    def lost(policy: RestartPolicy) -> S:
        return next_state(
            S.RUNNING, E.ACTIVITY_LOST, respawn_unstarted=respawn, restart_policy=policy
        )

    assert lost(RestartPolicy.ALWAYS) is S.PENDING
    assert lost(RestartPolicy.ON_FAILURE) is S.PENDING
    assert lost(RestartPolicy.NEVER) is S.TERMINATED


def test_run_failure_still_runs_the_stop_script() -> None:
    # RunFailed goes through Stopping (the stop script), whatever the policy.
    for respawn, policy in OPTIONS:
        assert (
            next_state(S.RUNNING, E.RUN_FAILED, respawn_unstarted=respawn, restart_policy=policy)
            is S.STOPPING
        )


@pytest.mark.parametrize(
    ("policy", "failed", "allowed"),
    [
        (RestartPolicy.ALWAYS, True, True),
        (RestartPolicy.ALWAYS, False, True),
        (RestartPolicy.ON_FAILURE, True, True),
        (RestartPolicy.ON_FAILURE, False, False),
        (RestartPolicy.NEVER, True, False),
        (RestartPolicy.NEVER, False, False),
    ],
)
def test_restart_allowed(policy: RestartPolicy, failed: bool, allowed: bool) -> None:
    assert restart_allowed(policy, failed) is allowed


def test_is_active() -> None:
    assert {s for s in S if is_active(s)} == {S.PENDING, S.STARTING, S.RUNNING}


def test_event_values_are_camelcase_reasons() -> None:
    for event in E:
        assert event.value[0].isupper() and "_" not in event.value and " " not in event.value


# --- properties -------------------------------------------------------------------------------

options = st.tuples(st.booleans(), st.sampled_from(list(RestartPolicy)))


@settings(max_examples=200, deadline=None)
@given(
    start=st.sampled_from(list(S)), picks=st.lists(st.integers(0, 100), max_size=40), opt=options
)
def test_random_legal_sequences_stay_in_the_state_set(
    start: S, picks: list[int], opt: tuple[bool, RestartPolicy]
) -> None:
    respawn, policy = opt
    state = start
    for pick in picks:
        legal = [e for e in E if (state, e) in EXPECTED]
        if not legal:
            assert state is S.TERMINATED  # the only state without a way out
            break
        event = legal[pick % len(legal)]
        new = next_state(state, event, respawn_unstarted=respawn, restart_policy=policy)
        assert new in set(S)
        assert new is resolve(EXPECTED[(state, event)], respawn, policy)
        # Nothing goes back to Starting or Running without passing through the lifecycle.
        if new is S.RUNNING:
            assert state is S.STARTING
        if new is S.STARTING:
            assert state is S.PENDING
        state = new


@settings(max_examples=100, deadline=None)
@given(start=st.sampled_from(list(S)), opt=options)
def test_stop_requested_then_stop_finished_reaches_terminated(
    start: S, opt: tuple[bool, RestartPolicy]
) -> None:
    respawn, policy = opt
    state, steps = start, 0
    while state is not S.TERMINATED:
        # Stopping already is on its way: only the stop script's end remains.
        event = E.STOP_FINISHED if state is S.STOPPING else E.STOP_REQUESTED
        state = next_state(state, event, respawn_unstarted=respawn, restart_policy=policy)
        steps += 1
        assert steps <= 2
    # The stop path never respawns: no policy applies to a requested stop.
    assert state is S.TERMINATED
