"""core.balancing: which instance takes a proxied connection."""

from __future__ import annotations

from typing import Any

from core_builders import make_instance

from golem_operator.api.status import InstanceState as S
from golem_operator.core.balancing import Backend, backends, choose

NET = "a" * 32


def joined(name: str, state: S, address: str | None, **fields: Any) -> Any:
    return make_instance(name, state, vpnAddress=address, networkId=NET, **fields)


def test_only_running_instances_with_an_address_not_asked_to_stop_take_connections() -> None:
    instances = [
        joined("s-1", S.RUNNING, "192.168.0.2"),
        joined("s-2", S.STARTING, "192.168.0.3"),
        joined("s-3", S.RUNNING, None),
        joined("s-4", S.RUNNING, "192.168.0.5", stoppingReason="InstanceDeleted"),
        joined("s-5", S.STOPPING, "192.168.0.6"),
        joined("s-6", S.TERMINATED, "192.168.0.7"),
        make_instance("s-7", S.RUNNING, vpnAddress="192.168.0.8"),  # no network recorded
        joined("s-0", S.RUNNING, "192.168.0.9"),
    ]
    assert backends(instances) == [
        Backend("s-0", NET, "192.168.0.9"),
        Backend("s-1", NET, "192.168.0.2"),
    ]


def test_the_instance_with_the_fewest_open_connections_wins() -> None:
    pool = [Backend("a", NET, "10.0.0.2"), Backend("b", NET, "10.0.0.3")]
    for turn in range(4):
        assert choose(pool, {"a": 3, "b": 1}, set(), turn) == pool[1]


def test_equals_are_taken_in_turn() -> None:
    pool = [Backend(n, NET, f"10.0.0.{i}") for i, n in enumerate(["c", "a", "b"], start=2)]
    picked = [choose(pool, {}, set(), turn) for turn in range(6)]
    assert [b.instance for b in picked if b] == ["a", "b", "c", "a", "b", "c"]


def test_a_connection_tries_each_instance_once_then_gives_up() -> None:
    pool = [Backend("a", NET, "10.0.0.2"), Backend("b", NET, "10.0.0.3")]
    first = choose(pool, {}, set(), 0)
    assert first is not None
    second = choose(pool, {}, {first.instance}, 1)
    assert second is not None and second.instance != first.instance
    assert choose(pool, {}, {"a", "b"}, 2) is None
    assert choose([], {}, set(), 0) is None


def test_a_tried_instance_is_skipped_even_when_least_loaded() -> None:
    pool = [Backend("a", NET, "10.0.0.2"), Backend("b", NET, "10.0.0.3")]
    assert choose(pool, {"b": 5}, {"a"}, 0) == pool[1]
