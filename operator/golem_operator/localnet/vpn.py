"""The net API of the simulated network: requestor VPNs, their nodes, and TCP into activities.

`Vpn` keeps the requestor's networks as yagna 0.17.6 does (`/net-api/v1`, docs/localnet.md
lists what was observed): an ip with a default /24 mask and the gateway `.1`, which is also
the requestor's first address; nodes are (id, ip) pairs where a second node on an ip already
taken is ignored and removing a node id removes all its addresses; an unknown network id
answers 403 with an empty body.

The provider side: a `deploy` command whose `net` entries name a network and a `nodeIp` gives
the activity's sandbox (its own network namespace, `localnet.sandbox`) a veth device carrying
the nodeIp with the network's mask. Its other end sits on the network's bridge, in a network
namespace the local network creates for that network (a `Segment`): activities of one network
reach each other there, and nothing else. As yagna routes only to nodes the requestor added,
an activity's port on the bridge is up only while the requestor has its provider node at its
address. `open_tcp` connects to `ip:port` from inside the sandbox for the TCP websocket
`/net-api/v1/net/{id}/tcp/{ip}/{port}`: nothing of it is reachable from the host network.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ipaddress
import logging
import os
import re
import socket
import threading
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from golem_operator.localnet.model import Activity, ApiError, BareError, PlainError
from golem_operator.localnet.runtime import Part
from golem_operator.localnet.sandbox import DEFAULT_PATH, ChildProcess, host_tool

if TYPE_CHECKING:
    from golem_operator.localnet.exeunit import ExeUnits

_CLONE_NEWNET = 0x40000000
DEFAULT_PREFIX = 24
#: The bridge of a network, inside the network's own namespace.
BRIDGE = "vpnbr"
#: A host name of the deploy's `hosts` (RFC 1123 labels, dot-separated).
_HOST_NAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)

log = logging.getLogger(__name__)


def forbidden() -> BareError:
    """yagna's answer for a network id the requestor does not own: 403, empty body."""
    return BareError(403)


def unreachable() -> BareError:
    """yagna's answer when nothing answers at the TCP tunnel's ip: 504, empty body."""
    return BareError(504)


@dataclass
class Port:
    """One activity's attachment to a network's bridge: a veth pair whose bridge-side end is
    `name` (in the segment's namespace) and whose sandbox-side end carries `ip`."""

    activity: Activity
    ip: str
    name: str
    up: bool = False


@dataclass
class Segment:
    """The network namespace of one network and the bridge in it, with a port per activity.

    Kept alive by an idle process made by `unshare --net` (no path under /run), killed with the
    server (parent-death signal): killing it ends the namespace, its bridge and every veth
    pair of it (the sandboxes' ends go too).
    """

    holder: ChildProcess
    ports: dict[str, Port] = field(default_factory=dict)
    counter: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def pid(self) -> int:
        return self.holder.pid


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
    #: the providers' side: the bridge joining the activities deployed into the network
    segment: Segment | None = None

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


def parse_deploy_hosts(body: dict[str, Any]) -> tuple[dict[str, str], str | None]:
    """The deploy command's `hosts` (host name -> IP address) and `hostname`; raises
    ValueError naming the bad field."""
    hosts = body.get("hosts")
    if hosts is None:
        hosts = {}
    if not isinstance(hosts, dict):
        raise ValueError("deploy.hosts must be an object of host name -> IP address")
    parsed: dict[str, str] = {}
    for name, ip in hosts.items():
        if not isinstance(name, str) or not _HOST_NAME.match(name):
            raise ValueError(f"deploy.hosts: {str(name)[:64]!r} is not a host name")
        if not _is_ip(ip):
            raise ValueError(f"deploy.hosts[{name}] must be an IP address, got {str(ip)[:64]!r}")
        parsed[name] = str(ipaddress.ip_address(str(ip)))
    hostname = body.get("hostname")
    if hostname is not None and (not isinstance(hostname, str) or not _HOST_NAME.match(hostname)):
        raise ValueError(f"deploy.hostname: {str(hostname)[:64]!r} is not a host name")
    return parsed, hostname


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
        self._segments_lock = asyncio.Lock()

    async def close(self) -> None:
        for network in self.networks.values():
            await _end_segment(network)
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

    async def remove_network(self, network_id: str) -> None:
        network = self.network(network_id)
        del self.networks[network_id]
        for activity in self.exeunits.activities.values():
            activity.vpn.pop(network_id, None)
        await _end_segment(network)

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

    async def add_node_and_route(self, network_id: str, body: dict[str, Any]) -> None:
        self.add_node(network_id, body)
        await self.route(self.networks[network_id])

    def remove_node(self, network_id: str, node_id: str) -> None:
        net = self.network(network_id)
        for ip in [ip for ip, owner in net.nodes.items() if owner == node_id]:
            del net.nodes[ip]

    async def remove_node_and_route(self, network_id: str, node_id: str) -> None:
        self.remove_node(network_id, node_id)
        await self.route(self.networks[network_id])

    # ------------------------------------------------------------ provider side
    async def join(self, activity: Activity, entries: list[DeployedNet]) -> None:
        """Attach the deployed sandbox to each network it names: a veth device in the sandbox
        carrying its nodeIp with the network's mask, the other end on the network's bridge.

        A network the requestor does not have (no segment to join) gets the address on the
        sandbox's loopback only: the activity answers there, and reaches no one.
        """
        sandbox = activity.sandbox
        assert sandbox is not None
        for index, entry in enumerate(entries):
            network = self.networks.get(entry.network_id)
            if network is None:
                await _run_in_netns(
                    sandbox.payload_pid,
                    [host_tool("ip"), "address", "add", f"{entry.node_ip}/32", "dev", "lo"],
                )
            else:
                await self._attach(network, activity, entry, f"vpn{index}")
            activity.vpn[entry.network_id] = str(entry.node_ip)
        for entry in entries:
            network = self.networks.get(entry.network_id)
            if network is not None:
                await self.route(network)

    async def _attach(
        self, network: VpnNetwork, activity: Activity, entry: DeployedNet, device: str
    ) -> None:
        assert activity.sandbox is not None
        segment = await self._segment(network)
        async with segment.lock:
            segment.counter += 1
            port = Port(activity, str(entry.node_ip), f"p{segment.counter}")
            ip = host_tool("ip")
            sandbox_pid = str(activity.sandbox.payload_pid)
            # Made in the segment's namespace, the sandbox's end moved into the sandbox's.
            await _run_in_netns(
                segment.pid,
                [ip, "link", "add", port.name, "type", "veth", "peer", "name", device,
                 "netns", sandbox_pid],
            )  # fmt: skip
            segment.ports[activity.id] = port
            prefix = entry.network.prefixlen
            await _run_in_netns(
                activity.sandbox.payload_pid,
                [ip, "address", "add", f"{entry.node_ip}/{prefix}", "dev", device],
            )
            await _run_in_netns(activity.sandbox.payload_pid, [ip, "link", "set", device, "up"])
            await _run_in_netns(segment.pid, [ip, "link", "set", port.name, "master", BRIDGE])

    async def _segment(self, network: VpnNetwork) -> Segment:
        """The network's namespace and bridge, made on the first deploy into it (once, also
        when activities deploy into it at the same time)."""
        async with self._segments_lock:
            return await self._make_segment(network)

    async def _make_segment(self, network: VpnNetwork) -> Segment:
        if network.segment is not None and network.segment.holder.running:
            return network.segment
        # Killed with the server however it ends (as the sandboxes' --die-with-parent).
        holder = ChildProcess.spawn(
            [host_tool("setpriv"), "--pdeathsig", "KILL", "--",
             host_tool("unshare"), "--net", "--", host_tool("sleep"), "infinity"],
            {"PATH": DEFAULT_PATH},
        )  # fmt: skip
        try:
            await _wait_own_netns(holder)
            ip = host_tool("ip")
            await _run_in_netns(holder.pid, [ip, "link", "add", BRIDGE, "type", "bridge"])
            await _run_in_netns(holder.pid, [ip, "link", "set", BRIDGE, "up"])
        except BaseException:
            holder.kill()
            raise
        network.segment = Segment(holder)
        return network.segment

    async def route(self, network: VpnNetwork) -> None:
        """Bring each activity's bridge port up exactly while the requestor has the
        activity's provider node at its address (yagna routes only to added nodes); forget
        the ports of ended activities (their veth pairs went with their sandboxes)."""
        segment = network.segment
        if segment is None or not segment.holder.running:
            return
        async with segment.lock:
            for activity_id, port in list(segment.ports.items()):
                activity = port.activity
                if activity.terminated or activity.sandbox is None or not activity.sandbox.alive:
                    del segment.ports[activity_id]
                    continue
                wanted = network.nodes.get(port.ip) == activity.provider.node_id
                if wanted != port.up:
                    state = "up" if wanted else "down"
                    await _run_in_netns(
                        segment.pid, [host_tool("ip"), "link", "set", port.name, state]
                    )
                    port.up = wanted

    async def leave(self, activity: Activity) -> None:
        """The activity ended: its ports go (the veth pairs would go with its namespace;
        deleting them here frees the bridge at once)."""
        for network_id in list(activity.vpn):
            network = self.networks.get(network_id)
            segment = network.segment if network is not None else None
            if segment is None or not segment.holder.running:
                continue
            async with segment.lock:
                port = segment.ports.pop(activity.id, None)
                if port is not None:
                    with contextlib.suppress(RuntimeError):
                        await _run_in_netns(
                            segment.pid, [host_tool("ip"), "link", "delete", port.name]
                        )

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
        sock = await asyncio.to_thread(_socket_in_netns, activity.sandbox.payload_pid)
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


async def _end_segment(network: VpnNetwork) -> None:
    """Kill the network's namespace holder: the bridge and every veth pair of it go."""
    segment, network.segment = network.segment, None
    if segment is not None:
        segment.holder.kill()
        await segment.holder.wait()


def _netns_inode(pid: int | str) -> int:
    return os.stat(f"/proc/{pid}/ns/net").st_ino


async def _wait_own_netns(holder: ChildProcess) -> None:
    """Wait until the holder runs `sleep` in a namespace of its own: before that its pid
    would still name the server's namespace, where nothing may be configured."""
    own = _netns_inode("self")
    for _ in range(2500):
        if not holder.running:
            break
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{holder.pid}/exe").endswith("/sleep") and (
                _netns_inode(holder.pid) != own
            ):
                return
        await asyncio.sleep(0.002)
    raise RuntimeError("the network's namespace did not come up (unshare --net failed)")


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


def _socket_in_netns(pid: int) -> socket.socket:
    """A TCP socket created in the network namespace of `pid`.

    A socket belongs to the namespace it was created in. A short-lived thread of its own
    switches its namespace (per thread for CLONE_NEWNET), creates the socket and switches
    back, so no other thread ever runs in the sandbox's namespace.
    """
    result: dict[str, Any] = {}

    def work() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
        try:
            if libc.setns(target, _CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns into the sandbox network failed")
            # Back to the host namespace; were that to fail, the thread ends here anyway.
            result["socket"] = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            libc.setns(own, _CLONE_NEWNET)
        except BaseException as error:
            result["error"] = error
        finally:
            os.close(own)
            os.close(target)

    thread = threading.Thread(target=work, name="localnet-netns", daemon=True)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    created: socket.socket = result["socket"]
    return created


def close_quietly(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()
