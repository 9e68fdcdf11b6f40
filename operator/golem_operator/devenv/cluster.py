"""A real single-node Kubernetes cluster on this machine, without Docker or a registry.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet on containerd and runc,
kube-proxy and CoreDNS run as host processes; pods get their own network namespaces on a bridge
the cluster creates (`golemk8s0`, 10.88.0.1/16) with no default route and no masquerading, so
nothing a pod sends leaves the machine. The API server listens on the bridge address so pods
reach it (directly and through the `kubernetes` Service), with ServiceAccount admission and
kubelet client certificates (logs, exec and port-forward work). PVCs of the default
StorageClass are served by a small provisioner in this process (local volumes on the node).

Binaries: the control plane from scripts/build-control-plane.sh ($GOLEM_OPERATOR_BIN), the node
from scripts/cluster/build-node.sh ($GOLEM_OPERATOR_NODE_BIN); images (pause, the python base
stand-in, the project's Dockerfile) from scripts/cluster/build-images.sh, imported into
containerd at start. Everything lives in a fresh state directory under /tmp and is removed by
`stop()`: processes, mounts, the bridge, iptables chains and cgroups. kube-proxy's and the
kubelet's iptables chains are host-wide, so one cluster runs at a time: a host-wide lock is
held for the cluster's lifetime, and leftovers of a cluster that died (kill -9) are cleaned up
before the next one starts.

`python -m golem_operator.devenv.cluster up` starts one for a developer and keeps it until
interrupted (see docs/install.md).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from golem_operator.devenv.controlplane import ControlPlaneError, KubectlError, find_bin_dir

ROOT = Path(__file__).resolve().parents[3]
BRIDGE = "golemk8s0"
NODE_IP = "10.88.0.1"
POD_CIDR = "10.88.0.0/16"
SERVICE_CIDR = "10.96.0.0/16"
API_SERVICE_IP = "10.96.0.1"
API_PORT = 6443
NODE_NAME = "golem-node"
CLUSTER_DOMAIN = "cluster.local"
STORAGE_CLASS = "golem-local"
PROVISIONER = "devenv.golem-operator/local"
ADMIN_TOKEN = "golem-cluster-admin"  # noqa: S105 - a throwaway token for a local cluster
# Host-wide: the record of the running cluster (for cleanup after a crash) and its lock.
RUN_DIR = Path("/run/golem-operator-cluster")
LOCK_FILE = RUN_DIR / "lock"
STATE_RECORD = RUN_DIR / "state.json"
# Chains the kubelet creates itself (kube-proxy --cleanup removes kube-proxy's own).
KUBELET_CHAINS = [
    ("filter", "KUBE-FIREWALL"),
    ("filter", "KUBE-KUBELET-CANARY"),
    ("nat", "KUBE-KUBELET-CANARY"),
    ("mangle", "KUBE-KUBELET-CANARY"),
    ("mangle", "KUBE-IPTABLES-HINT"),
    ("nat", "KUBE-MARK-DROP"),
    ("nat", "KUBE-MARK-MASQ"),
    ("nat", "KUBE-POSTROUTING"),
]
CNI_BIN_DIR = Path("/usr/lib/cni")


class ClusterError(RuntimeError):
    """The cluster could not be started (or a step of its set-up failed)."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _env_tools(name: str) -> str | None:
    value = os.environ.get(name)
    if value:
        return value
    env_file = ROOT / ".env.tools"
    if env_file.exists():
        for line in env_file.read_text().splitlines():
            if line.startswith(f"export {name}="):
                return line.split("=", 1)[1].strip().strip('"')
    return None


def _cache_root() -> Path:
    configured = os.environ.get("GOLEM_OPERATOR_CACHE")
    if configured:
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "golem-operator"


def _run(args: list[str], *, check: bool = True, timeout: float = 120) -> str:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise ClusterError(
            f"{' '.join(args)} failed ({result.returncode}): {result.stderr[-2000:]}"
        )
    return result.stdout


def build_node(env: dict[str, str] | None = None) -> Path:
    """Build (or find cached) the node binaries; returns their directory."""
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "cluster" / "build-node.sh")],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        check=True,
    ).stdout
    return Path(out.strip().splitlines()[-1])


def build_images(node_bin: Path) -> dict[str, dict[str, str]]:
    """Build (or find cached) the pause, base and operator images; returns refs and archives."""
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "cluster" / "build-images.sh"), str(node_bin)],
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    ).stdout
    images: dict[str, dict[str, str]] = json.loads(out.strip().splitlines()[-1])
    return images


# --- teardown pieces, shared by stop() and the cleanup of a crashed cluster ------------------


def _pids_under(state_dir: Path) -> list[int]:
    """Processes whose command line names the state directory (ours, and their shims)."""
    found = []
    marker = str(state_dir).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker in cmdline:
            found.append(int(entry.name))
    return found


def _kill_all(pids: list[int], grace: float = 10.0) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.2)
    for pid in pids:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie of ours is gone for every purpose here.
    with contextlib.suppress(OSError):
        if (Path("/proc") / str(pid) / "stat").read_text().split(") ", 1)[1].startswith("Z"):
            return False
    return True


def _mounts_under(prefixes: list[str]) -> list[str]:
    mounts = []
    for line in Path("/proc/mounts").read_text().splitlines():
        target = line.split()[1].replace("\\040", " ")
        if any(target == p or target.startswith(p.rstrip("/") + "/") for p in prefixes):
            mounts.append(target)
    return sorted(set(mounts), key=len, reverse=True)


def _unmount_all(prefixes: list[str]) -> None:
    for _ in range(3):
        mounts = _mounts_under(prefixes)
        if not mounts:
            return
        for target in mounts:
            if subprocess.run(["umount", target], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", target], capture_output=True)


def _delete_bridge() -> None:
    if subprocess.run(["ip", "link", "show", BRIDGE], capture_output=True).returncode == 0:
        subprocess.run(["ip", "link", "delete", BRIDGE], capture_output=True)


def _remove_kubelet_chains() -> None:
    for tool in ("iptables", "ip6tables"):
        for table, chain in (("filter", "INPUT"), ("filter", "OUTPUT"), ("nat", "POSTROUTING")):
            target = "KUBE-POSTROUTING" if chain == "POSTROUTING" else "KUBE-FIREWALL"
            while (
                subprocess.run(
                    [tool, "-t", table, "-D", chain, "-j", target], capture_output=True
                ).returncode
                == 0
            ):
                pass
        for table, chain in KUBELET_CHAINS:
            subprocess.run([tool, "-t", table, "-F", chain], capture_output=True)
        for table, chain in KUBELET_CHAINS:
            subprocess.run([tool, "-t", table, "-X", chain], capture_output=True)


def kube_rules_left() -> list[str]:
    """iptables rules and chains named KUBE-* or CNI-* (none should outlive a cluster)."""
    left = []
    for tool in ("iptables", "ip6tables"):
        for table in ("filter", "nat", "mangle"):
            out = subprocess.run([tool, "-t", table, "-S"], capture_output=True, text=True).stdout
            left += [
                f"{tool} {table}: {r}" for r in out.splitlines() if "KUBE-" in r or "CNI-" in r
            ]
    return left


def _kill_pod_processes() -> None:
    """SIGKILL every process left in the kubelet's pod cgroups (containers whose shim died)."""
    base = Path("/sys/fs/cgroup")
    pids: set[int] = set()
    for procs in base.glob("*/kubepods*/**/cgroup.procs"):
        with contextlib.suppress(OSError, ValueError):
            pids.update(int(line) for line in procs.read_text().split())
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _remove_cgroups() -> None:
    """The kubelet's cgroup hierarchy (kubepods*), deepest first, in every v1 controller."""
    base = Path("/sys/fs/cgroup")
    if not base.is_dir():
        return
    candidates: list[Path] = []
    for controller in base.iterdir():
        for name in ("kubepods", "kubepods.slice"):
            top = controller / name
            if top.is_dir():
                candidates += [p for p in top.rglob("*") if p.is_dir()] + [top]
    for path in sorted(candidates, key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            path.rmdir()


def cleanup(state_dir: Path | None, kube_proxy: Path | None = None) -> None:
    """Remove everything a cluster with this state directory left: idempotent, best effort."""
    if state_dir is not None:
        _kill_all(_pids_under(state_dir))
    _kill_pod_processes()
    if kube_proxy is not None and kube_proxy.exists():
        subprocess.run([str(kube_proxy), "--cleanup"], capture_output=True, timeout=60)
    _remove_kubelet_chains()
    image_store = str(_cache_root() / "cluster" / "containerd")
    _unmount_all([str(state_dir), image_store] if state_dir is not None else [image_store])
    # The pods' network namespaces: bind mounts named cni-* under /run/netns. Only the
    # cluster's exist while its lock is held (no other container runtime runs here).
    netns_dir = Path("/run/netns")
    for netns in netns_dir.glob("cni-*") if netns_dir.is_dir() else []:
        subprocess.run(["umount", str(netns)], capture_output=True)
        with contextlib.suppress(OSError):
            netns.unlink()
    _delete_bridge()
    for _ in range(10):
        _remove_cgroups()
        if not any(Path("/sys/fs/cgroup").glob("*/kubepods*")):
            break
        time.sleep(0.5)
    if state_dir is not None:
        shutil.rmtree(state_dir, ignore_errors=True)


@contextlib.contextmanager
def _host_lock(timeout: float) -> Iterator[None]:
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    handle = LOCK_FILE.open("a+")
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                handle.close()
                raise ClusterError(
                    f"another local cluster holds {LOCK_FILE} (waited {timeout:.0f}s)"
                ) from None
            time.sleep(1)
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


# --- the PVC provisioner ---------------------------------------------------------------------


class LocalProvisioner:
    """Binds Pending PVCs of the default StorageClass to local PVs in the state directory.

    Local volumes (not hostPath) so that the kubelet applies a pod's fsGroup, as a real
    provisioner's volumes get. Released PVs (reclaim policy Delete) are removed with their data.
    """

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.root = cluster.state_dir / "volumes"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="pv-provisioner", daemon=True)
        self.errors: list[str] = []

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.wait(2.0):
            try:
                self.reconcile()
            except (KubectlError, subprocess.SubprocessError, OSError, ValueError) as error:
                # Retried on the next pass; the last few are kept for a failing test's message.
                self.errors = [*self.errors[-9:], str(error)[:500]]

    def reconcile(self) -> None:
        claims = json.loads(self.cluster.kubectl_run("get", "pvc", "-A", "-o", "json").stdout)
        volumes = json.loads(self.cluster.kubectl_run("get", "pv", "-o", "json").stdout)
        bound = {(v["spec"].get("claimRef") or {}).get("uid") for v in volumes["items"]} - {None}
        for claim in claims["items"]:
            spec, meta = claim["spec"], claim["metadata"]
            if claim.get("status", {}).get("phase") != "Pending" or meta["uid"] in bound:
                continue
            if spec.get("storageClassName") not in (STORAGE_CLASS, None):
                continue
            self._provision(claim)
        for volume in volumes["items"]:
            if (
                volume["metadata"].get("annotations", {}).get("pv.kubernetes.io/provisioned-by")
                == PROVISIONER
                and volume.get("status", {}).get("phase") == "Released"
                and volume["spec"].get("persistentVolumeReclaimPolicy") == "Delete"
            ):
                self.cluster.kubectl_run(
                    "delete", "pv", volume["metadata"]["name"], "--wait=false", check=False
                )
                shutil.rmtree(volume["spec"]["local"]["path"], ignore_errors=True)

    def _provision(self, claim: dict[str, Any]) -> None:
        meta, spec = claim["metadata"], claim["spec"]
        name = f"pvc-{meta['uid']}"
        path = self.root / name
        path.mkdir(mode=0o755, exist_ok=True)
        volume = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {
                "name": name,
                "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER},
            },
            "spec": {
                "capacity": {"storage": spec["resources"]["requests"]["storage"]},
                "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Delete",
                "storageClassName": STORAGE_CLASS,
                "volumeMode": "Filesystem",
                "local": {"path": str(path)},
                "claimRef": {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "namespace": meta["namespace"],
                    "name": meta["name"],
                    "uid": meta["uid"],
                },
                "nodeAffinity": {
                    "required": {
                        "nodeSelectorTerms": [
                            {
                                "matchExpressions": [
                                    {
                                        "key": "kubernetes.io/hostname",
                                        "operator": "In",
                                        "values": [NODE_NAME],
                                    }
                                ]
                            }
                        ]
                    }
                },
            },
        }
        self.cluster.kubectl_run("create", "-f", "-", input=json.dumps(volume), check=False)


# --- a TCP relay from the bridge to a loopback service ------------------------------------


class BridgeRelay:
    """Listens on the node's bridge address and relays each connection to a loopback port.

    How pods reach a service that listens on 127.0.0.1 only (the local Golem network): the
    bridge is the cluster's own and has no route off the machine.
    """

    def __init__(self, target_port: int, listen_port: int = 0) -> None:
        self.target_port = target_port
        self._server = socket.create_server((NODE_IP, listen_port), backlog=64)
        self.port: int = self._server.getsockname()[1]
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="bridge-relay", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{NODE_IP}:{self.port}"

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)
            with contextlib.suppress(OSError):
                source.close()

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)
        self._server.close()


# --- the cluster --------------------------------------------------------------------------


@dataclass
class Cluster:
    """Starts and stops the single-node cluster; `with Cluster() as cluster:`."""

    control_bin: Path = field(default_factory=find_bin_dir)
    node_bin: Path | None = None
    images: dict[str, dict[str, str]] | None = None
    lock_timeout: float = 1800.0
    extra_tokens: dict[str, tuple[str, str]] = field(default_factory=dict)
    state_dir: Path = field(init=False)
    timings: dict[str, float] = field(default_factory=dict, init=False)
    _procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, init=False)
    _lock: contextlib.ExitStack = field(default_factory=contextlib.ExitStack, init=False)
    _provisioner: LocalProvisioner | None = field(default=None, init=False)
    etcd_port: int = field(default=0, init=False)

    # -- public helpers ------------------------------------------------------------------------

    @property
    def server(self) -> str:
        return f"https://{NODE_IP}:{API_PORT}"

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "admin.kubeconfig"

    @property
    def kubectl(self) -> Path:
        return self.control_bin / "kubectl"

    @property
    def helm(self) -> Path:
        return self.control_bin / "helm"

    @property
    def image_store(self) -> Path:
        """containerd's root: content and unpacked images, kept between clusters."""
        return _cache_root() / "cluster" / "containerd"

    @property
    def ca_file(self) -> Path:
        return self.state_dir / "pki" / "ca.crt"

    def operator_image(self) -> tuple[str, str]:
        """(repository, tag) of the project's image as built from the Dockerfile."""
        assert self.images is not None
        repository, tag = self.images["operator"]["ref"].rsplit(":", 1)
        return repository, tag

    @property
    def python_image(self) -> str:
        assert self.images is not None
        return self.images["python"]["ref"]

    def kubectl_run(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.kubectl), f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise KubectlError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    def helm_run(
        self, *args: str, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "HELM_CACHE_HOME": str(self.state_dir / "helm" / "cache"),
            "HELM_CONFIG_HOME": str(self.state_dir / "helm" / "config"),
            "HELM_DATA_HOME": str(self.state_dir / "helm" / "data"),
        }
        result = subprocess.run(
            [str(self.helm), f"--kubeconfig={self.kubeconfig}", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
        if check and result.returncode != 0:
            raise KubectlError(f"helm {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    def kubeconfig_for_token(self, token: str, user: str = "user") -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "golem-cluster",
                    "cluster": {"server": self.server, "certificate-authority": str(self.ca_file)},
                }
            ],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [
                {"name": "golem-cluster", "context": {"cluster": "golem-cluster", "user": user}}
            ],
            "current-context": "golem-cluster",
        }

    # -- start ---------------------------------------------------------------------------------

    def start(self, timeout: float = 180.0) -> Cluster:
        started = time.monotonic()
        if self.node_bin is None:
            self.node_bin = Path(_env_tools("GOLEM_OPERATOR_NODE_BIN") or build_node())
        for name in ("kubelet", "kube-controller-manager", "kube-scheduler", "kube-proxy"):
            if not (self.node_bin / name).is_file():
                raise ClusterError(f"{self.node_bin / name} is missing: run scripts/setup.sh")
        if self.images is None:
            self.images = build_images(self.node_bin)
        self.timings["build"] = time.monotonic() - started
        self._lock.enter_context(_host_lock(self.lock_timeout))
        try:
            self._cleanup_previous()
            self.state_dir = Path(tempfile.mkdtemp(prefix=f"golem-cluster-{os.getpid()}-"))
            self.state_dir.chmod(0o755)
            STATE_RECORD.write_text(
                json.dumps({"state_dir": str(self.state_dir), "node_bin": str(self.node_bin)})
            )
            phase = time.monotonic()
            self._pki()
            self._network()
            self._containerd()
            self._import_images()
            self.timings["containerd"] = time.monotonic() - phase
            phase = time.monotonic()
            self._control_plane(timeout)
            self._kubelet()
            self._kube_proxy()
            self._coredns()
            self._wait_node_ready(timeout)
            self._storage()
            self._wait_service_account(timeout)
            self.timings["cluster"] = time.monotonic() - phase
        except BaseException:
            self.stop()
            raise
        return self

    def _cleanup_previous(self) -> None:
        if not STATE_RECORD.exists():
            cleanup(None)
            return
        with contextlib.suppress(ValueError, OSError):
            record = json.loads(STATE_RECORD.read_text())
            node_bin = Path(record["node_bin"])
            cleanup(Path(record["state_dir"]), node_bin / "kube-proxy")
        STATE_RECORD.unlink(missing_ok=True)

    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> None:
        log = (self.state_dir / "logs" / f"{name}.log").open("ab")
        self._procs[name] = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
            cwd=self.state_dir,
        )

    def _check_procs(self) -> None:
        for name, proc in self._procs.items():
            if proc.poll() is not None:
                tail = (self.state_dir / "logs" / f"{name}.log").read_text(errors="replace")
                raise ClusterError(f"{name} exited with {proc.returncode}: {tail[-3000:]}")

    def _wait(self, what: str, check: Any, timeout: float, interval: float = 0.5) -> Any:
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            self._check_procs()
            try:
                value = check()
            except (OSError, KubectlError, subprocess.SubprocessError, ValueError) as error:
                value, last = None, error
            if value:
                return value
            time.sleep(interval)
        raise ClusterError(f"{what} not within {timeout:.0f}s (last: {last})")

    def _pki(self) -> None:
        pki = self.state_dir / "pki"
        pki.mkdir(parents=True)
        (self.state_dir / "logs").mkdir()

        def openssl(*args: str) -> None:
            _run(["openssl", *args])

        openssl("genrsa", "-out", str(pki / "ca.key"), "2048")
        openssl(
            "req", "-x509", "-new", "-key", str(pki / "ca.key"), "-subj", "/CN=golem-cluster-ca",
            "-days", "2", "-out", str(pki / "ca.crt"),
        )  # fmt: skip

        def sign(name: str, subject: str, usage: str, sans: str = "") -> None:
            openssl("genrsa", "-out", str(pki / f"{name}.key"), "2048")
            openssl(
                "req", "-new", "-key", str(pki / f"{name}.key"), "-subj", subject,
                "-out", str(pki / f"{name}.csr"),
            )  # fmt: skip
            ext = [
                "basicConstraints=CA:FALSE",
                "keyUsage=digitalSignature,keyEncipherment",
                f"extendedKeyUsage={usage}",
            ]
            if sans:
                ext.append(f"subjectAltName={sans}")
            (pki / f"{name}.ext").write_text("\n".join(ext) + "\n")
            openssl(
                "x509", "-req", "-in", str(pki / f"{name}.csr"), "-CA", str(pki / "ca.crt"),
                "-CAkey", str(pki / "ca.key"), "-CAcreateserial", "-days", "2",
                "-extfile", str(pki / f"{name}.ext"), "-out", str(pki / f"{name}.crt"),
            )  # fmt: skip

        names = ",".join(
            f"DNS:{n}"
            for n in (
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                f"kubernetes.default.svc.{CLUSTER_DOMAIN}",
                "localhost",
            )
        )
        sign(
            "apiserver",
            "/CN=kube-apiserver",
            "serverAuth",
            f"IP:{NODE_IP},IP:127.0.0.1,IP:{API_SERVICE_IP},{names}",
        )
        sign(
            "apiserver-kubelet-client",
            "/O=system:masters/CN=kube-apiserver-kubelet-client",
            "clientAuth",
        )
        sign(
            "kubelet",
            f"/CN={NODE_NAME}",
            "serverAuth",
            f"IP:{NODE_IP},IP:127.0.0.1,DNS:{NODE_NAME}",
        )
        openssl("genrsa", "-out", str(pki / "sa.key"), "2048")
        openssl("rsa", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub"))
        tokens = [f'{ADMIN_TOKEN},admin,admin,"system:masters"']
        tokens += [f'{t},{u},{u},"{g}"' for t, (u, g) in self.extra_tokens.items()]
        (pki / "tokens.csv").write_text("\n".join(tokens) + "\n")
        self.kubeconfig.write_text(yaml.safe_dump(self.kubeconfig_for_token(ADMIN_TOKEN, "admin")))

    def _network(self) -> None:
        # The bridge exists before the API server starts: its address is the bind address.
        _run(["ip", "link", "add", BRIDGE, "type", "bridge"])
        _run(["ip", "addr", "add", f"{NODE_IP}/16", "dev", BRIDGE])
        _run(["ip", "link", "set", BRIDGE, "up"])
        conf_dir = self.state_dir / "cni" / "net.d"
        conf_dir.mkdir(parents=True)
        conflist = {
            "cniVersion": "1.0.0",
            "name": "golem-cluster",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    # No masquerading and no default route: pods reach the node, each other and
                    # Services, and nothing else.
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "dataDir": str(self.state_dir / "cni" / "ipam"),
                        "ranges": [[{"subnet": POD_CIDR, "gateway": NODE_IP}]],
                        "routes": [{"dst": POD_CIDR}, {"dst": SERVICE_CIDR}],
                    },
                }
            ],
        }
        (conf_dir / "10-golem-cluster.conflist").write_text(json.dumps(conflist, indent=1))

    def _containerd(self) -> None:
        base = self.state_dir / "containerd"
        base.mkdir()
        # The image store outlives the cluster (importing the images costs a minute or more);
        # everything that runs (state, mounts, sockets) is in the state directory.
        self.image_store.mkdir(parents=True, exist_ok=True)
        config = f"""version = 2
root = "{self.image_store}"
state = "{base}/state"
[grpc]
  address = "{base}/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{self.images["pause"]["ref"] if self.images else ""}"
  # This machine withholds CAP_SYS_RESOURCE: runc cannot lower oom_score_adj.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        # runc's container state with the rest of the cluster's, not under /run/containerd.
        Root = "{base}/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{self.state_dir}/cni/net.d"
"""
        (base / "config.toml").write_text(config)
        self._spawn("containerd", ["containerd", "--config", str(base / "config.toml")])
        self._wait("containerd socket", lambda: (base / "containerd.sock").exists(), 30, 0.2)

    def ctr(self, *args: str, timeout: float = 300) -> str:
        sock = self.state_dir / "containerd" / "containerd.sock"
        return _run(["ctr", "--address", str(sock), "-n", "k8s.io", *args], timeout=timeout)

    def _import_images(self) -> None:
        """Import each image whose archive (named by its cache key) is not in the store yet."""
        assert self.images is not None
        record_path = self.image_store / "golem-imported.json"
        record: dict[str, str] = {}
        with contextlib.suppress(OSError, ValueError):
            record = json.loads(record_path.read_text())
        present = set(self.ctr("images", "ls", "-q").split())
        for image in self.images.values():
            if record.get(image["ref"]) == image["archive"] and image["ref"] in present:
                continue
            self.ctr("images", "import", image["archive"])
            record[image["ref"]] = image["archive"]
            record_path.write_text(json.dumps(record))
        # Project images of older keys: removed, so the store does not grow with every edit.
        wanted = {i["ref"] for i in self.images.values()}
        for ref in present - wanted:
            if ref.startswith(self.images["operator"]["ref"].rsplit(":", 1)[0] + ":"):
                self.ctr("images", "rm", ref)
                record.pop(ref, None)
        record_path.write_text(json.dumps(record))
        present = set(self.ctr("images", "ls", "-q").split())
        missing = [i["ref"] for i in self.images.values() if i["ref"] not in present]
        if missing:
            raise ClusterError(f"images not imported: {missing} (have {sorted(present)})")

    def _control_plane(self, timeout: float) -> None:
        assert self.node_bin is not None
        pki = self.state_dir / "pki"
        self.etcd_port, peer = _free_port(), _free_port()
        self._spawn(
            "etcd",
            [
                str(self.control_bin / "etcd"),
                f"--data-dir={self.state_dir / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{self.etcd_port}",
                f"--advertise-client-urls=http://127.0.0.1:{self.etcd_port}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=default=http://127.0.0.1:{peer}",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
        )
        self._spawn(
            "kube-apiserver",
            [
                str(self.control_bin / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
                f"--bind-address={NODE_IP}",
                f"--advertise-address={NODE_IP}",
                f"--secure-port={API_PORT}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
                f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
                f"--kubelet-certificate-authority={pki / 'ca.crt'}",
                "--kubelet-preferred-address-types=InternalIP",
                "--authorization-mode=Node,RBAC",
                f"--token-auth-file={pki / 'tokens.csv'}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--allow-privileged=true",
                f"--service-account-issuer=https://kubernetes.default.svc.{CLUSTER_DOMAIN}",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--enable-admission-plugins=NodeRestriction",
                "--profiling=false",
            ],
        )
        ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))

        def ready() -> bool:
            request = urllib.request.Request(  # noqa: S310 - our own https URL
                self.server + "/readyz", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
            )
            try:
                with urllib.request.urlopen(request, context=ctx, timeout=5) as response:  # noqa: S310
                    return bool(response.status == 200)
            except urllib.error.URLError:
                return False

        self._wait("kube-apiserver /readyz", ready, timeout)
        common = [
            f"--kubeconfig={self.kubeconfig}",
            f"--authentication-kubeconfig={self.kubeconfig}",
            f"--authorization-kubeconfig={self.kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={_free_port()}",
            "--leader-elect=false",
            "--profiling=false",
        ]
        self._spawn(
            "kube-controller-manager",
            [
                str(self.node_bin / "kube-controller-manager"),
                *common,
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                f"--cluster-signing-cert-file={pki / 'ca.crt'}",
                f"--cluster-signing-key-file={pki / 'ca.key'}",
                "--use-service-account-credentials=true",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--controllers=*,-cloud-node-lifecycle",
            ],
        )
        common[4] = f"--secure-port={_free_port()}"
        self._spawn("kube-scheduler", [str(self.node_bin / "kube-scheduler"), *common])

    def _kubelet(self) -> None:
        pki = self.state_dir / "pki"
        base = self.state_dir / "kubelet"
        (base / "manifests").mkdir(parents=True)
        # Pods resolve through CoreDNS on the node address; no host resolver is passed on.
        (base / "resolv.conf").write_text("")
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            # This machine has cgroup v1 (hybrid); the kubelet refuses it unless told.
            "failCgroupV1": False,
            "cgroupDriver": "cgroupfs",
            "containerRuntimeEndpoint": f"unix://{self.state_dir}/containerd/containerd.sock",
            "address": NODE_IP,
            "port": 10250,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": _free_port(),
            "tlsCertFile": str(pki / "kubelet.crt"),
            "tlsPrivateKeyFile": str(pki / "kubelet.key"),
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(pki / "ca.crt")},
            },
            "authorization": {"mode": "Webhook"},
            "clusterDNS": [NODE_IP],
            "clusterDomain": CLUSTER_DOMAIN,
            "resolvConf": str(base / "resolv.conf"),
            "staticPodPath": str(base / "manifests"),
            "failSwapOn": False,
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
            },
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "serializeImagePulls": False,
            "volumePluginDir": str(base / "volume-plugins"),
        }
        (base / "config.yaml").write_text(yaml.safe_dump(config))
        assert self.node_bin is not None
        self._spawn(
            "kubelet",
            [
                str(self.node_bin / "kubelet"),
                f"--config={base / 'config.yaml'}",
                f"--kubeconfig={self.kubeconfig}",
                f"--root-dir={base / 'root'}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={NODE_IP}",
                "--v=1",
            ],
        )

    def _kube_proxy(self) -> None:
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(self.kubeconfig)},
            "hostnameOverride": NODE_NAME,
            "mode": "iptables",
            "clusterCIDR": POD_CIDR,
            "nodePortAddresses": [POD_CIDR],
            # 0: leave the host's conntrack sysctls as they are.
            "conntrack": {
                "maxPerCore": 0,
                "tcpEstablishedTimeout": "0s",
                "tcpCloseWaitTimeout": "0s",
            },
            "metricsBindAddress": f"127.0.0.1:{_free_port()}",
            "healthzBindAddress": f"127.0.0.1:{_free_port()}",
        }
        path = self.state_dir / "kube-proxy.yaml"
        path.write_text(yaml.safe_dump(config))
        assert self.node_bin is not None
        self._spawn("kube-proxy", [str(self.node_bin / "kube-proxy"), f"--config={path}"])

    def _coredns(self) -> None:
        assert self.node_bin is not None
        if not (self.node_bin / "coredns").exists():
            raise ClusterError(f"{self.node_bin / 'coredns'} is missing: run scripts/setup.sh")
        health, ready = _free_port(), _free_port()
        corefile = f""".:53 {{
    bind {NODE_IP}
    errors
    health 127.0.0.1:{health}
    ready 127.0.0.1:{ready}
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {self.kubeconfig} golem-cluster
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
    cache 5
}}
"""
        path = self.state_dir / "Corefile"
        path.write_text(corefile)
        self._spawn("coredns", [str(self.node_bin / "coredns"), "-conf", str(path)])

        def answers() -> bool:
            with urllib.request.urlopen(f"http://127.0.0.1:{ready}/ready", timeout=2) as r:
                return bool(r.status == 200)

        self._wait("CoreDNS ready", answers, 60)

    def _wait_node_ready(self, timeout: float) -> None:
        def ready() -> bool:
            out = self.kubectl_run(
                "get",
                "node",
                NODE_NAME,
                "-o",
                'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
                check=False,
            )
            return out.stdout.strip() == "True"

        self._wait(f"node {NODE_NAME} Ready", ready, timeout, 1.0)

    def _storage(self) -> None:
        storage_class = {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {
                "name": STORAGE_CLASS,
                "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
            },
            "provisioner": PROVISIONER,
            "reclaimPolicy": "Delete",
            "volumeBindingMode": "Immediate",
        }
        self.kubectl_run("apply", "-f", "-", input=json.dumps(storage_class))
        self._provisioner = LocalProvisioner(self)
        self._provisioner.start()

    def _wait_service_account(self, timeout: float) -> None:
        # Pods are admitted only once their namespace's default ServiceAccount exists.
        self._wait(
            "default ServiceAccount",
            lambda: self.kubectl_run("get", "sa", "default", check=False).returncode == 0,
            timeout,
        )

    # -- stop ----------------------------------------------------------------------------------

    def delete_workloads(self, timeout: float = 120) -> None:
        """Delete every pod while the kubelet still runs, so it tears their sandboxes down."""
        self.kubectl_run(
            "delete", "pods", "--all", "-A", "--grace-period=1", f"--timeout={int(timeout)}s",
            check=False, timeout=timeout + 30,
        )  # fmt: skip

    def stop(self) -> None:
        try:
            if getattr(self, "state_dir", None) is None:
                return
            if self._provisioner is not None:
                self._provisioner.stop()
            if "kubelet" in self._procs and self._procs["kubelet"].poll() is None:
                with contextlib.suppress(subprocess.SubprocessError, KubectlError):
                    self.delete_workloads(timeout=60)
            order = [
                "coredns", "kube-proxy", "kubelet", "kube-scheduler",
                "kube-controller-manager", "kube-apiserver", "etcd",
            ]  # fmt: skip
            for name in order:
                proc = self._procs.get(name)
                if proc is not None and proc.poll() is None:
                    proc.terminate()
                    try:
                        proc.wait(timeout=15)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
            # Containers the kubelet did not get to, then containerd and its shims.
            with contextlib.suppress(ClusterError, subprocess.SubprocessError):
                for task in self.ctr("tasks", "ls", "-q", timeout=30).split():
                    self.ctr("tasks", "kill", "-s", "SIGKILL", task, timeout=30)
                    _run(["sleep", "0.5"])
                    self.ctr("tasks", "delete", task, timeout=30)
                # The store outlives the cluster: no container records may outlive it.
                for container in self.ctr("containers", "ls", "-q", timeout=30).split():
                    self.ctr("containers", "rm", container, timeout=30)
            containerd = self._procs.get("containerd")
            if containerd is not None and containerd.poll() is None:
                containerd.terminate()
                try:
                    containerd.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    containerd.kill()
                    containerd.wait()
            assert self.node_bin is not None
            cleanup(self.state_dir, self.node_bin / "kube-proxy")
            STATE_RECORD.unlink(missing_ok=True)
        finally:
            self._procs.clear()
            self._lock.close()

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def leftovers(state_dir: Path) -> dict[str, list[str]]:
    """What a stopped cluster must not have left behind (empty lists when clean)."""
    link = subprocess.run(["ip", "link", "show", BRIDGE], capture_output=True, text=True)
    return {
        "processes": [str(p) for p in _pids_under(state_dir)],
        "mounts": _mounts_under([str(state_dir), str(_cache_root() / "cluster" / "containerd")])
        + [str(p) for p in Path("/run/netns").glob("cni-*")],
        "cgroups": [str(p) for p in Path("/sys/fs/cgroup").glob("*/kubepods*")],
        "bridge": [BRIDGE] if link.returncode == 0 else [],
        "iptables": kube_rules_left(),
        "state_dir": [str(state_dir)] if state_dir.exists() else [],
    }


def main(argv: list[str] | None = None) -> int:
    """`python -m golem_operator.devenv.cluster up`: a cluster until Ctrl-C; `down` cleans up."""
    args = sys.argv[1:] if argv is None else argv
    command = args[0] if args else "up"
    if command == "down":
        with _host_lock(60):
            if STATE_RECORD.exists():
                record = json.loads(STATE_RECORD.read_text())
                cleanup(Path(record["state_dir"]), Path(record["node_bin"]) / "kube-proxy")
                STATE_RECORD.unlink(missing_ok=True)
        return 0
    if command != "up":
        print("usage: python -m golem_operator.devenv.cluster [up|down]", file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        with Cluster() as cluster:
            repository, tag = cluster.operator_image()
            print(f"cluster ready in {sum(cluster.timings.values()):.0f}s", flush=True)
            print(f"  export KUBECONFIG={cluster.kubeconfig}", flush=True)
            print(f"  image: {repository}:{tag} (imported into the node's containerd)", flush=True)
            print("Ctrl-C stops the cluster and removes everything it created.", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                stop.wait()
    except (ClusterError, ControlPlaneError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
