"""One instance in the service's VPN (spec.network): its ordinal, joining, leaving.

Called by the instance phases: `reserve` while Pending (before renting), `join` while
Starting (before the activity is deployed), `leave` when the instance ends (before its
activity and agreement go). The decisions are in `core.network`; the network itself is the
service worker's (created, recorded in status, deleted).

Node calls on one provider are serialised (`InstanceHost.vpn_lock`): yagna removes every
address of a node at once, so the addresses of the provider's other instances are added
again after a removal, and a removal must not interleave with that.
"""

from __future__ import annotations

from typing import Any

from golem_operator.api.status import Instance, NetworkStatus
from golem_operator.core import network as rules
from golem_operator.core import rollout
from golem_operator.core import transactions as tx
from golem_operator.golem import GolemForbidden, GolemNotFound, deploy_net_entry
from golem_operator.handlers.host import InstanceHost

#: yagna's answers for a network that is gone: 403 while the requestor owns other networks,
#: 404 when it owns none.
NETWORK_GONE = (GolemForbidden, GolemNotFound)


class NetworkUnavailable(Exception):
    """The service's network is not there (yet, or any more) for an instance to join."""


def _wanted(worker: InstanceHost) -> NetworkStatus | None:
    """The recorded network of spec.network, once it may be relied on; raises when the spec
    wants one that is not ready."""
    spec = worker.spec_or_fail
    if spec.network is None:
        return None
    ready = worker.network_ready
    if ready is None or ready.cidr != spec.network.cidr:
        raise NetworkUnavailable(f"the service network {spec.network.cidr} is not ready yet")
    return ready


def reserve(worker: InstanceHost, instance: Instance) -> str | None:
    """Pending: take the instance's ordinal before renting anything; why it must wait, or
    None (also when the service has no network)."""
    try:
        network = _wanted(worker)
    except NetworkUnavailable as waiting:
        return str(waiting)
    if network is None:
        return None
    if instance.ordinal is not None:
        return None
    if not tx.take_ordinal(instance, worker.status.instances, rules.capacity(network.cidr)):
        return f"no free address in spec.network.cidr {network.cidr}"
    worker.touch(instance)
    return None


async def join(worker: InstanceHost, instance: Instance) -> dict[str, Any] | None:
    """Starting: record the instance's address, add its provider node there, and return the
    deploy command's body (`net`, `hosts`, `hostname`); None without a network.

    Raises NetworkUnavailable when the network is not ready or turns out gone (then the
    worker forgets it and creates another).
    """
    network = _wanted(worker)
    if network is None:
        return None
    assert worker.daemon is not None and instance.provider is not None
    if instance.ordinal is None and reserve(worker, instance) is not None:
        raise NetworkUnavailable(f"no free address in spec.network.cidr {network.cidr}")
    tx.join_network(instance, worker.status.instances, worker.name, network)
    assert instance.vpn_address is not None
    # On record before the node is added: a restarted operator knows what to remove.
    await worker.persist(instance)
    net = worker.daemon.client.net
    try:
        async with worker.vpn_lock(network.id, instance.provider.id):
            await net.add_node(network.id, instance.provider.id, instance.vpn_address)
        described = await net.get_network(network.id)
        nodes = {node.ip: node.id for node in await net.list_nodes(network.id)}
    except NETWORK_GONE:
        worker.network_lost(network.id)
        raise NetworkUnavailable(f"the service network {network.id} is gone") from None
    spec = worker.spec_or_fail
    hosts = rules.hosts(
        worker.name,
        network.cidr,
        worker.status.instances,
        spec.replicas,
        rollout.Strategy.of(spec).max_surge,
    )
    worker.log.info(
        "instance %s: joins network %s as %s at %s",
        instance.name,
        network.id,
        instance.hostname,
        instance.vpn_address,
    )
    return {
        "net": [deploy_net_entry(described, instance.vpn_address, nodes)],
        "hosts": hosts,
        "hostname": instance.hostname,
    }


async def leave(worker: InstanceHost, instance: Instance) -> None:
    """The instance ends: its provider node leaves the network, and the addresses of the
    provider's other instances in it are added again. A gone network counts as done."""
    if instance.network_id is None or instance.provider is None or worker.daemon is None:
        return
    worker.vpn_leaving.add(instance.name)
    net = worker.daemon.client.net
    network_id, provider_id = instance.network_id, instance.provider.id
    try:
        async with worker.vpn_lock(network_id, provider_id):
            await net.remove_node(network_id, provider_id)
            staying = rules.co_tenants(worker.status.instances, instance, worker.vpn_leaving)
            for node_id, address in staying:
                await net.add_node(network_id, node_id, address)
    except NETWORK_GONE:
        pass
