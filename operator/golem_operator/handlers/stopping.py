"""Phases Stopping and Terminated: the stop script, releasing the provider, settling payment.

Called by an instance's driver. The stop script is bounded by stop.timeoutSeconds and its
failure never blocks the release. "Already gone" counts as done, so a rerun after a crash
finishes the job.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from golem_operator.api.status import Instance
from golem_operator.core.scripts import compile_script, summarize_results
from golem_operator.core.states import Event
from golem_operator.golem import GolemError, GolemUnauthorized, GolemUnavailable
from golem_operator.handlers import starting, uploads
from golem_operator.requestor.scripts import ScriptTimeout, run_batch

if TYPE_CHECKING:
    from golem_operator.handlers.service import ServiceWorker


async def stop(worker: ServiceWorker, instance: Instance) -> None:
    assert worker.daemon is not None
    spec = worker.spec_or_fail
    script = spec.lifecycle.stop
    client = worker.daemon.client
    message = f"stopped ({instance.stopping_reason or 'requested'})"
    if instance.activity_id and script.commands:
        error = ""
        batch = compile_script([])
        try:
            contents = await uploads.resolve(worker, list(script.commands))
            batch = compile_script(list(script.commands), contents)
            outcomes = await run_batch(
                client, instance.activity_id, batch, script.timeout_seconds, phase="stop"
            )
        except uploads.UploadError as upload_error:
            outcomes, error = [], str(upload_error)
        except ScriptTimeout as timeout:
            outcomes, error = timeout.outcomes, str(timeout)
        except (GolemUnavailable, GolemUnauthorized):
            raise
        except GolemError as golem_error:
            outcomes, error = [], f"stop script: {golem_error.message}"
        result, _ = summarize_results(
            batch, outcomes, datetime.now(UTC).isoformat(timespec="seconds"), error
        )
        # lastRun keeps the run script's latest result; the stop script's shows in message.
        if not result.success:
            message += f"; stop script failed: {result.message}"
    await starting.release(worker, instance, reason=instance.stopping_reason or "stopped")
    worker.transition(instance, Event.STOP_FINISHED, message)
