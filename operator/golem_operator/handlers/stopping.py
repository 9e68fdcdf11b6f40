"""Phases Stopping and Terminated: the stop script, releasing the provider, settling payment.

Called by an instance's driver. The stop script is bounded by stop.timeoutSeconds and its
failure never blocks the release. "Already gone" counts as done, so a rerun after a crash
finishes the job.
"""

from __future__ import annotations

from golem_operator.api.status import Instance
from golem_operator.core.states import Event
from golem_operator.golem import GolemNotFound
from golem_operator.handlers import starting, uploads
from golem_operator.handlers.host import InstanceHost
from golem_operator.requestor.scripts import run_script


async def stop(worker: InstanceHost, instance: Instance) -> None:
    assert worker.daemon is not None
    spec = worker.spec_or_fail
    script = spec.lifecycle.stop
    client = worker.daemon.client
    message = f"stopped ({instance.stopping_reason or 'requested'})"
    if instance.activity_id and script.commands:
        try:
            contents = await uploads.resolve(worker, list(script.commands), "lifecycle.stop")
            result, _ = await run_script(
                client,
                instance.activity_id,
                list(script.commands),
                contents,
                script.timeout_seconds,
                "stop",
            )
            stop_error = result.message if not result.success else ""
        except uploads.UploadError as upload_error:
            stop_error = str(upload_error)
        except GolemNotFound as gone:
            stop_error = f"stop script: {gone.message}"
        # lastRun keeps the run script's latest result; the stop script's shows in message.
        if stop_error:
            message += f"; stop script failed: {stop_error}"
    await starting.release(worker, instance, reason=instance.stopping_reason or "stopped")
    worker.transition(instance, Event.STOP_FINISHED, message)
