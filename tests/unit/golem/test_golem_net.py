"""Net API calls: the paths, bodies and parsing of `GolemClient.net`, and the deploy entry."""

from __future__ import annotations

import httpx
import pytest
from golem_fakes import FakeDaemon, json_reply

from golem_operator.golem import (
    GolemClient,
    GolemForbidden,
    Network,
    NetworkAddress,
    NetworkNode,
    deploy_net_entry,
    exescript,
)

N = "/net-api/v1"
NET_ID = "df4ed1ae3de94cfb8c14a7c92f22c34a"
NETWORK = {"id": NET_ID, "ip": "192.168.8.0/24", "mask": "255.255.255.0", "gateway": "192.168.8.1"}


async def test_create_network_sends_only_what_was_given(
    daemon: FakeDaemon, client: GolemClient
) -> None:
    daemon.route("POST", f"{N}/net", json_reply(200, NETWORK))
    created = await client.net.create_network("192.168.8.0")
    assert created == Network(**NETWORK)
    assert daemon.last_json() == {"ip": "192.168.8.0"}
    await client.net.create_network("192.168.8.0", "255.255.255.0", "192.168.8.1")
    assert daemon.last_json() == {
        "ip": "192.168.8.0",
        "mask": "255.255.255.0",
        "gateway": "192.168.8.1",
    }


async def test_bad_addresses_are_refused_before_sending(
    daemon: FakeDaemon, client: GolemClient
) -> None:
    with pytest.raises(ValueError, match="not-an-ip"):
        await client.net.create_network("not-an-ip")
    with pytest.raises(ValueError):
        await client.net.add_node(NET_ID, "0x" + "11" * 20, "192.168.8.300")
    with pytest.raises(ValueError, match="port"):
        client.net.tcp_url(NET_ID, "192.168.8.2", 0)
    assert daemon.requests == []


async def test_nodes_addresses_and_removal_use_the_networks_paths(
    daemon: FakeDaemon, client: GolemClient
) -> None:
    node = "0x" + "ab" * 20
    daemon.route("POST", f"{N}/net/{NET_ID}/nodes", json_reply(200, None))
    daemon.route(
        "GET", f"{N}/net/{NET_ID}/nodes", json_reply(200, [{"id": node, "ip": "192.168.8.2"}])
    )
    daemon.route("DELETE", f"{N}/net/{NET_ID}/nodes/{node}", json_reply(200, None))
    daemon.route("GET", f"{N}/net/{NET_ID}/addresses", json_reply(200, [{"ip": "192.168.8.1/24"}]))
    daemon.route("POST", f"{N}/net/{NET_ID}/addresses", json_reply(200, None))
    daemon.route("DELETE", f"{N}/net/{NET_ID}", json_reply(200, None))

    await client.net.add_node(NET_ID, node, "192.168.8.2")
    assert daemon.last_json() == {"id": node, "ip": "192.168.8.2"}
    assert await client.net.list_nodes(NET_ID) == [NetworkNode(id=node, ip="192.168.8.2")]
    await client.net.remove_node(NET_ID, node)
    assert await client.net.list_addresses(NET_ID) == [NetworkAddress(ip="192.168.8.1/24")]
    await client.net.add_address(NET_ID, "192.168.8.7")
    assert daemon.last_json() == {"ip": "192.168.8.7"}
    await client.net.delete_network(NET_ID)
    assert daemon.last.headers["Authorization"].startswith("Bearer ")


async def test_forbidden_network_is_golem_forbidden(
    daemon: FakeDaemon, client: GolemClient
) -> None:
    daemon.route("GET", f"{N}/net/{NET_ID}", httpx.Response(403))
    with pytest.raises(GolemForbidden):
        await client.net.get_network(NET_ID)


def test_tcp_url_has_no_key_and_follows_the_scheme(client: GolemClient) -> None:
    url = client.net.tcp_url(NET_ID, "192.168.8.2", 8080)
    assert url == f"ws://127.0.0.1:7465{N}/net/{NET_ID}/tcp/192.168.8.2/8080"


def test_deploy_entry_is_what_the_sdks_send() -> None:
    network = Network(**NETWORK)
    entry = deploy_net_entry(network, "192.168.8.2", {"192.168.8.3": "0x" + "cd" * 20})
    assert entry == {
        "id": NET_ID,
        "ip": "192.168.8.0",
        "mask": "255.255.255.0",
        "gateway": "192.168.8.1",
        "nodeIp": "192.168.8.2",
        "nodes": {"192.168.8.3": "0x" + "cd" * 20},
    }
    assert exescript.deploy(net=[entry]) == {"deploy": {"net": [entry]}}
