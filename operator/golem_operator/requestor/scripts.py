"""Running one script (an ExeScript batch) on an activity, with a time limit.

Called by the instance phases. Sends the batch, long-polls its results until the batch finishes,
a command fails or the time limit passes, and returns each command's outcome. Daemon outages
propagate as GolemUnavailable so the caller can tell them from a failing script.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

from golem_operator.api.spec import Command
from golem_operator.api.status import Download, RunResult
from golem_operator.core.scripts import Batch, CommandOutcome, compile_script, summarize_results
from golem_operator.crashpoints import crashpoint
from golem_operator.golem import (
    GolemClient,
    GolemError,
    GolemNotFound,
    GolemTimeout,
    GolemUnauthorized,
    GolemUnavailable,
)


class ScriptTimeout(Exception):
    """The script did not finish within its time limit."""

    def __init__(self, seconds: float, outcomes: list[CommandOutcome]) -> None:
        super().__init__(f"script did not finish within {seconds:.0f}s")
        self.outcomes = outcomes


async def run_batch(
    client: GolemClient,
    activity_id: str,
    batch: Batch,
    timeout_seconds: float,
    phase: str = "",
) -> list[CommandOutcome]:
    """Outcomes of the batch's commands, in order, up to the first failure.

    phase (start, run, stop) names the script for the test-only crash points.
    """
    deadline = time.monotonic() + timeout_seconds
    batch_id = await client.activity.exec(activity_id, batch.commands)
    if phase:
        crashpoint(f"{phase}-script")
    outcomes: dict[int, CommandOutcome] = {}
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise ScriptTimeout(timeout_seconds, [outcomes[i] for i in sorted(outcomes)])
        try:
            results = await client.activity.get_exec_batch_results(
                activity_id, batch_id, timeout=min(max(left, 0.5), 10.0)
            )
        except GolemTimeout:
            continue  # nothing finished in this poll
        finished = False
        for result in results:
            outcomes[result.index] = CommandOutcome(
                index=result.index,
                ok=result.result == "Ok",
                stdout=result.stdout or "",
                stderr=result.stderr or "",
                message=result.message or "",
            )
            finished = finished or result.is_batch_finished or result.result != "Ok"
        if finished or len(outcomes) >= len(batch.commands):
            return [outcomes[i] for i in sorted(outcomes)]
        await asyncio.sleep(0)


async def run_script(
    client: GolemClient,
    activity_id: str,
    commands: list[Command],
    contents: dict[int, bytes],
    timeout_seconds: float,
    phase: str,
    deploy: dict[str, Any] | None = None,
) -> tuple[RunResult, list[Download]]:
    """Compile, run and summarise one lifecycle script (start, run or stop); `deploy` is the
    body of its deploy command (the service's VPN).

    A daemon outage or refused key and a gone activity (GolemNotFound) propagate: the caller
    decides what they mean in its phase. Every other failure is in the returned result.
    """
    batch = compile_script(commands, contents, deploy)
    failure = ""
    try:
        outcomes = await run_batch(client, activity_id, batch, timeout_seconds, phase=phase)
    except ScriptTimeout as timeout:
        outcomes, failure = timeout.outcomes, str(timeout)
    except (GolemUnavailable, GolemUnauthorized, GolemNotFound):
        raise
    except GolemError as error:
        outcomes, failure = [], f"{phase} script: {error.message}"
    finished = datetime.now(UTC).isoformat(timespec="seconds")
    return summarize_results(batch, outcomes, finished, failure)
