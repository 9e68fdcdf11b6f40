"""The net API of the simulated network: requestor VPNs, their nodes, and TCP into activities.

`Vpn` keeps the requestor's networks as yagna 0.17.6 does (`/net-api/v1`, docs/localnet.md
lists what was observed): an ip with a default /24 mask and the gateway `.1`, which is also
the requestor's first address; nodes are (id, ip) pairs where a second node on an ip already
taken is ignored and removing a node id removes all its addresses; an unknown network id
answers 403 with an empty body.

The provider side: a `deploy` command whose `net` entries name a network and a `nodeIp` puts
that ip on the loopback device of the activity's sandbox (each sandbox has its own network
namespace, `localnet.sandbox`), so a server started inside binds and answers on its VPN
address. `open_tcp` connects to `ip:port` from inside that namespace for the TCP websocket
`/net-api/v1/net/{id}/tcp/{ip}/{port}`: nothing of it is reachable from the host network.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from golem_operator.localnet.model import Activity, ApiError, BareError, PlainError
from golem_operator.localnet.netns import socket_in_netns
from golem_operator.localnet.runtime import Part
from golem_operator.localnet.sandbox import host_tool

if TYPE_CHECKING:
    from golem_operator.localnet.exeunit import ExeUnits

DEFAULT_PREFIX = 24


def forbidden() -> BareError:
    """yagna's answer for a network id the requestor does not own: 403, empty body."""
    return BareError(403)


def unreachable() -> BareError:
    """yagna's answer when nothing answers at the TCP tunnel's ip: 504, empty body."""
    return BareError(504)


@dataclass
class VpnNetwork:
    id: str
    #: the ip as given (yagna does not reduce it to the network address) and its prefix
    interface: ipaddress.IPv4Interface
    gateway: ipaddress.IPv4Address
    #: the requestor's own addresses, as yagna lists them: "192.168.8.1/24"
    addresses: list[str] = field(default_factory=list)
    #: node ip -> node id; the first node added on an ip keeps it
    nodes: dict[str, str] = field(default_factory=dict)

    @property
    def network(self) -> ipaddress.IPv4Network:
        return self.interface.network

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "ip": str(self.interface),
            "mask": str(self.network.netmask),
            "gateway": str(self.gateway),
        }


@dataclass(frozen=True)
class DeployedNet:
    """One `net` entry of a deploy command, as the exe-unit accepted it."""

    network_id: str
    node_ip: ipaddress.IPv4Address
    network: ipaddress.IPv4Network


def _is_ip(value: Any) -> bool:
    try:
        ipaddress.ip_address(str(value))
    except ValueError:
        return False
    return True


def _ipv4(value: Any) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(str(value))
    except ValueError:
        raise ApiError(400, "Invalid IP address: invalid IP address syntax") from None


def parse_deploy_net(body: dict[str, Any]) -> list[DeployedNet]:
    """The `net` entries of a deploy command's body (yapapi, golem-js: id, ip, mask, gateway,
    nodeIp, nodes); raises ValueError naming the bad field."""
    entries = body.get("net")
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise ValueError("deploy.net must be a list")
    parsed = []
    for index, entry in enumerate(entries):
        where = f"deploy.net[{index}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{where} must be an object")
        network_id, node_ip = entry.get("id"), entry.get("nodeIp")
        if not isinstance(network_id, str) or not network_id:
            raise ValueError(f"{where}.id must be a network id")
        try:
            ip = str(entry.get("ip", "")).split("/")[0]
            mask = entry.get("mask") or DEFAULT_PREFIX
            network = ipaddress.IPv4Network(f"{ip}/{mask}", strict=False)
        except ValueError as error:
            raise ValueError(f"{where}.ip/mask: {error}") from None
        try:
            address = ipaddress.IPv4Address(str(node_ip))
        except ValueError:
            raise ValueError(f"{where}.nodeIp must be an IPv4 address, got {node_ip!r}") from None
        if address not in network:
            raise ValueError(f"{where}.nodeIp {address} is outside {network}")
        nodes = entry.get("nodes", {})
        if not isinstance(nodes, dict):
            raise ValueError(f"{where}.nodes must be an object of ip -> node id")
        parsed.append(DeployedNet(network_id, address, network))
    return parsed


class Vpn(Part):
    """The requestor's VPNs (net API) and the exe-units' side of them."""

    exeunits: ExeUnits

    def __init__(self, runtime: Any) -> None:
        super().__init__(runtime)
        self.networks: dict[str, VpnNetwork] = {}
        self.tunnels = 0

    async def close(self) -> None:
        self.networks.clear()

    # ----------------------------------------------------------- requestor side
    def create_network(self, body: dict[str, Any]) -> VpnNetwork:
        ip = body.get("ip")
        if not isinstance(ip, str):
            raise PlainError(400, "Json deserialize error: missing field `ip`")
        address, _, prefix = ip.partition("/")
        if not _is_ip(address):
            raise ApiError(400, "Invalid IP address: invalid IP address syntax")
        # yagna: a /prefix on the ip wins over the mask; neither means /24.
        mask = prefix or body.get("mask") or DEFAULT_PREFIX
        try:
            network = ipaddress.IPv4Network(f"{address}/{mask}", strict=False)
        except ValueError:
            raise ApiError(400, "Invalid IP address: invalid IPv4 address syntax") from None
        gateway_text = body.get("gateway")
        if gateway_text is not None and not _is_ip(gateway_text):
            raise ApiError(400, "Invalid IP address: invalid IP address syntax")
        # A gateway outside the network is taken as given, as yagna does.
        gateway = (
            ipaddress.IPv4Address(gateway_text) if gateway_text else network.network_address + 1
        )
        interface = ipaddress.IPv4Interface(f"{address}/{network.prefixlen}")
        created = VpnNetwork(uuid.uuid4().hex, interface, gateway)
        created.addresses.append(f"{gateway}/{network.prefixlen}")
        self.networks[created.id] = created
        return created

    def network(self, network_id: str) -> VpnNetwork:
        """A network of the requestor's. yagna checks ownership first: an unknown id is
        Forbidden (403, empty body) while the requestor has networks, else Network not
        found (404)."""
        found = self.networks.get(network_id)
        if found is None:
            if self.networks:
                raise forbidden()
            raise ApiError(404, "Network not found")
        return found

    def list_networks(self) -> list[VpnNetwork]:
        return [self.networks[k] for k in sorted(self.networks)]  # yagna lists them by id

    def remove_network(self, network_id: str) -> None:
        self.network(network_id)
        del self.networks[network_id]

    def add_address(self, network_id: str, body: dict[str, Any]) -> None:
        net = self.network(network_id)
        if not isinstance(body.get("ip"), str):
            raise PlainError(400, "Json deserialize error: missing field `ip`")
        ip = _ipv4(body["ip"].split("/")[0])
        if ip not in net.network:
            raise ApiError(400, f"Network not found for IP address: {ip}")
        entry = f"{ip}/{net.network.prefixlen}"
        if entry not in net.addresses:
            net.addresses.append(entry)

    def add_node(self, network_id: str, body: dict[str, Any]) -> None:
        net = self.network(network_id)
        node_id, ip_text = body.get("id"), body.get("ip")
        for name, value in (("id", node_id), ("ip", ip_text)):
            if not isinstance(value, str):
                raise PlainError(400, f"Json deserialize error: missing field `{name}`")
        ip = _ipv4(ip_text)
        if ip not in net.network:
            raise ApiError(400, f"Invalid network IP address: {ip}")
        net.nodes.setdefault(str(ip), str(node_id))

    def remove_node(self, network_id: str, node_id: str) -> None:
        net = self.network(network_id)
        for ip in [ip for ip, owner in net.nodes.items() if owner == node_id]:
            del net.nodes[ip]

    # ------------------------------------------------------------ provider side
    async def join(self, activity: Activity, entries: list[DeployedNet]) -> None:
        """Give the deployed sandbox its VPN addresses (on its own loopback device)."""
        sandbox = activity.sandbox
        assert sandbox is not None
        for entry in entries:
            await _run_in_netns(
                sandbox.payload_pid,
                [host_tool("ip"), "address", "add", f"{entry.node_ip}/32", "dev", "lo"],
            )
            activity.vpn[entry.network_id] = str(entry.node_ip)

    def target(self, network_id: str, ip: str) -> Activity:
        """The live activity behind `ip` in the network: a node the requestor added whose
        deploy took that address."""
        net = self.network(network_id)
        node_id = net.nodes.get(ip)
        if node_id is None:
            raise unreachable()
        for activity in self.exeunits.activities.values():
            if (
                activity.vpn.get(network_id) == ip
                and activity.provider.node_id == node_id
                and not activity.terminated
                and activity.sandbox is not None
                and activity.sandbox.alive
            ):
                return activity
        raise unreachable()

    async def open_tcp(self, activity: Activity, ip: str, port: int) -> socket.socket:
        """A TCP connection to ip:port made inside the activity's network namespace."""
        assert activity.sandbox is not None
        sock = await asyncio.to_thread(socket_in_netns, activity.sandbox.payload_pid)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(
                asyncio.get_running_loop().sock_connect(sock, (ip, port)), timeout=10
            )
        except BaseException:
            sock.close()
            raise
        self.tunnels += 1
        return sock


async def _run_in_netns(pid: int, argv: list[str]) -> None:
    """Run a command in the network namespace of `pid` (needs CAP_NET_ADMIN over it)."""
    process = await asyncio.create_subprocess_exec(
        host_tool("nsenter"),
        "-t",
        str(pid),
        "--net",
        "--",
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    if process.returncode != 0:
        text = output.decode(errors="replace").strip()
        raise RuntimeError(f"configuring the sandbox network failed: {text}")
