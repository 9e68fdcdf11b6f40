"""The net API (requestor VPNs) through `GolemClient.net`, against the real yagna 0.17.6 and the
localnet with the same assertions.

Expectations are what the real daemon does offline (probed in its loopback-only namespace);
where the localnet differs, the localnet is wrong. The VPN addresses below exist only as data
in the daemons: no packet is sent to them here (the localnet's tunnel into a sandbox is tested
in test_localnet_net.py).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator

import aiohttp
import pytest

from golem_operator.golem import (
    GolemBadRequest,
    GolemClient,
    GolemForbidden,
    GolemNotFound,
    GolemTimeout,
    Network,
    NetworkNode,
)
from support.yagna_contract import ContractDaemon


def node_id() -> str:
    return "0x" + secrets.token_hex(20)


@pytest.fixture
async def client(golem_daemon: ContractDaemon) -> AsyncIterator[GolemClient]:
    async with golem_daemon.client() as client:
        yield client


@pytest.fixture
async def network(client: GolemClient) -> AsyncIterator[Network]:
    created = await client.net.create_network("192.168.30.0", "255.255.255.0")
    yield created
    await client.net.delete_network(created.id)


async def test_create_network_defaults_mask_and_gateway(client: GolemClient) -> None:
    given_all = await client.net.create_network("192.168.31.0", "255.255.255.0", "192.168.31.9")
    only_ip = await client.net.create_network("192.168.32.0")
    with_prefix = await client.net.create_network("192.168.33.0/24")
    try:
        assert re.fullmatch(r"[0-9a-f]{32}", given_all.id)
        assert (given_all.ip, given_all.mask, given_all.gateway) == (
            "192.168.31.0/24",
            "255.255.255.0",
            "192.168.31.9",
        )
        # Without a mask: /24; without a gateway: the first address.
        assert (only_ip.ip, only_ip.mask, only_ip.gateway) == (
            "192.168.32.0/24",
            "255.255.255.0",
            "192.168.32.1",
        )
        assert (with_prefix.ip, with_prefix.gateway) == ("192.168.33.0/24", "192.168.33.1")
        assert len({given_all.id, only_ip.id, with_prefix.id}) == 3
        listed = await client.net.list_networks()
        ours = [n for n in listed if n.id in {given_all.id, only_ip.id, with_prefix.id}]
        assert sorted(ours, key=lambda n: n.id) == sorted(
            [given_all, only_ip, with_prefix], key=lambda n: n.id
        )
        assert [n.id for n in listed] == sorted(n.id for n in listed)  # listed by id
        assert await client.net.get_network(only_ip.id) == only_ip
    finally:
        for created in (given_all, only_ip, with_prefix):
            await client.net.delete_network(created.id)


async def test_bad_network_ip_is_refused_naming_it(client: GolemClient) -> None:
    with pytest.raises(GolemBadRequest) as refused:
        await client._requester.request("POST", "/net-api/v1/net", body={"ip": "not-an-ip"})
    assert refused.value.message == "Invalid IP address: invalid IP address syntax"


async def test_missing_ip_is_a_json_error(client: GolemClient) -> None:
    with pytest.raises(GolemBadRequest) as refused:
        await client._requester.request("POST", "/net-api/v1/net", body={})
    assert "Json deserialize error: missing field `ip`" in refused.value.message


async def test_requestor_address_is_the_gateway_and_more_can_be_added(
    client: GolemClient, network: Network
) -> None:
    assert [a.ip for a in await client.net.list_addresses(network.id)] == ["192.168.30.1/24"]
    await client.net.add_address(network.id, "192.168.30.7")
    await client.net.add_address(network.id, "192.168.30.7")  # again: no second entry
    assert [a.ip for a in await client.net.list_addresses(network.id)] == [
        "192.168.30.1/24",
        "192.168.30.7/24",
    ]


async def test_nodes_are_added_listed_and_removed(client: GolemClient, network: Network) -> None:
    first, second, third = node_id(), node_id(), node_id()
    assert await client.net.list_nodes(network.id) == []
    await client.net.add_node(network.id, first, "192.168.30.2")
    await client.net.add_node(network.id, second, "192.168.30.3")
    await client.net.add_node(network.id, first, "192.168.30.4")  # a node may have two
    await client.net.add_node(network.id, third, "192.168.30.3")  # taken: silently ignored
    nodes = await client.net.list_nodes(network.id)
    assert sorted(nodes, key=lambda n: n.ip) == [
        NetworkNode(id=first, ip="192.168.30.2"),
        NetworkNode(id=second, ip="192.168.30.3"),
        NetworkNode(id=first, ip="192.168.30.4"),
    ]
    await client.net.remove_node(network.id, first)  # every address of the node
    assert await client.net.list_nodes(network.id) == [NetworkNode(id=second, ip="192.168.30.3")]
    await client.net.remove_node(network.id, first)  # again: fine
    await client.net.remove_node(network.id, node_id())  # never added: fine


async def test_node_outside_the_network_is_refused(client: GolemClient, network: Network) -> None:
    with pytest.raises(GolemBadRequest) as refused:
        await client.net.add_node(network.id, node_id(), "192.168.99.4")
    assert refused.value.message == "Invalid network IP address: 192.168.99.4"
    assert await client.net.list_nodes(network.id) == []


async def test_unknown_network_is_not_found_or_forbidden(client: GolemClient) -> None:
    # yagna checks ownership first: with no network at all, an unknown id is "Network not
    # found" (404); once the requestor owns one, any other id is Forbidden (403, no body).
    for stale in await client.net.list_networks():
        await client.net.delete_network(stale.id)
    for call in (
        client.net.get_network("deadbeef"),
        client.net.delete_network("deadbeef"),
        client.net.list_nodes("deadbeef"),
        client.net.list_addresses("deadbeef"),
        client.net.add_node("deadbeef", node_id(), "192.168.34.2"),
    ):
        with pytest.raises(GolemNotFound) as missing:
            await call
        assert missing.value.message == "Network not found"
    kept = await client.net.create_network("192.168.34.0")
    gone = await client.net.create_network("192.168.35.0")
    await client.net.delete_network(gone.id)
    try:
        for network_id in (gone.id, "deadbeef"):
            for call in (
                client.net.get_network(network_id),
                client.net.delete_network(network_id),
                client.net.list_nodes(network_id),
                client.net.add_node(network_id, node_id(), "192.168.35.2"),
            ):
                with pytest.raises(GolemForbidden):
                    await call
        assert [n.id for n in await client.net.list_networks()] == [kept.id]
    finally:
        await client.net.delete_network(kept.id)


async def test_network_keeps_the_given_ip_and_a_prefix_beats_the_mask(
    client: GolemClient,
) -> None:
    inside = await client.net.create_network("192.168.36.5", "255.255.0.0")
    prefixed = await client.net.create_network("192.168.37.0/16", "255.255.255.0")
    try:
        assert (inside.ip, inside.mask, inside.gateway) == (
            "192.168.36.5/16",
            "255.255.0.0",
            "192.168.0.1",
        )
        assert (prefixed.ip, prefixed.mask) == ("192.168.37.0/16", "255.255.0.0")
    finally:
        await client.net.delete_network(inside.id)
        await client.net.delete_network(prefixed.id)


async def test_requestor_address_outside_the_network_is_refused(
    client: GolemClient, network: Network
) -> None:
    with pytest.raises(GolemBadRequest) as refused:
        await client.net.add_address(network.id, "192.168.43.2")
    assert refused.value.message == "Network not found for IP address: 192.168.43.2"


async def test_tcp_to_a_node_that_does_not_answer_times_out(
    client: GolemClient, network: Network
) -> None:
    # The node exists in the requestor's network, but no provider deployed it: 504.
    await client.net.add_node(network.id, node_id(), "192.168.30.2")
    with pytest.raises(GolemTimeout) as refused:
        await client.net.open_tcp(network.id, "192.168.30.2", 80, timeout=60)
    assert refused.value.status == 504
    with pytest.raises(GolemForbidden):
        await client.net.open_tcp("deadbeef", "192.168.30.2", 80, timeout=60)


async def test_tcp_websocket_takes_the_key_as_auth_token(
    golem_daemon: ContractDaemon, client: GolemClient, network: Network
) -> None:
    await client.net.add_node(network.id, node_id(), "192.168.30.2")
    url = client.net.tcp_url(network.id, "192.168.30.2", 80)
    statuses = {}
    async with aiohttp.ClientSession() as session:
        for name, key in (("right", golem_daemon.app_key), ("wrong", "not-the-key-at-all")):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(url, params={"authToken": key}, timeout=_ws_timeout())
            statuses[name] = refused.value.status
    # The right key gets through to the (unanswered) tunnel; a wrong one does not.
    assert statuses == {"right": 504, "wrong": 401}


def _ws_timeout() -> aiohttp.ClientWSTimeout:
    return aiohttp.ClientWSTimeout(ws_receive=60, ws_close=10)
