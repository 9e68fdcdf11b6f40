"""The status writer: coalesces one service's status changes into few merge patches.

Workers edit their in-memory GolemServiceStatus, call ``changed()``, and ``await flush()``
where the status must be written before they act (an agreement or activity id recorded
before it is relied on). At most one patch per ``interval`` per service.

A JSON merge patch only removes a key that it sets to null: every patch is the difference
from what was last written (the status read at start, then each write), so a cleared field
(an allocation released, a provider no longer avoided) really disappears from the object.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

Patch = Callable[[dict[str, Any]], Awaitable[bool]]


def merge_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that turns ``old`` into ``new``.

    Keys of ``old`` missing from ``new`` become null; nested objects are patched key by key;
    lists and scalars are replaced whole, as a merge patch does.
    """
    patch: dict[str, Any] = {}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            nested = merge_patch(before, value)
            if nested or not before:
                patch[key] = nested if before else value
        elif value != before or key not in old:
            patch[key] = value
    for key in old:
        if key not in new:
            patch[key] = None
    return patch


def _describe(error: BaseException) -> str:
    """An API error without its response body."""
    status = getattr(error, "status", None)
    if status is not None:
        return f"{status} {getattr(error, 'reason', '') or ''}".strip()
    return f"{type(error).__name__}: {str(error)[:200]}"


class StatusWriter:
    def __init__(
        self,
        snapshot: Callable[[], dict[str, Any]],
        patch: Patch,
        interval: float,
        written: dict[str, Any] | None = None,
        relaxed_interval: float = 0.0,
    ) -> None:
        self._snapshot = snapshot
        self._patch = patch
        self._interval = interval
        self._version = 0  # bumped on every change
        self._written = 0  # the version last written
        #: The latest change to be written promptly; later ones are routine and wait up to
        #: relaxed_interval after the previous write (coalescing e.g. run-script results).
        self._urgent = 0
        self._relaxed_interval = relaxed_interval
        #: Callers waiting in flush().
        self._waiting = 0
        self._wake = asyncio.Event()
        self._written_event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_patch = 0.0
        #: When the writer started: a first routine change waits relaxed_interval from here
        #: (a new object's first status usually goes with the next prompt write).
        self._started = 0.0
        #: What the object's status holds now, as far as this writer knows.
        self._last_body: dict[str, Any] | None = written
        self.gone = False  # the object was deleted: nothing more to write
        self.patches = 0
        #: Since when writes keep failing (monotonic), and the latest error; None while fine.
        self.failing_since: float | None = None
        self.last_error = ""

    def start(self) -> None:
        self._started = time.monotonic()
        self._task = asyncio.create_task(self._run(), name="status-writer")

    async def close(self) -> None:
        """Write what is pending, then stop."""
        if self._version != self._written and not self.gone:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.flush(), 10)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def failing_for(self) -> float:
        """Seconds that writes have been failing (0 while they succeed)."""
        if self.failing_since is None:
            return 0.0
        return time.monotonic() - self.failing_since

    def changed(self, routine: bool = False) -> None:
        """Something to write: promptly, or (routine) within relaxed_interval."""
        self._version += 1
        if not routine:
            self._urgent = self._version
        self._wake.set()

    async def flush(self, urgent_only: bool = False) -> None:
        """Return once every change made before this call is written (with urgent_only,
        every change but routine ones, which keep their pace)."""
        target = self._urgent if urgent_only else self._version
        if self._written >= target or self.gone:
            return
        self._urgent = max(self._urgent, target)
        self._wake.set()
        self._waiting += 1
        try:
            while self._written < target and not self.gone:
                self._written_event.clear()
                await self._written_event.wait()
        finally:
            self._waiting -= 1

    async def _run(self) -> None:
        backoff = 0.5
        while True:
            await self._wake.wait()
            self._wake.clear()
            # Only routine changes pending: they wait for the relaxed interval, unless
            # something to write promptly comes meanwhile.
            while self._urgent <= self._written and self._relaxed_interval > 0:
                since = self._last_patch or self._started
                due = since + self._relaxed_interval - time.monotonic()
                if due <= 0:
                    break
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), due)
                except TimeoutError:
                    break
            self._wake.clear()
            # The pacing pause is skipped when someone waits for the write (an agreement or
            # activity id to record before going on): that wait is on the instance's path.
            pause = self._last_patch + self._interval - time.monotonic()
            if pause > 0 and not self._waiting:
                await asyncio.sleep(pause)
            target = self._version
            body = self._snapshot()
            if body == self._last_body:
                self._written = target
                self._written_event.set()
                continue
            try:
                alive = await self._patch(merge_patch(self._last_body or {}, body))
            except asyncio.CancelledError:
                raise
            except Exception as error:  # keep the writer alive whatever the API says
                log.warning("status patch failed (retrying): %s", error)
                if self.failing_since is None:
                    self.failing_since = time.monotonic()
                self.last_error = _describe(error)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10)
                self._wake.set()
                continue
            backoff = 0.5
            self.failing_since = None
            self._last_patch = time.monotonic()
            self._last_body = body
            self.patches += 1
            if not alive:
                self.gone = True
            self._written = target
            self._written_event.set()
            if self._version != target:
                self._wake.set()
