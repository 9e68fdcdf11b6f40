"""Phase Running: repeat the run script (or poll the activity) and judge the instance's health.

Called by an instance's driver. Consecutive failures are counted in status; at
failureThreshold the instance fails (RunFailed: the stop script still runs). An activity or
agreement that is gone ends it abruptly (ActivityLost). A Golem daemon outage is not the
instance's fault and never counts as a failure.
"""

from __future__ import annotations

from golem_operator.api.status import Instance
from golem_operator.core import transactions as tx
from golem_operator.core.states import Event
from golem_operator.golem import GolemError, GolemNotFound, GolemUnauthorized, GolemUnavailable
from golem_operator.handlers import starting, uploads
from golem_operator.handlers.host import InstanceHost
from golem_operator.requestor.scripts import run_script

_DEAD_STATES = {"Terminated", "Unresponsive"}


async def run(worker: InstanceHost, instance: Instance) -> None:
    """Runs until the instance is asked to stop or fails; returns after its transition."""
    assert worker.daemon is not None and instance.activity_id
    while True:
        lost = worker.take_lost(instance.name)
        if lost is not None:
            await _lost(worker, instance, lost)
            return
        if instance.stopping_reason:
            worker.transition(
                instance, Event.STOP_REQUESTED, f"stopping ({instance.stopping_reason})"
            )
            return
        spec = worker.spec_or_fail
        script = spec.lifecycle.run
        ok, message = await _probe(worker, instance)
        if ok is None:  # the activity or agreement is gone
            await _lost(worker, instance, message)
            return
        if ok:
            if instance.consecutive_failures:
                instance.consecutive_failures = 0
                worker.touch(instance)
        else:
            instance.consecutive_failures += 1
            worker.touch(instance)
            if instance.consecutive_failures >= script.failure_threshold:
                gone = await _gone(worker, instance)
                if gone:
                    await _lost(worker, instance, gone)
                else:
                    # The stop script still runs; the planner replaces the instance unless
                    # restartPolicy says not to (then it keeps its replica slot, failed).
                    if instance.provider is not None:
                        worker.avoid(instance.provider.id, f"run script failed: {message}")
                    tx.run_failed(instance, spec)
                    worker.transition(
                        instance,
                        Event.RUN_FAILED,
                        f"{instance.consecutive_failures} failed runs in a row: {message}",
                    )
                return
        if await worker.sleep_or_stop(instance.name, script.interval_seconds):
            continue


async def _lost(worker: InstanceHost, instance: Instance, message: str) -> None:
    """The activity (or agreement) is gone: end what is left on Golem, then respawn.

    A dead activity does not end its agreement: left open, the provider would hold it (and
    invoice it) until it expires, long after status forgot it.
    """
    await starting.release(worker, instance, reason=message)
    worker.respawn(instance, Event.ACTIVITY_LOST, message)


async def _probe(worker: InstanceHost, instance: Instance) -> tuple[bool | None, str]:
    """One health check: (True, '') healthy; (False, why) failed; (None, why) gone."""
    assert worker.daemon is not None and instance.activity_id
    client = worker.daemon.client
    spec = worker.spec_or_fail
    script = spec.lifecycle.run
    if not script.commands:
        try:
            state = await client.activity.get_state(instance.activity_id)
        except (GolemUnavailable, GolemUnauthorized):
            raise
        except GolemNotFound:
            return None, "the activity is gone"
        except GolemError as error:
            return False, f"activity state unknown: {error.message}"
        if state.state[0] in _DEAD_STATES:
            return None, f"the activity is {state.state[0]}"
        return True, ""
    try:
        contents = await uploads.resolve(worker, list(script.commands), "lifecycle.run")
    except uploads.UploadError as error:
        return False, str(error)
    try:
        result, downloads = await run_script(
            client,
            instance.activity_id,
            list(script.commands),
            contents,
            script.timeout_seconds,
            "run",
        )
    except GolemNotFound:
        return None, "the activity is gone"
    previous = instance.last_run
    tx.record_run(instance, result, downloads)
    # A result like the last one written by this process is routine: written within the run
    # result interval, not after every run (at a thousand instances, a write each).
    routine = (
        previous is not None
        and previous.success == result.success
        and instance.name in worker.reported_runs
    )
    worker.reported_runs.add(instance.name)
    worker.touch(instance, routine=routine)
    return result.success, result.message


async def _gone(worker: InstanceHost, instance: Instance) -> str:
    """Why the instance's activity or agreement is gone, or '' if both are alive."""
    assert worker.daemon is not None
    client = worker.daemon.client
    if instance.agreement_id:
        try:
            agreement = await client.market.get_agreement(instance.agreement_id)
            if agreement.state not in ("Approved",):
                return f"the agreement is {agreement.state}"
        except GolemNotFound:
            return "the agreement is gone"
    if instance.activity_id:
        try:
            state = await client.activity.get_state(instance.activity_id)
            if state.state[0] in _DEAD_STATES:
                return f"the activity is {state.state[0]}"
        except GolemNotFound:
            return "the activity is gone"
        except (GolemUnavailable, GolemUnauthorized):
            raise
        except GolemError:
            return ""
    return ""
