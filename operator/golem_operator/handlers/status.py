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


class StatusWriter:
    def __init__(
        self,
        snapshot: Callable[[], dict[str, Any]],
        patch: Patch,
        interval: float,
        written: dict[str, Any] | None = None,
    ) -> None:
        self._snapshot = snapshot
        self._patch = patch
        self._interval = interval
        self._version = 0  # bumped on every change
        self._written = 0  # the version last written
        self._wake = asyncio.Event()
        self._written_event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_patch = 0.0
        #: What the object's status holds now, as far as this writer knows.
        self._last_body: dict[str, Any] | None = written
        self.gone = False  # the object was deleted: nothing more to write
        self.patches = 0

    def start(self) -> None:
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

    def changed(self) -> None:
        self._version += 1
        self._wake.set()

    async def flush(self) -> None:
        """Return once every change made before this call is written."""
        target = self._version
        if self._written >= target or self.gone:
            return
        self._wake.set()
        while self._written < target and not self.gone:
            self._written_event.clear()
            await self._written_event.wait()

    async def _run(self) -> None:
        backoff = 0.5
        while True:
            await self._wake.wait()
            self._wake.clear()
            pause = self._last_patch + self._interval - time.monotonic()
            if pause > 0:
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
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10)
                self._wake.set()
                continue
            backoff = 0.5
            self._last_patch = time.monotonic()
            self._last_body = body
            self.patches += 1
            if not alive:
                self.gone = True
            self._written = target
            self._written_event.set()
            if self._version != target:
                self._wake.set()
