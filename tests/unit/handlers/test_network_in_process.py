"""The service network (spec.network) driven by the engine in-process: the local Golem network
(real sandboxes, real bridges) and the fake Kubernetes boundary.

What these pin down: the network is recorded in status before instances join it, and a
restarted engine re-adopts it (no second network) or, if the daemon lost it, creates another;
removing spec.network or changing its cidr rolls the instances and deletes the old network
once none is in it; two instances on one provider keep their addresses when one leaves
(yagna removes every address of a node at once); deletion removes the network.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from fake_kube import FakeKube
from test_rollout_in_process import change_spec
from test_worker_in_process import NS, ROOT, make_engine, running, spec, until

from golem_operator.localnet import LocalNetConfig, LocalNetwork
from localnet_fixture import localnet_config

CIDR = "192.168.40.0/24"


def network_config(providers: int = 4) -> LocalNetConfig:
    return localnet_config(
        subnet_tag="public",
        providers=[{"count": providers, "name_prefix": "prov", "max_agreements": 3}],
        images=[{"tag": "minimal:latest", "path": str(ROOT / "examples/images/minimal")}],
    )


@pytest_asyncio.fixture
async def localnet(request: Any) -> AsyncIterator[LocalNetwork]:
    network = LocalNetwork(getattr(request, "param", None) or network_config())
    await network.start()
    try:
        yield network
    finally:
        await network.stop()


def with_network(replicas: int, cidr: str = CIDR) -> dict[str, Any]:
    body = spec(replicas)
    body["network"] = {"cidr": cidr}
    return body


def status(kube: FakeKube) -> dict[str, Any]:
    found: dict[str, Any] = kube.services[(NS, "web")].get("status") or {}
    return found


def nodes(net: LocalNetwork, network_id: str) -> set[tuple[str, str]]:
    network = net.network.vpn.networks.get(network_id)
    return set() if network is None else {(node, ip) for ip, node in network.nodes.items()}


def joined(kube: FakeKube) -> set[tuple[str, str]]:
    """(provider, address) of the Running instances, as their objects record them."""
    return {
        (b["status"]["provider"]["id"], b["status"]["vpnAddress"])
        for b in running(kube, "web")
        if b["status"].get("vpnAddress")
    }


async def test_the_network_is_recorded_and_readopted_after_a_restart(
    localnet: LocalNetwork,
) -> None:
    kube = FakeKube()
    engine = make_engine(localnet, kube)
    engine.sync(kube.add_service(NS, "web", with_network(2)))
    await until("2 Running", lambda: len(joined(kube)) == 2)
    network = status(kube)["network"]
    assert network["cidr"] == CIDR
    assert set(localnet.network.vpn.networks) == {network["id"]}
    assert nodes(localnet, network["id"]) == joined(kube)
    addresses = sorted(address for _, address in joined(kube))
    assert addresses == ["192.168.40.2", "192.168.40.3"]
    await engine.close()

    engine = make_engine(localnet, kube)
    try:
        engine.sync(await kube.get_service(NS, "web") or {})
        worker = engine.workers[(NS, "web")]
        await until("the network adopted", lambda: worker.network_ready is not None)
        assert worker.network_ready is not None and worker.network_ready.id == network["id"]
        assert set(localnet.network.vpn.networks) == {network["id"]}
        assert sorted(address for _, address in joined(kube)) == addresses
    finally:
        await engine.close()


async def test_a_network_the_daemon_lost_is_created_again(localnet: LocalNetwork) -> None:
    kube = FakeKube()
    engine = make_engine(localnet, kube)
    engine.sync(kube.add_service(NS, "web", with_network(1)))
    await until("Running", lambda: len(joined(kube)) == 1)
    lost = status(kube)["network"]["id"]
    await engine.close()
    await localnet.network.vpn.remove_network(lost)  # a daemon reset, say
    engine = make_engine(localnet, kube)
    try:
        engine.sync(await kube.get_service(NS, "web") or {})
        await until(
            "another network",
            lambda: (status(kube).get("network") or {}).get("id") not in (None, lost),
        )
        assert any(e["reason"] == "NetworkLost" for e in kube.events)
    finally:
        await engine.close()


async def test_removing_the_network_rolls_the_instances_and_deletes_it(
    localnet: LocalNetwork,
) -> None:
    kube = FakeKube()
    engine = make_engine(localnet, kube)
    try:
        engine.sync(kube.add_service(NS, "web", with_network(1)))
        await until("Running in the network", lambda: len(joined(kube)) == 1)
        old = status(kube)["network"]["id"]
        change_spec(engine, kube, "web", {"network": None})
        await until(
            "the network deleted once the rollout is done",
            lambda: old not in localnet.network.vpn.networks,
            60,
        )
        await until("a Running instance without an address", lambda: running(kube, "web"))
        await until("the status forgets it", lambda: status(kube).get("retiredNetworks") == [])
        assert "network" not in status(kube)
        assert all("vpnAddress" not in b["status"] for b in running(kube, "web"))
    finally:
        await engine.close()


async def test_a_new_cidr_gets_a_new_network_while_the_old_one_serves_on(
    localnet: LocalNetwork,
) -> None:
    kube = FakeKube()
    engine = make_engine(localnet, kube)
    try:
        engine.sync(kube.add_service(NS, "web", with_network(1)))
        await until("Running in the network", lambda: len(joined(kube)) == 1)
        old = status(kube)["network"]["id"]
        change_spec(engine, kube, "web", {"network": {"cidr": "10.20.0.0/16"}})
        # The old instance keeps serving in the old network until its successor runs.
        await until("the new network", lambda: status(kube)["network"]["cidr"] == "10.20.0.0/16")
        # Ordinals are the service's: the successor takes the one its predecessor does not
        # hold, in the new network.
        await until(
            "the successor Running in it",
            lambda: {a for _, a in joined(kube)} == {"10.20.0.3"},
            60,
        )
        await until("the old network deleted", lambda: old not in localnet.network.vpn.networks)
        assert set(localnet.network.vpn.networks) == {status(kube)["network"]["id"]}
        await until("the status forgets it", lambda: status(kube).get("retiredNetworks") == [])
    finally:
        await engine.close()


@pytest.mark.parametrize("localnet", [network_config(providers=1)], indirect=True)
async def test_an_instance_leaving_keeps_its_providers_other_addresses(
    localnet: LocalNetwork,
) -> None:
    kube = FakeKube()
    engine = make_engine(localnet, kube)
    try:
        engine.sync(kube.add_service(NS, "web", with_network(2)))
        await until("2 Running", lambda: len(joined(kube)) == 2)
        network = status(kube)["network"]["id"]
        assert len({provider for provider, _ in joined(kube)}) == 1  # both on one provider
        change_spec(engine, kube, "web", {"replicas": 1})
        await until("1 Running", lambda: len(running(kube, "web")) == 1)
        # Removing the leaving instance's node removed both addresses of the provider: the
        # staying one's was added again.
        await until("its address kept", lambda: nodes(localnet, network) == joined(kube))
        assert len(nodes(localnet, network)) == 1
    finally:
        await engine.close()


async def test_deleting_the_service_deletes_its_network(localnet: LocalNetwork) -> None:
    kube = FakeKube()
    engine = make_engine(localnet, kube)
    try:
        body = kube.add_service(NS, "web", with_network(1))
        engine.sync(body)
        await until("Running", lambda: len(joined(kube)) == 1)
        network = status(kube)["network"]["id"]
        assert await engine.delete(copy.deepcopy(kube.services[(NS, "web")]), wait=60)
        assert network not in localnet.network.vpn.networks
    finally:
        await engine.close()
