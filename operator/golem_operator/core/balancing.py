"""Which instance a connection to spec.ports goes to. Pure.

Called by the operator's proxy (handlers/proxy.py) for each accepted connection, and again
when the tunnel to the chosen instance cannot be opened. Only Running instances that hold a
VPN address and were not asked to stop take new connections (one being stopped drains: its
open connections go on until it ends); among them the one with the fewest open connections
of this service wins, ties taken in turn.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from golem_operator.api.status import Instance, InstanceState


@dataclass(frozen=True)
class Backend:
    """An instance that can take connections: where its tunnel goes."""

    instance: str
    network_id: str
    address: str


def backends(instances: Iterable[Instance]) -> list[Backend]:
    """The instances that take new connections, by name."""
    found = [
        Backend(i.name, i.network_id, i.vpn_address)
        for i in instances
        if i.state is InstanceState.RUNNING
        and not i.stopping_reason
        and i.vpn_address
        and i.network_id
    ]
    return sorted(found, key=lambda b: b.instance)


def choose(
    candidates: Iterable[Backend],
    open_connections: Mapping[str, int],
    tried: Collection[str],
    turn: int,
) -> Backend | None:
    """The backend for a connection: least open connections among those not tried yet for
    it; among equals, the `turn`-th (the caller advances `turn` per choice: round robin).
    None when every candidate was tried."""
    left = sorted((b for b in candidates if b.instance not in tried), key=lambda b: b.instance)
    if not left:
        return None
    fewest = min(open_connections.get(b.instance, 0) for b in left)
    tied = [b for b in left if open_connections.get(b.instance, 0) == fewest]
    return tied[turn % len(tied)]
