"""Supervised background tasks: a loop that dies is restarted with backoff and reported.

Used by every daemon-wide task (payment polls, the agreement-event watcher). A loop retries
its own transient errors; if it dies anyway (a bug, an unexpected error), the supervisor logs
it, counts it, restarts it after a growing delay and reports it as down until the restarted
loop says it is working again (``healthy``). Services read ``problem()`` into their Degraded
condition while a task is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

from golem_operator.core.payments import next_backoff
from golem_operator.observability import metrics

log = logging.getLogger(__name__)

#: A loop that ran this long before dying restarts quickly again (its last death is old news).
STABLE_AFTER = 60.0
FIRST_DELAY = 0.5
MAX_DELAY = 30.0

LoopFactory = Callable[["Supervisor", str], Coroutine[Any, Any, None]]


class Supervisor:
    """Runs named loops forever; `problem()` says which are down and why."""

    def __init__(self, what: str) -> None:
        #: What the loops serve, for messages (e.g. the daemon's URL).
        self.what = what
        self._tasks: dict[str, asyncio.Task[None]] = {}
        #: task name -> (error text, since when, wall clock) while the task is down.
        self._down: dict[str, tuple[str, str]] = {}

    def spawn(self, name: str, loop: LoopFactory) -> None:
        self._tasks[name] = asyncio.create_task(self._run(name, loop), name=name)

    def healthy(self, name: str) -> None:
        """Called by a loop once it works (e.g. after a successful poll)."""
        if self._down.pop(name, None) is not None:
            log.info("background task %s of %s is working again", name, self.what)

    def is_down(self, name: str) -> bool:
        return name in self._down

    def problem(self) -> tuple[str, str] | None:
        """(reason, message) for the Degraded condition of services using these tasks."""
        if not self._down:
            return None
        names = sorted(self._down)
        payments = [n for n in names if n.startswith("payments")]
        reason = "PaymentsStalled" if payments else "BackgroundTaskFailed"
        parts = [f"{n} (down since {self._down[n][1]}: {self._down[n][0]})" for n in names]
        return reason, f"background task of {self.what} restarting: " + "; ".join(parts)

    async def _run(self, name: str, loop: LoopFactory) -> None:
        delay = FIRST_DELAY
        while True:
            started = time.monotonic()
            try:
                await loop(self, name)
                error = "the loop returned"
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # whatever it was, the task must come back
                log.exception("background task %s of %s died", name, self.what)
                error = f"{type(exc).__name__}: {str(exc)[:200]}"
            metrics.TASK_RESTARTS.labels(name).inc()
            if name not in self._down:
                since = datetime.now(UTC).isoformat(timespec="seconds")
                self._down[name] = (error, since)
            else:
                self._down[name] = (error, self._down[name][1])
            if time.monotonic() - started > STABLE_AFTER:
                delay = FIRST_DELAY
            log.warning("restarting background task %s of %s in %.1fs", name, self.what, delay)
            await asyncio.sleep(delay)
            delay = next_backoff(delay, cap=MAX_DELAY)

    async def close(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        for task in self._tasks.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
