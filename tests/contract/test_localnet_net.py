"""The localnet's VPN: a deploy with `net` entries, and the TCP websocket into the activity.

A start script runs a TCP server inside the activity's sandbox (its own network namespace);
the requestor reaches it only through `/net-api/v1/net/{id}/tcp/{ip}/{port}`, with the
project's client (`GolemClient.net.open_tcp`). The VPN addresses exist only inside the
sandboxes' namespaces.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from golem_operator.golem import (
    GolemClient,
    GolemConfig,
    GolemForbidden,
    GolemTimeout,
    Network,
    TcpTunnel,
    deploy_net_entry,
    exescript,
)
from golem_operator.localnet import LocalNetwork
from localnet_fixture import exec_and_wait, localnet, negotiate, yagna

__all__ = ["localnet", "yagna"]

PORT = 8080
# The start script: a TCP server in the background, bound to the VPN address only, that
# answers each connection with a line naming the activity and echoing what it was sent.
SERVER = (
    "import socket, sys\n"
    "server = socket.create_server((sys.argv[1], int(sys.argv[2])))\n"
    "name = sys.argv[3].encode()\n"
    "while True:\n"
    "    conn, _ = server.accept()\n"
    "    with conn:\n"
    "        data = conn.recv(1024)\n"
    "        conn.sendall(b'hello from ' + name + b': ' + data)\n"
)


@pytest.fixture
async def client(localnet: LocalNetwork) -> AsyncIterator[GolemClient]:
    assert localnet.url is not None
    async with GolemClient(GolemConfig(url=localnet.url, app_key=localnet.app_key)) as client:
        yield client


async def deployed_in(
    yagna: httpx.AsyncClient, client: GolemClient, network: Network, ip: str, name: str
) -> tuple[str, str]:
    """Agree with a provider, add its node at `ip`, deploy into the network, start the
    server (the start script); returns the activity id and the provider's node id."""
    deal = await negotiate(yagna)
    agreement = await client.market.get_agreement(deal.agreement_id)
    provider_id = agreement.offer.provider_id
    await client.net.add_node(network.id, provider_id, ip)
    nodes = {n.ip: n.id for n in await client.net.list_nodes(network.id)}
    created = await yagna.post("/activity-api/v1/activity", json={"agreementId": deal.agreement_id})
    activity_id: str = created.json()["activityId"]
    script = [
        exescript.deploy(net=[deploy_net_entry(network, ip, nodes)]),
        exescript.start(),
        # The script and its arguments go as sh's positional parameters: no quoting.
        exescript.run(
            "/bin/sh",
            [
                "-c",
                'nohup python3 -c "$1" "$2" "$3" "$4" >/golem/work/server.log 2>&1 &',
                "sh",
                SERVER,
                ip,
                str(PORT),
                name,
            ],
        ),
    ]
    results = await exec_and_wait(yagna, activity_id, script)
    assert [r["result"] for r in results] == ["Ok"] * len(script), results
    return activity_id, provider_id


async def ask(tunnel: TcpTunnel, text: bytes) -> bytes:
    await tunnel.send(text)
    answer = b""
    while chunk := await tunnel.receive(timeout=10):
        answer += chunk
    return answer


async def open_when_listening(client: GolemClient, network: Network, ip: str) -> TcpTunnel:
    """The server starts in the background: retry (bounded) until it accepts."""
    for _ in range(100):
        try:
            return await client.net.open_tcp(network.id, ip, PORT, timeout=10)
        except GolemTimeout:
            await asyncio.sleep(0.1)
    raise AssertionError(f"nothing listens on {ip}:{PORT} after 10 s")


async def test_tcp_websocket_reaches_the_server_a_start_script_started(
    yagna: httpx.AsyncClient, client: GolemClient
) -> None:
    network = await client.net.create_network("192.168.50.0", "255.255.255.0")
    first, _ = await deployed_in(yagna, client, network, "192.168.50.2", "first")
    _, second_provider = await deployed_in(yagna, client, network, "192.168.50.3", "second")

    async with await open_when_listening(client, network, "192.168.50.2") as tunnel:
        assert await ask(tunnel, b"ping 1") == b"hello from first: ping 1"
    async with await open_when_listening(client, network, "192.168.50.3") as tunnel:
        assert await ask(tunnel, b"ping 2") == b"hello from second: ping 2"
    # Connections are independent: two at once, each to its own activity.
    async with (
        await client.net.open_tcp(network.id, "192.168.50.2", PORT) as one,
        await client.net.open_tcp(network.id, "192.168.50.3", PORT) as two,
    ):
        answers = await asyncio.gather(ask(one, b"a"), ask(two, b"b"))
    assert answers == [b"hello from first: a", b"hello from second: b"]
    audit = (await yagna.get("/_localnet/audit")).json()
    assert audit["tunnelsOpened"] == 4
    (listed,) = [n for n in audit["networks"] if n["id"] == network.id]
    assert sorted(n["ip"] for n in listed["nodes"]) == ["192.168.50.2", "192.168.50.3"]

    # Nothing listens on another port of the activity; no node at an address; no network.
    with pytest.raises(GolemTimeout):
        await client.net.open_tcp(network.id, "192.168.50.2", PORT + 1)
    with pytest.raises(GolemTimeout):
        await client.net.open_tcp(network.id, "192.168.50.9", PORT)
    with pytest.raises(GolemForbidden):
        await client.net.open_tcp("deadbeef", "192.168.50.2", PORT)

    # The activity's address belongs to its sandbox alone: once it is destroyed, or its node
    # removed from the network, nothing answers there.
    assert (await yagna.delete(f"/activity-api/v1/activity/{first}")).status_code == 200
    with pytest.raises(GolemTimeout):
        await client.net.open_tcp(network.id, "192.168.50.2", PORT)
    await client.net.remove_node(network.id, second_provider)
    with pytest.raises(GolemTimeout):
        await client.net.open_tcp(network.id, "192.168.50.3", PORT)


async def test_deploy_with_bad_net_entry_fails_naming_the_field(
    yagna: httpx.AsyncClient, client: GolemClient
) -> None:
    network = await client.net.create_network("192.168.51.0")
    deal = await negotiate(yagna)
    created = await yagna.post("/activity-api/v1/activity", json={"agreementId": deal.agreement_id})
    activity_id = created.json()["activityId"]
    outside = deploy_net_entry(network, "192.168.52.2")
    results = await exec_and_wait(yagna, activity_id, [exescript.deploy(net=[outside])])
    assert results[0]["result"] == "Error"
    assert "deploy.net[0].nodeIp 192.168.52.2 is outside 192.168.51.0/24" in results[0]["message"]


async def test_http_server_on_all_addresses_answers_through_the_tunnel(
    yagna: httpx.AsyncClient, client: GolemClient
) -> None:
    network = await client.net.create_network("192.168.53.0")
    deal = await negotiate(yagna)
    agreement = await client.market.get_agreement(deal.agreement_id)
    await client.net.add_node(network.id, agreement.offer.provider_id, "192.168.53.2")
    created = await yagna.post("/activity-api/v1/activity", json={"agreementId": deal.agreement_id})
    activity_id = created.json()["activityId"]
    page = "served from inside the activity"
    script = [
        exescript.deploy(net=[deploy_net_entry(network, "192.168.53.2")]),
        exescript.start(),
        exescript.transfer(f"data:,{page}", "container:/golem/work/www/index.html"),
        exescript.run(
            "/bin/sh",
            [
                "-c",
                "cd /golem/work/www && nohup python3 -m http.server 8000 >../http.log 2>&1 &",
            ],
        ),
    ]
    results = await exec_and_wait(yagna, activity_id, script)
    assert [r["result"] for r in results] == ["Ok"] * len(script), results
    for _ in range(100):
        try:
            tunnel = await client.net.open_tcp(network.id, "192.168.53.2", 8000)
            break
        except GolemTimeout:
            await asyncio.sleep(0.1)
    else:
        raise AssertionError("http.server did not listen within 10 s")
    async with tunnel:
        answer = await ask(tunnel, b"GET /index.html HTTP/1.0\r\nHost: vpn\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200 OK"), head
    assert body.decode() == page
