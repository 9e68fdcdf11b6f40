"""Time stamps and long-poll event streams shared by the localnet APIs.

`EventLog` keeps persistent events filtered by `afterTimestamp` (agreement, debit note and
invoice events); `EventQueue` hands each event out once (demand events). Both wake waiting
long-poll requests without any thread or per-waiter task.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

_last_stamp = datetime.fromtimestamp(0, UTC)


def stamp() -> datetime:
    """The current UTC time, strictly later than any earlier stamp (no lost events)."""
    global _last_stamp
    now = datetime.now(UTC)
    if now <= _last_stamp:
        now = _last_stamp + timedelta(microseconds=1)
    _last_stamp = now
    return now


def iso(moment: datetime) -> str:
    """RFC 3339 with microseconds and a Z, as yagna writes timestamps."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: str) -> datetime:
    """Parse an RFC 3339 timestamp (Z or offset); naive values are taken as UTC."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace(" ", "+"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class _Signal:
    """Wakes every current waiter; a new waiter waits for the next change."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def wait(self, wait_seconds: float) -> None:
        if wait_seconds <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), wait_seconds)


class EventLog:
    """Persistent, time-ordered events."""

    def __init__(self) -> None:
        self._events: list[tuple[datetime, dict[str, Any]]] = []
        self._signal = _Signal()

    def append(self, moment: datetime, event: dict[str, Any]) -> None:
        self._events.append((moment, event))
        self._signal.notify()

    def __len__(self) -> int:
        return len(self._events)

    async def collect(
        self,
        *,
        after: datetime | None,
        wait_seconds: float,
        max_events: int,
        accept: Callable[[dict[str, Any]], bool] = lambda _: True,
    ) -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_seconds
        while True:
            found = [
                event
                for moment, event in self._events
                if (after is None or moment > after) and accept(event)
            ]
            remaining = deadline - loop.time()
            if found or remaining <= 0:
                return found[:max_events]
            await self._signal.wait(remaining)


class EventQueue:
    """Events handed out once each (yagna's demand/offer event queues)."""

    def __init__(self) -> None:
        self._events: deque[dict[str, Any]] = deque()
        self._signal = _Signal()
        self.closed = False

    def append(self, event: dict[str, Any]) -> None:
        self._events.append(event)
        self._signal.notify()

    def close(self) -> None:
        self.closed = True
        self._signal.notify()

    async def collect(self, *, wait_seconds: float, max_events: int) -> list[dict[str, Any]] | None:
        """The next events; None when the queue was closed while waiting."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_seconds
        while True:
            if self.closed:
                return None
            remaining = deadline - loop.time()
            if self._events or remaining <= 0:
                taken: list[dict[str, Any]] = []
                while self._events and len(taken) < max_events:
                    taken.append(self._events.popleft())
                return taken
            await self._signal.wait(remaining)
