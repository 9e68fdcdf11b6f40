"""Traffic between the activities of one localnet VPN, and the deploy's `hosts` and `hostname`.

Each activity deployed into a network gets a veth device with its nodeIp on the network's
bridge (a network namespace the local network creates). A server in one activity answers a
client in another by VPN address and by the host name the deploy's `hosts` gave it; an
activity of another network, even on the same addresses, reaches nothing; a node the
requestor removed is cut off until it is added again.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from golem_operator.golem import exescript
from golem_operator.localnet import LocalNetwork
from localnet_fixture import exec_and_wait, localnet, localnet_config, negotiate, yagna

__all__ = ["localnet", "yagna"]

PORT = 8000
THREE_PROVIDERS = localnet_config(providers=[{"count": 3, "name_prefix": "prov"}])
# Serves a page naming the sandbox's host name, bound to the address its name resolves to.
SERVE = (
    "mkdir -p /golem/work/www && hostname > /golem/work/www/index.html && cd /golem/work/www "
    f'&& nohup python3 -m http.server -b "$(hostname)" {PORT} >../http.log 2>&1 &'
)
# Fetches a URL (argument 1) within a short time; prints the page or the error.
FETCH = (
    "import sys, urllib.request\n"
    "try:\n"
    "    print(urllib.request.urlopen(sys.argv[1], timeout=2).read().decode().strip())\n"
    "except Exception as error:\n"
    "    print('unreachable:', type(error).__name__)\n"
)


async def create_network(yagna: httpx.AsyncClient, ip: str) -> dict[str, Any]:
    created = await yagna.post("/net-api/v1/net", json={"ip": ip, "mask": "255.255.255.0"})
    assert created.status_code == 200, created.text
    network: dict[str, Any] = created.json()
    return network


def net_entry(network: dict[str, Any], node_ip: str) -> dict[str, Any]:
    return {
        "id": network["id"],
        "ip": network["ip"].split("/")[0],
        "mask": network["mask"],
        "gateway": network["gateway"],
        "nodeIp": node_ip,
        "nodes": {},
    }


async def deployed(
    yagna: httpx.AsyncClient,
    network: dict[str, Any],
    ip: str,
    name: str,
    hosts: dict[str, str],
    provider: str,
) -> tuple[str, str]:
    """An activity on `provider` in the network at `ip`, named `name`, serving its name;
    returns its activity id and provider node id."""
    deal = await negotiate(yagna, provider=provider)
    agreement = (await yagna.get(f"/market-api/v1/agreements/{deal.agreement_id}")).json()
    node_id = agreement["offer"]["providerId"]
    added = await yagna.post(
        f"/net-api/v1/net/{network['id']}/nodes", json={"id": node_id, "ip": ip}
    )
    assert added.status_code == 200, added.text
    created = await yagna.post("/activity-api/v1/activity", json={"agreementId": deal.agreement_id})
    activity_id: str = created.json()["activityId"]
    deploy = exescript.deploy(net=[net_entry(network, ip)], hosts=hosts, hostname=name)
    script = [deploy, exescript.start(), exescript.run("/bin/sh", ["-c", SERVE])]
    results = await exec_and_wait(yagna, activity_id, script)
    assert [r["result"] for r in results] == ["Ok"] * len(script), results
    return activity_id, node_id


async def fetch(yagna: httpx.AsyncClient, activity_id: str, url: str) -> str:
    results = await exec_and_wait(
        yagna, activity_id, [exescript.run("/usr/bin/python3", ["-c", FETCH, url])]
    )
    assert results[-1]["result"] == "Ok", results
    return str(results[-1]["stdout"]).strip()


async def fetch_when_up(yagna: httpx.AsyncClient, activity_id: str, url: str) -> str:
    """The servers start in the background: ask again (bounded) until one answers."""
    answer = ""
    for _ in range(30):
        answer = await fetch(yagna, activity_id, url)
        if not answer.startswith("unreachable"):
            return answer
    raise AssertionError(f"{url} never answered: {answer}")


@pytest.mark.parametrize("localnet", [THREE_PROVIDERS], indirect=True)
async def test_activities_of_one_network_reach_each_other_by_address_and_name(
    localnet: LocalNetwork, yagna: httpx.AsyncClient
) -> None:
    network = await create_network(yagna, "192.168.60.0")
    hosts = {"alpha": "192.168.60.2", "beta": "192.168.60.3"}
    # Deployed at the same time: both join the one bridge of the network.
    (alpha, alpha_node), (beta, _) = await asyncio.gather(
        deployed(yagna, network, "192.168.60.2", "alpha", hosts, "prov-1"),
        deployed(yagna, network, "192.168.60.3", "beta", hosts, "prov-2"),
    )

    # Each way, by host name and by address.
    assert await fetch_when_up(yagna, beta, f"http://alpha:{PORT}/") == "alpha"
    assert await fetch_when_up(yagna, alpha, f"http://192.168.60.3:{PORT}/") == "beta"
    assert await fetch(yagna, alpha, f"http://beta:{PORT}/") == "beta"

    # The sandbox's /etc/hosts and host name come from the deploy.
    shown = await exec_and_wait(
        yagna, beta, [exescript.run("/bin/sh", ["-c", "hostname; cat /etc/hosts"])]
    )
    lines = str(shown[-1]["stdout"]).splitlines()
    assert lines[0] == "beta"
    assert "192.168.60.2\talpha" in lines and "192.168.60.3\tbeta" in lines

    # Another network on the same addresses is another segment: its activity reaches
    # nothing of the first network.
    other = await create_network(yagna, "192.168.60.0")
    hosts_there = {**hosts, "gamma": "192.168.60.4"}
    gamma, _ = await deployed(yagna, other, "192.168.60.4", "gamma", hosts_there, "prov-3")
    assert (await fetch(yagna, gamma, f"http://192.168.60.2:{PORT}/")).startswith("unreachable")
    assert (await fetch(yagna, gamma, f"http://alpha:{PORT}/")).startswith("unreachable")
    # ...while it answers itself on its own address.
    assert await fetch_when_up(yagna, gamma, f"http://192.168.60.4:{PORT}/") == "gamma"

    # A node the requestor removed is cut off (as yagna stops routing to it); added again,
    # it answers again.
    removed = await yagna.delete(f"/net-api/v1/net/{network['id']}/nodes/{alpha_node}")
    assert removed.status_code == 200
    assert (await fetch(yagna, beta, f"http://alpha:{PORT}/")).startswith("unreachable")
    added = await yagna.post(
        f"/net-api/v1/net/{network['id']}/nodes", json={"id": alpha_node, "ip": "192.168.60.2"}
    )
    assert added.status_code == 200
    assert await fetch_when_up(yagna, beta, f"http://alpha:{PORT}/") == "alpha"

    # An ended activity's port leaves the bridge; a deleted network's namespace goes.
    segment = localnet.network.vpn.networks[network["id"]].segment
    assert segment is not None and set(segment.ports) == {alpha, beta}
    assert (await yagna.delete(f"/activity-api/v1/activity/{alpha}")).status_code == 200
    assert set(segment.ports) == {beta}
    assert (await fetch(yagna, beta, f"http://alpha:{PORT}/")).startswith("unreachable")
    assert (await yagna.delete(f"/net-api/v1/net/{network['id']}")).status_code == 200
    assert not segment.holder.running


async def test_bad_hosts_fail_the_deploy_naming_the_field(yagna: httpx.AsyncClient) -> None:
    deal = await negotiate(yagna)
    created = await yagna.post("/activity-api/v1/activity", json={"agreementId": deal.agreement_id})
    activity_id = created.json()["activityId"]
    bad = exescript.deploy(hosts={"alpha": "not-an-ip"})
    results = await exec_and_wait(yagna, activity_id, [bad])
    assert results[0]["result"] == "Error"
    assert "deploy.hosts[alpha] must be an IP address" in results[0]["message"]
    injected = exescript.deploy(hosts={"alpha\n1.2.3.4 evil": "192.168.1.2"})
    results = await exec_and_wait(yagna, activity_id, [injected])
    assert "is not a host name" in results[0]["message"]
