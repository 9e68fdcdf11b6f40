"""The proxy of spec.ports against the local Golem network: real sandboxes, real TCP tunnels.

Two activities join a VPN and each runs a TCP server (started by the script a start script
would run). The proxy's listeners take connections on loopback and carry them through
`/net-api/v1/net/{id}/tcp/{ip}/{port}` to one of them: spread over both, another one when a
tunnel cannot be opened, closed when none is left or nothing moves for the idle timeout, and
one connection's failure never stops the listener.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import httpx
import pytest
import pytest_asyncio

from golem_operator.api.spec import ServicePort
from golem_operator.core.balancing import Backend
from golem_operator.golem import GolemClient, GolemConfig, Network, deploy_net_entry, exescript
from golem_operator.golem.net import NetApi
from golem_operator.handlers.proxy import ProxySettings, ServiceProxy
from golem_operator.localnet import LocalNetwork
from golem_operator.observability import logs, metrics
from localnet_fixture import exec_and_wait, localnet, negotiate, yagna

__all__ = ["localnet", "yagna"]

PORT = 7000
# Answers each connection with a line naming the activity and what it was sent, then closes;
# a connection that sends nothing gets nothing (for the idle timeout).
SERVER = (
    "import socket, sys, threading\n"
    "server = socket.create_server((sys.argv[1], int(sys.argv[2])))\n"
    "name = sys.argv[3].encode()\n"
    "def serve(conn):\n"
    "    with conn:\n"
    "        data = conn.recv(65536)\n"
    "        if data:\n"
    "            conn.sendall(b'hello from ' + name + b': ' + data)\n"
    "while True:\n"
    "    conn, _ = server.accept()\n"
    "    threading.Thread(target=serve, args=(conn,), daemon=True).start()\n"
)


@dataclass
class Host:
    """The proxy's view of a service: the backends the test says are Running."""

    net: NetApi | None
    namespace: str = "team"
    name: str = field(default_factory=lambda: f"web-{uuid.uuid4().hex[:8]}")
    pool: list[Backend] = field(default_factory=list)
    failures: int = 0

    def backends(self) -> list[Backend]:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("a bug while choosing")
        return list(self.pool)

    def net_api(self) -> NetApi | None:
        return self.net


@pytest_asyncio.fixture
async def client(localnet: LocalNetwork) -> AsyncIterator[GolemClient]:
    assert localnet.url is not None
    async with GolemClient(GolemConfig(url=localnet.url, app_key=localnet.app_key)) as client:
        yield client


async def serving(
    yagna: httpx.AsyncClient, client: GolemClient, network: Network, ip: str, name: str
) -> str:
    """An activity in the network at `ip` running the server; returns its activity id."""
    deal = await negotiate(yagna)
    agreement = await client.market.get_agreement(deal.agreement_id)
    await client.net.add_node(network.id, agreement.offer.provider_id, ip)
    created = await yagna.post("/activity-api/v1/activity", json={"agreementId": deal.agreement_id})
    activity_id: str = created.json()["activityId"]
    script = [
        exescript.deploy(net=[deploy_net_entry(network, ip)]),
        exescript.start(),
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
    for _ in range(100):  # the server starts in the background
        try:
            async with await client.net.open_tcp(network.id, ip, PORT, timeout=5):
                return activity_id
        except Exception:
            await asyncio.sleep(0.1)
    raise AssertionError(f"nothing listens on {ip}:{PORT}")


RESET = b"<reset>"


async def ask(port: int, text: bytes) -> bytes:
    """Send, read the answer to its end; RESET when the connection was reset."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(text)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    except ConnectionResetError:
        return RESET
    finally:
        writer.close()


def counted(metric: str, host: Host, port: str, *extra: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        metric,
        dict(
            zip(
                ["namespace", "service", "port", *(["reason"] if extra else [])],
                [host.namespace, host.name, port, *extra],
                strict=True,
            )
        ),
    )
    return value or 0.0


def bytes_moved(host: Host, port: str, direction: str) -> float:
    labels = {"namespace": host.namespace, "service": host.name, "port": port}
    value = metrics.REGISTRY.get_sample_value(
        "golem_operator_proxy_bytes_total", {**labels, "direction": direction}
    )
    return value or 0.0


async def settled(check: Callable[[], bool]) -> None:
    """A connection's bookkeeping ends just after its client saw the end: wait for it."""
    for _ in range(50):
        if check():
            return
        await asyncio.sleep(0.02)
    assert check()


def proxy_for(host: Host, idle: float = 0) -> ServiceProxy:
    settings = ProxySettings(address="127.0.0.1", connect_timeout=5, idle_timeout=idle)
    return ServiceProxy(host, settings, logs.for_service(__name__, host.namespace, host.name))


async def test_connections_reach_the_instances_and_skip_one_that_does_not_answer(
    yagna: httpx.AsyncClient, client: GolemClient
) -> None:
    network = await client.net.create_network("192.168.70.0", "255.255.255.0")
    await serving(yagna, client, network, "192.168.70.2", "first")
    await serving(yagna, client, network, "192.168.70.3", "second")
    host = Host(client.net)
    host.pool = [
        Backend("web-1", network.id, "192.168.70.2"),
        Backend("web-2", network.id, "192.168.70.3"),
    ]
    proxy = proxy_for(host)
    try:
        listeners = await proxy.serve([ServicePort(name="echo", port=PORT)])
        port = listeners["echo"]

        answers = await asyncio.gather(*(ask(port, f"ping {i}".encode()) for i in range(6)))
        for i, answer in enumerate(answers):
            assert answer in (b"hello from first: ping %d" % i, b"hello from second: ping %d" % i)
        # Spread over both (least connections, equals in turn).
        assert {a.split(b":")[0] for a in answers} == {b"hello from first", b"hello from second"}
        assert counted("golem_operator_proxy_connections_total", host, "echo") == 6
        assert bytes_moved(host, "echo", "in") == sum(len(f"ping {i}") for i in range(6))
        assert bytes_moved(host, "echo", "out") == sum(len(a) for a in answers)
        await settled(lambda: counted("golem_operator_proxy_active_connections", host, "echo") == 0)

        # An instance listed but not answering (nothing at its address): each connection that
        # chooses it is carried to the other one instead.
        host.pool.insert(0, Backend("web-0", network.id, "192.168.70.9"))
        answers = [await ask(port, b"again") for _ in range(3)]
        assert all(a.startswith(b"hello from ") for a in answers), answers
        assert counted("golem_operator_proxy_errors_total", host, "echo", "tunnel-refused") >= 1

        # No instance to take it: the connection is reset at once.
        host.pool = [Backend("web-0", network.id, "192.168.70.9")]
        assert await ask(port, b"anyone?") == RESET
        assert counted("golem_operator_proxy_errors_total", host, "echo", "no-backend") == 1
        host.pool = []
        assert await ask(port, b"anyone?") == RESET
        assert counted("golem_operator_proxy_errors_total", host, "echo", "no-backend") == 2
    finally:
        await proxy.close()


async def test_idle_connections_close_and_a_failing_connection_leaves_the_listener_up(
    yagna: httpx.AsyncClient, client: GolemClient
) -> None:
    network = await client.net.create_network("192.168.71.0", "255.255.255.0")
    await serving(yagna, client, network, "192.168.71.2", "only")
    host = Host(client.net, pool=[Backend("web-1", network.id, "192.168.71.2")])
    proxy = proxy_for(host, idle=0.5)
    try:
        port = (await proxy.serve([ServicePort(name="echo", port=PORT)]))["echo"]

        # Nothing sent either way: the connection ends after the idle timeout.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        started = asyncio.get_running_loop().time()
        assert await asyncio.wait_for(reader.read(), 10) == b""
        assert asyncio.get_running_loop().time() - started >= 0.5
        writer.close()
        await settled(
            lambda: counted("golem_operator_proxy_errors_total", host, "echo", "idle-timeout") == 1
        )

        # A bug while serving one connection closes that one; the next is served.
        host.failures = 1
        assert await ask(port, b"x") in (b"", RESET)
        await settled(
            lambda: counted("golem_operator_proxy_errors_total", host, "echo", "stream-error") == 1
        )
        assert await ask(port, b"y") == b"hello from only: y"

        # A port that stays keeps its listener; one no longer given is closed.
        again = await proxy.serve(
            [ServicePort(name="echo", port=PORT), ServicePort(name="other", port=PORT + 1)]
        )
        assert again["echo"] == port and again["other"] != port
        assert await ask(again["other"], b"z") == RESET  # nothing listens on PORT + 1 inside
        assert await proxy.serve([ServicePort(name="other", port=PORT)]) == {
            "other": again["other"]
        }
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", port)
        assert await ask(again["other"], b"moved") == b"hello from only: moved"
    finally:
        await proxy.close()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", again["other"])
