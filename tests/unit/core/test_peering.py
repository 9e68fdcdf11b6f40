"""core.peering.may_act: kopf's pause rule, applied to a peering object's status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from golem_operator.core.peering import may_act

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def peer(priority: int, seen_ago: float = 1.0, lifetime: int = 60) -> dict[str, object]:
    seen = NOW - timedelta(seconds=seen_ago)
    return {"priority": priority, "lifetime": lifetime, "lastseen": seen.isoformat()}


def test_alone_and_announced_acts() -> None:
    assert may_act({"me": peer(100)}, "me", 100, NOW)


def test_not_announced_yet_waits() -> None:
    assert not may_act({}, "me", 100, NOW)
    assert not may_act({"other": peer(10)}, "me", 100, NOW)


def test_a_live_higher_priority_peer_pauses() -> None:
    assert not may_act({"me": peer(100), "b": peer(200)}, "me", 100, NOW)


def test_a_live_peer_of_the_same_priority_pauses_both() -> None:
    assert not may_act({"me": peer(100), "b": peer(100)}, "me", 100, NOW)


def test_lower_priority_peers_do_not_pause() -> None:
    assert may_act({"me": peer(200), "a": peer(100)}, "me", 200, NOW)


def test_a_dead_peer_does_not_pause() -> None:
    assert may_act({"me": peer(100), "b": peer(200, seen_ago=61, lifetime=60)}, "me", 100, NOW)


def test_garbage_entries_are_no_peers() -> None:
    assert may_act({"me": peer(100), "b": {"priority": "x", "lastseen": "never"}}, "me", 100, NOW)
