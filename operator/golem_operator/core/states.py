"""The instance state machine: the service model's transitions as data, in one place.

Called by ``core.transactions`` whenever something happens to an instance. Events come from the
operator (StopRequested), from the provider (ActivityLost: agreement terminated, activity
gone) and from errors (StartFailed, RunFailed). Where the target depends on the spec
(respawnUnstartedInstances, restartPolicy) the table holds a policy, resolved by ``next_state``.
"""

from __future__ import annotations

from enum import StrEnum

from golem_operator.api.spec import RestartPolicy
from golem_operator.api.status import InstanceState as S


class Event(StrEnum):
    """What can happen to an instance. Values are the CamelCase Event reasons."""

    AGREEMENT_SIGNED = "AgreementSigned"  # agreement approved: the start script begins
    START_SUCCEEDED = "Started"  # start script succeeded
    START_FAILED = "StartFailed"  # negotiation, activity creation or start script failed
    RUN_FAILED = "RunFailed"  # run script failed failureThreshold times in a row
    ACTIVITY_LOST = "ActivityLost"  # provider terminated the agreement or the activity died
    STOP_REQUESTED = "StopRequested"  # scale-down, deletion, expiration, or a restart
    STOP_FINISHED = "Stopped"  # stop script done (or timed out), agreement terminated


class Policy(StrEnum):
    """A target that depends on the spec."""

    RESPAWN = "respawn"  # Pending again if respawnUnstartedInstances, else Terminated
    RESTART = "restart"  # Pending again per restartPolicy, else Terminated


Target = S | Policy

#: (state, event) -> target. A pair that is absent is not a legal transition.
TRANSITIONS: dict[tuple[S, Event], Target] = {
    (S.PENDING, Event.AGREEMENT_SIGNED): S.STARTING,
    (S.PENDING, Event.START_FAILED): Policy.RESPAWN,
    (S.PENDING, Event.STOP_REQUESTED): S.TERMINATED,  # nothing rented yet: nothing to stop
    (S.STARTING, Event.START_SUCCEEDED): S.RUNNING,
    (S.STARTING, Event.START_FAILED): Policy.RESPAWN,
    (S.STARTING, Event.ACTIVITY_LOST): Policy.RESPAWN,
    (S.STARTING, Event.STOP_REQUESTED): S.STOPPING,
    (S.RUNNING, Event.RUN_FAILED): S.STOPPING,  # the stop script still runs; then RESTART
    (S.RUNNING, Event.ACTIVITY_LOST): Policy.RESTART,  # abrupt: no stop script possible
    (S.RUNNING, Event.STOP_REQUESTED): S.STOPPING,
    (S.STOPPING, Event.STOP_FINISHED): S.TERMINATED,
    (S.STOPPING, Event.ACTIVITY_LOST): S.TERMINATED,
}


class InvalidTransition(ValueError):
    """An event that cannot happen in the instance's state."""


def restart_allowed(policy: RestartPolicy, failed: bool) -> bool:
    """Whether an instance that ended after Running gets a replacement."""
    if policy is RestartPolicy.NEVER:
        return False
    if policy is RestartPolicy.ON_FAILURE:
        return failed
    return True


def next_state(
    state: S,
    event: Event,
    *,
    respawn_unstarted: bool,
    restart_policy: RestartPolicy,
) -> S:
    """The state an instance moves to when event happens in state."""
    target = TRANSITIONS.get((state, event))
    if target is None:
        raise InvalidTransition(f"{event.value} cannot happen to an instance in {state.value}")
    if target is Policy.RESPAWN:
        return S.PENDING if respawn_unstarted else S.TERMINATED
    if target is Policy.RESTART:
        return S.PENDING if restart_allowed(restart_policy, failed=True) else S.TERMINATED
    assert isinstance(target, S)
    return target


def is_active(state: S) -> bool:
    """States that hold (or are looking for) a provider."""
    return state in (S.PENDING, S.STARTING, S.RUNNING)
