"""The status writer's pacing: prompt writes, routine writes held for the relaxed interval,
flush forcing what is pending, and failing writes reported."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from golem_operator.handlers.status import StatusWriter


class Recorder:
    def __init__(self) -> None:
        self.state: dict[str, Any] = {"n": 0}
        self.writes: list[tuple[float, dict[str, Any]]] = []
        self.fail = False

    def snapshot(self) -> dict[str, Any]:
        return dict(self.state)

    async def patch(self, body: dict[str, Any]) -> bool:
        if self.fail:
            raise ConnectionError("API server unreachable")
        self.writes.append((time.monotonic(), body))
        return True


async def test_routine_changes_wait_for_the_relaxed_interval_and_urgent_ones_do_not() -> None:
    rec = Recorder()
    writer = StatusWriter(rec.snapshot, rec.patch, 0.01, {"n": 0}, relaxed_interval=0.6)
    writer.start()
    try:
        rec.state["n"] = 1
        writer.changed()
        await writer.flush()
        first = rec.writes[-1][0]
        rec.state["n"] = 2
        writer.changed(routine=True)
        await asyncio.sleep(0.3)
        assert len(rec.writes) == 1  # held back
        rec.state["n"] = 3
        writer.changed(routine=True)
        await asyncio.sleep(0.6)
        # One write for both routine changes, about the relaxed interval after the last one.
        assert [w[1] for w in rec.writes] == [{"n": 1}, {"n": 3}]
        assert rec.writes[1][0] - first >= 0.55
        rec.state["n"] = 4
        writer.changed(routine=True)
        rec.state["n"] = 5
        writer.changed()  # something to write promptly takes the routine change along
        await asyncio.sleep(0.15)
        assert rec.writes[-1][1] == {"n": 5}
        assert rec.writes[-1][0] - rec.writes[-2][0] < 0.5
    finally:
        await writer.close()


async def test_a_first_routine_change_waits_too_and_goes_with_the_next_prompt_one() -> None:
    # A new instance object's first status (Pending, waiting for offers) is routine: it waits
    # for the relaxed interval from the writer's start, so the agreement's prompt record,
    # which usually follows within it, carries both in one write.
    rec = Recorder()
    writer = StatusWriter(rec.snapshot, rec.patch, 0.01, {"n": 0}, relaxed_interval=0.6)
    writer.start()
    try:
        rec.state["n"] = 1
        writer.changed(routine=True)
        await asyncio.sleep(0.3)
        assert rec.writes == []
        rec.state["n"] = 2
        writer.changed()
        await asyncio.sleep(0.1)
        assert [w[1] for w in rec.writes] == [{"n": 2}]
    finally:
        await writer.close()


async def test_flush_writes_routine_changes_at_once() -> None:
    rec = Recorder()
    writer = StatusWriter(rec.snapshot, rec.patch, 0.01, {"n": 0}, relaxed_interval=30)
    writer.start()
    try:
        rec.state["n"] = 1
        writer.changed(routine=True)
        began = time.monotonic()
        await asyncio.wait_for(writer.flush(), 2)
        assert rec.writes[-1][1] == {"n": 1} and time.monotonic() - began < 1
    finally:
        await writer.close()


async def test_failing_writes_are_reported_and_cleared_by_the_next_success() -> None:
    rec = Recorder()
    writer = StatusWriter(rec.snapshot, rec.patch, 0.01, {"n": 0})
    writer.start()
    try:
        rec.fail = True
        rec.state["n"] = 1
        writer.changed()
        await asyncio.sleep(0.7)
        assert writer.failing_for() >= 0.5
        assert "ConnectionError" in writer.last_error
        assert "unreachable" in writer.last_error
        rec.fail = False
        await asyncio.wait_for(writer.flush(), 15)
        assert writer.failing_for() == 0
    finally:
        await writer.close()
