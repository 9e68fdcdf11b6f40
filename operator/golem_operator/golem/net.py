"""Net API of yagna, requestor side (net-api.yaml, base path /net-api/v1).

`GolemClient.net` is a `NetApi`. The operator creates a VPN for a service, adds each
instance's provider node at an address, deploys the instance with `deploy_net_entry` in the
deploy command, and reaches a TCP port inside an instance through the websocket that
`open_tcp` opens (`/net/{id}/tcp/{ip}/{port}`: binary frames carry the stream both ways).

yagna 0.17.6 answers an unknown network id with 403 (`GolemForbidden`) and an empty body,
the TCP websocket to an address where nothing answers with 504 (`GolemTimeout`), and the
add/remove calls with 200 and a JSON `null` (docs/localnet.md lists what it does).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Final

import aiohttp
from pydantic import TypeAdapter

from golem_operator.golem.errors import GolemUnavailable, error_for_status
from golem_operator.golem.models import Network, NetworkAddress, NetworkNode
from golem_operator.golem.requesting import Requester, parse_adapted, parse_model

BASE: Final = "/net-api/v1"

_log = logging.getLogger(__name__)
_NETWORKS: Final = TypeAdapter(list[Network])
_NODES: Final = TypeAdapter(list[NetworkNode])
_ADDRESSES: Final = TypeAdapter(list[NetworkAddress])


def deploy_net_entry(
    network: Network, node_ip: str, nodes: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """One `net` entry of the deploy command, as yapapi and golem-js send it: the network
    (id, ip, mask, gateway), this node's address, and the known nodes (ip -> node id)."""
    return {
        "id": network.id,
        "ip": network.ip.split("/")[0],
        "mask": network.mask,
        "gateway": network.gateway,
        "nodeIp": node_ip,
        "nodes": dict(nodes or {}),
    }


class TcpTunnel:
    """A TCP stream to a port inside an activity, over yagna's websocket.

    `send` writes bytes; `receive` returns the next bytes, or b"" once the far side closed.
    """

    def __init__(self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._session = session
        self._ws = ws

    @property
    def closed(self) -> bool:
        return self._ws.closed

    async def send(self, data: bytes) -> None:
        await self._ws.send_bytes(data)

    async def receive(self, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        while True:
            message = await self._ws.receive(timeout=timeout)
            if message.type == aiohttp.WSMsgType.BINARY:
                return bytes(message.data)
            if message.type == aiohttp.WSMsgType.TEXT:
                return str(message.data).encode()
            if message.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSING,
                aiohttp.WSMsgType.CLOSED,
                aiohttp.WSMsgType.ERROR,
            ):
                return b""

    async def aclose(self) -> None:
        try:
            await self._ws.close()
        finally:
            await self._session.close()

    async def __aenter__(self) -> TcpTunnel:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()


class NetApi:
    """Requestor calls of the net API."""

    def __init__(self, requester: Requester) -> None:
        self._requester = requester

    # --- networks ------------------------------------------------------------------------

    async def create_network(
        self, ip: str, mask: str | None = None, gateway: str | None = None
    ) -> Network:
        """POST /net: a VPN on `ip` (a network address, or one with a /prefix).

        Without `mask` yagna takes /24; without `gateway`, the first address, which is also
        the requestor's own address in the network.
        """
        ipaddress.IPv4Network(ip if mask is None else f"{ip.split('/')[0]}/{mask}", strict=False)
        body: dict[str, str] = {"ip": ip}
        if mask is not None:
            body["mask"] = mask
        if gateway is not None:
            body["gateway"] = str(ipaddress.IPv4Address(gateway))
        response = await self._requester.request("POST", f"{BASE}/net", body=body)
        return parse_model(response, Network)

    async def list_networks(self) -> list[Network]:
        """GET /net: the requestor's networks."""
        response = await self._requester.request("GET", f"{BASE}/net")
        return parse_adapted(response, _NETWORKS, "list of networks")

    async def get_network(self, network_id: str) -> Network:
        """GET /net/{id}; `GolemForbidden` (403) for an id the requestor does not have."""
        response = await self._requester.request(
            "GET", f"{BASE}/net/{{networkId}}", path_params={"networkId": network_id}
        )
        return parse_model(response, Network)

    async def delete_network(self, network_id: str) -> None:
        """DELETE /net/{id}; `GolemForbidden` (403) when it is already gone."""
        await self._requester.request(
            "DELETE", f"{BASE}/net/{{networkId}}", path_params={"networkId": network_id}
        )

    # --- the requestor's addresses -------------------------------------------------------

    async def list_addresses(self, network_id: str) -> list[NetworkAddress]:
        """GET /net/{id}/addresses: the requestor's own addresses ("ip/prefix")."""
        response = await self._requester.request(
            "GET", f"{BASE}/net/{{networkId}}/addresses", path_params={"networkId": network_id}
        )
        return parse_adapted(response, _ADDRESSES, "list of addresses")

    async def add_address(self, network_id: str, ip: str) -> None:
        """POST /net/{id}/addresses: one more address of the requestor in the network."""
        await self._requester.request(
            "POST",
            f"{BASE}/net/{{networkId}}/addresses",
            path_params={"networkId": network_id},
            body={"ip": str(ipaddress.IPv4Address(ip))},
        )

    # --- nodes ---------------------------------------------------------------------------

    async def list_nodes(self, network_id: str) -> list[NetworkNode]:
        """GET /net/{id}/nodes (in no particular order)."""
        response = await self._requester.request(
            "GET", f"{BASE}/net/{{networkId}}/nodes", path_params={"networkId": network_id}
        )
        return parse_adapted(response, _NODES, "list of nodes")

    async def add_node(self, network_id: str, node_id: str, ip: str) -> None:
        """POST /net/{id}/nodes: put a provider node at `ip`.

        yagna refuses an ip outside the network (400) but silently keeps the first node on
        an ip already taken: callers choose free addresses themselves.
        """
        await self._requester.request(
            "POST",
            f"{BASE}/net/{{networkId}}/nodes",
            path_params={"networkId": network_id},
            body={"id": node_id, "ip": str(ipaddress.IPv4Address(ip))},
        )

    async def remove_node(self, network_id: str, node_id: str) -> None:
        """DELETE /net/{id}/nodes/{nodeId}: every address of that node (idempotent)."""
        await self._requester.request(
            "DELETE",
            f"{BASE}/net/{{networkId}}/nodes/{{nodeId}}",
            path_params={"networkId": network_id, "nodeId": node_id},
        )

    # --- TCP -----------------------------------------------------------------------------

    def tcp_url(self, network_id: str, ip: str, port: int) -> str:
        """The websocket URL of a TCP connection to ip:port in the network (no key in it)."""
        address = ipaddress.IPv4Address(ip)
        if not 1 <= port <= 65535:
            raise ValueError(f"port must be 1..65535, got {port}")
        base = self._requester.config.url.rstrip("/")
        scheme = "wss" if base.startswith("https://") else "ws"
        host = base.split("://", 1)[1]
        return f"{scheme}://{host}{BASE}/net/{network_id}/tcp/{address}/{port}"

    async def open_tcp(
        self,
        network_id: str,
        ip: str,
        port: int,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> TcpTunnel:
        """Open the TCP websocket to ip:port; the key goes in the Authorization header.

        Raises the `GolemError` of the refusal (403 unknown network, 504 nothing answers,
        401 bad key) or `GolemUnavailable` when the daemon cannot be reached.
        """
        url = self.tcp_url(network_id, ip, port)
        path = f"{BASE}/net/{{networkId}}/tcp/{{ip}}/{{port}}"
        config = self._requester.config
        wait = config.connect_timeout + config.request_timeout if timeout is None else timeout
        key = config.app_key.get_secret_value()
        # trust_env=False: never route the key through a proxy taken from the environment.
        session = aiohttp.ClientSession(
            trust_env=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=config.connect_timeout),
        )
        try:
            ws = await asyncio.wait_for(
                session.ws_connect(
                    url,
                    headers={"Authorization": f"Bearer {key}"},
                    timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=10.0),
                    autoping=True,
                    max_msg_size=0,
                ),
                wait,
            )
        except aiohttp.WSServerHandshakeError as error:
            await session.close()
            raise error_for_status(
                error.status, error.message or "websocket refused", method="GET", path=path
            ) from None
        except (aiohttp.ClientError, TimeoutError) as error:
            await session.close()
            raise GolemUnavailable(
                f"cannot open the TCP websocket: {type(error).__name__}", method="GET", path=path
            ) from None
        except BaseException:
            await session.close()
            raise
        _log.debug("TCP tunnel open to %s:%s in network %s", ip, port, network_id)
        return TcpTunnel(session, ws)


__all__ = ["BASE", "NetApi", "TcpTunnel", "deploy_net_entry"]
