"""The service's VPN (spec.network): ordinals, addresses, host names, and the network's fate.
Pure.

Called by the service worker (which network to create, retire or delete) and by the instance
phases (an instance's ordinal when it looks for a provider, its address when it joins, the
deploy's `hosts`, the nodes to put back after a node is removed). Names are stable:

- an instance holds an ordinal from the moment it looks for a provider until it is
  Terminated: the lowest one no other live instance holds, as a StatefulSet numbers its Pods,
  so a replacement takes over the ordinal of the instance it replaces;
- its address is the gateway + 1 + ordinal (the gateway is the network's first address and
  the operator's own), its host name `<service>-<ordinal>`;
- every instance's deploy names every ordinal up to replicas + maxSurge (or the highest held),
  so an instance reaches those started after it by name.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from golem_operator.api.status import Instance, NetworkStatus
from golem_operator.api.status import InstanceState as S

#: States in which an instance's provider node is (or is about to be) in the network.
_JOINED = frozenset({S.STARTING, S.RUNNING, S.STOPPING})


def network_of(cidr: str) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(cidr, strict=True)


def gateway(cidr: str) -> ipaddress.IPv4Address:
    """The network's first address: yagna's default gateway and the requestor's address."""
    return network_of(cidr).network_address + 1


def capacity(cidr: str) -> int:
    """How many instance addresses the network holds (not the network, gateway, broadcast)."""
    return max(network_of(cidr).num_addresses - 3, 0)


def address(cidr: str, ordinal: int) -> str:
    """The address of the instance holding `ordinal`: gateway + 1 + ordinal."""
    if not 0 <= ordinal < capacity(cidr):
        raise ValueError(f"ordinal {ordinal} does not fit in {cidr}")
    return str(gateway(cidr) + 1 + ordinal)


def hostname(service: str, ordinal: int) -> str:
    return f"{service}-{ordinal}"


def holds_ordinal(instance: Instance) -> bool:
    """An instance keeps its ordinal until it is Terminated (its node removed by then)."""
    return instance.ordinal is not None and instance.state is not S.TERMINATED


def free_ordinal(instances: Iterable[Instance], limit: int) -> int | None:
    """The lowest ordinal below `limit` no live instance holds; None when all are taken."""
    held = {i.ordinal for i in instances if holds_ordinal(i)}
    return next((n for n in range(limit) if n not in held), None)


def hosts(
    service: str, cidr: str, instances: Iterable[Instance], replicas: int, max_surge: int
) -> dict[str, str]:
    """The deploy's `hosts`: `<service>-<n>` -> address for every ordinal up to replicas +
    maxSurge and up to the highest one held, within the network."""
    held = [i.ordinal for i in instances if holds_ordinal(i) and i.ordinal is not None]
    count = min(max(replicas + max_surge, max(held, default=-1) + 1), capacity(cidr))
    return {hostname(service, n): address(cidr, n) for n in range(count)}


def shortfall(cidr: str, replicas: int, max_surge: int) -> str | None:
    """Why the network is too small for the instances the spec may hold at once, or None."""
    room = capacity(cidr)
    needed = replicas + max_surge
    if needed <= room:
        return None
    return (
        f"spec.network.cidr {cidr} holds {room} instance addresses; replicas ({replicas}) plus "
        f"maxSurge ({max_surge}) need {needed}: instances beyond it wait for an address"
    )


def co_tenants(
    instances: Iterable[Instance], leaving: Instance, departing: Iterable[str] = ()
) -> list[tuple[str, str]]:
    """(provider node, address) of the other instances in the leaving one's network on the
    same provider: removing a node id removes every address of that node, so these are
    added again after it. Instances `departing` (leaving too) are not."""
    if leaving.provider is None or leaving.network_id is None:
        return []
    gone = {leaving.name, *departing}
    return [
        (i.provider.id, i.vpn_address)
        for i in instances
        if i.name not in gone
        and i.state in _JOINED
        and i.network_id == leaving.network_id
        and i.provider is not None
        and i.provider.id == leaving.provider.id
        and i.vpn_address is not None
    ]


def in_use(instances: Iterable[Instance], network_id: str) -> bool:
    """Whether a live instance may still have its node in the network."""
    return any(i.network_id == network_id and i.state is not S.TERMINATED for i in instances)


@dataclass(frozen=True)
class NetworkPlan:
    """What to do with the service's networks in this pass, in this order."""

    #: Move status.network to the retired ones (not wanted any more, or another cidr).
    retire: bool = False
    #: Delete these retired networks (no live instance is in them); "already gone" is done.
    delete: list[str] = field(default_factory=list)
    #: Create a network on this cidr (after the retirement is written).
    create: str | None = None


def plan_network(
    wanted: str | None,
    current: NetworkStatus | None,
    retired: list[NetworkStatus],
    instances: list[Instance],
) -> NetworkPlan:
    """The network actions that bring the recorded networks to `wanted` (a cidr, or None
    when the spec has no network or the service is being deleted)."""
    retire = current is not None and current.cidr != wanted
    leaving = [*retired, current] if retire and current is not None else list(retired)
    delete = [n.id for n in leaving if not in_use(instances, n.id)]
    create = wanted if wanted is not None and (current is None or retire) else None
    return NetworkPlan(retire=retire, delete=delete, create=create)
