"""A private real Golem network on one machine: the real yagna software, loopback only.

`golem-operator real-network` and the real-network suite (`make realnet-test`) start it::

    host namespace                 | private network namespace (only lo; `unshare --net`)
    -------------------------------+-----------------------------------------------------------
    operator / tests               | netns_host (anchor): stand-in chain RPC :8545,
      -> 127.0.0.1:<port>  ------->|   image packages over HTTP :8080, relay -> requestor REST
                                   | ya-sb-router :7477 (central-net hub)
                                   | requestor yagna (REST :7465, GSB :7464)
                                   | provider k: yagna (REST/GSB :7465+10k/:7464+10k)
                                   |             + ya-provider (presets, prices)
                                   |             + exe-unit -> realnet.runtime (bubblewrap)

Everything but the relay's listening socket lives in the namespace, so no daemon can reach
anything but its own loopback (the release check and the public RPC pools fail on DNS). The
requestor and provider daemons are the released yagna (PyPI golem-node, cached by
scripts/setup.sh); ya-provider, exe-unit and the hub are built from the yagna source by
scripts/build-yagna-provider.sh. Images are tar.gz packages of the project's image folders,
named by `hash:sha3:<sha3-224 hex>:http://127.0.0.1:8080/<file>`, which exe-unit downloads and
checks before the runtime's deploy.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import httpx

YAGNA_VERSION = "0.17.6"
CACHE = Path.home() / ".cache" / "golem-operator"
PAYMENT_NETWORK = "holesky"
PAYMENT_PLATFORM = "erc20-holesky-tglm"
RUNTIME_NAME = "vm"

# Inside the private namespace: free by construction.
HUB_PORT = 7477
CHAIN_PORT = 8545
IMAGES_PORT = 8080
REQUESTOR_API_PORT = 7465
REQUESTOR_GSB_PORT = 7464
NET_BIND_PORT = 11500

CHAINS = (
    "MAINNET",
    "GOERLI",
    "HOLESKY",
    "MUMBAI",
    "POLYGON",
    "AMOY",
    "SEPOLIA",
    "HOODI",
    "RINKEBY",
)
WRAPPER_CHAINS = ("HOLESKY", "HOODI", "POLYGON", "AMOY")
ZERO_ADDRESS = "0x" + "00" * 20
ROOT = Path(__file__).resolve().parents[3]
DEFAULT_IMAGES = {"golem/simple-service:latest": ROOT / "examples" / "images" / "simple-service"}
BUILD_SCRIPT = ROOT / "scripts" / "build-yagna-provider.sh"


class RealNetworkError(RuntimeError):
    """A piece of the network could not be found or started; the message says which and why."""


@dataclass(frozen=True)
class ProviderSpec:
    """One provider node: a yagna and a ya-provider with one `vm` preset."""

    name: str
    cores: int = 2
    mem_gib: float = 4.0
    storage_gib: float = 20.0
    #: GLM: per activity, per CPU hour and per hour of the activity (the local network's units)
    start_price: Decimal = Decimal("0.001")
    per_cpu_hour: Decimal = Decimal("0.1")
    per_env_hour: Decimal = Decimal("0.02")


@dataclass(frozen=True)
class Image:
    tag: str
    file: str
    sha3: str
    url: str

    @property
    def task_package(self) -> str:
        return f"hash:sha3:{self.sha3}:{self.url}"


@dataclass
class _Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path


def provider_binaries() -> Path:
    """GOLEM_OPERATOR_PROVIDER_BIN, else the build script's cache folder for this version."""
    configured = os.environ.get("GOLEM_OPERATOR_PROVIDER_BIN")
    return Path(configured) if configured else CACHE / f"yagna-provider-{YAGNA_VERSION}" / "bin"


def yagna_binary() -> Path:
    configured = os.environ.get("GOLEM_OPERATOR_YAGNA")
    return Path(configured) if configured else CACHE / f"yagna-{YAGNA_VERSION}" / "bin" / "yagna"


def check_binaries(bin_dir: Path, yagna: Path) -> None:
    missing = [
        b for b in ("ya-provider", "exe-unit", "ya-sb-router") if not (bin_dir / b).is_file()
    ]
    if missing:
        raise RealNetworkError(
            f"provider binaries missing in {bin_dir} ({', '.join(missing)}): build them with "
            f"`YAGNA_SRC=<yagna checkout> {BUILD_SCRIPT.relative_to(ROOT)}` (the yagna source at "
            f"v{YAGNA_VERSION}; YAGNA_GIT_MIRRORS for offline git dependencies)"
        )
    if not os.access(yagna, os.X_OK):
        raise RealNetworkError(f"yagna not found at {yagna}: run scripts/setup.sh")
    for tool in ("unshare", "nsenter", "bwrap", "ip"):
        if shutil.which(tool) is None:
            raise RealNetworkError(f"{tool} is not installed (util-linux, bubblewrap, iproute2)")


def pack_image(source: Path, target: Path) -> str:
    """A reproducible tar.gz of an image folder (sorted, zero mtimes, root-owned); its sha3-224."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for path in sorted(source.rglob("*")):
            info = archive.gettarinfo(str(path), arcname=str(path.relative_to(source)))
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if path.is_file():
                with path.open("rb") as handle:
                    archive.addfile(info, handle)
            else:
                archive.addfile(info)
    import gzip

    data = gzip.compress(buffer.getvalue(), mtime=0)
    target.write_bytes(data)
    return hashlib.sha3_224(data).hexdigest()


def price_arguments(spec: ProviderSpec) -> list[str]:
    """ya-provider's linear coefficients are per unit of usage: seconds, CPU seconds."""
    hour = Decimal(3600)
    return [
        f"Duration={spec.per_env_hour / hour:f}",
        f"CPU={spec.per_cpu_hour / hour:f}",
        f"Init price={spec.start_price:f}",
    ]


def daemon_environment(home: Path, datadir: Path, api_port: int, gsb_port: int) -> dict[str, str]:
    """A yagna daemon's environment: central net through the hub, every endpoint on loopback."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "RUST_LOG": os.environ.get("GOLEM_REALNET_RUST_LOG", "info"),
        "YAGNA_DATADIR": str(datadir),
        "YAGNA_LOG_DIR": str(datadir),
        "YAGNA_API_URL": f"http://127.0.0.1:{api_port}",
        "GSB_URL": f"tcp://127.0.0.1:{gsb_port}",
        "YA_NET_TYPE": "central",
        "CENTRAL_NET_HOST": f"127.0.0.1:{HUB_PORT}",
        "YA_NET_RELAY_HOST": f"127.0.0.1:{HUB_PORT}",
        "YA_NET_BIND_URL": f"udp://127.0.0.1:{NET_BIND_PORT + gsb_port % 100}",
        "YAGNA_METRICS_URL": "http://127.0.0.1:9092/",
        "YA_CONSENT_STATS": "deny",
        # offers reach a new demand in seconds, not the production minutes
        "MEAN_CYCLIC_BCAST_INTERVAL": "3s",
        "MEAN_CYCLIC_UNSUBSCRIBES_INTERVAL": "3s",
    }
    for chain in CHAINS:
        env[f"{chain}_GETH_ADDR"] = f"http://127.0.0.1:{CHAIN_PORT}"
    for chain in WRAPPER_CHAINS:
        env[f"{chain}_WRAPPER_CONTRACT_ADDRESS"] = ZERO_ADDRESS
    return env


@dataclass
class RealNetwork:
    """The whole network as processes; `start()` then `stop()`."""

    workdir: Path
    providers: Sequence[ProviderSpec] = field(
        default_factory=lambda: [ProviderSpec("provider-1"), ProviderSpec("provider-2")]
    )
    subnet: str = "public"
    images: Mapping[str, Path] = field(default_factory=lambda: dict(DEFAULT_IMAGES))
    bin_dir: Path = field(default_factory=provider_binaries)
    yagna: Path = field(default_factory=yagna_binary)
    host_port: int = 0
    requestor_key: str = field(default="", repr=False)
    requestor_id: str = ""
    provider_ids: dict[str, str] = field(default_factory=dict)
    image_packages: dict[str, Image] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    _anchor: subprocess.Popen[str] | None = None
    _procs: list[_Proc] = field(default_factory=list)

    # -- paths and addresses -----------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.host_port}"

    @property
    def key_file(self) -> Path:
        return self.workdir / "requestor.key"

    def log(self, name: str) -> Path:
        return self.workdir / "logs" / f"{name}.log"

    def _netns(self) -> str:
        assert self._anchor is not None
        return f"/proc/{self._anchor.pid}/ns/net"

    def _in_ns(self, argv: Sequence[str]) -> list[str]:
        return ["nsenter", f"--net={self._netns()}", "--", *argv]

    # -- processes ---------------------------------------------------------------------------

    def _spawn(self, name: str, argv: Sequence[str], env: Mapping[str, str]) -> _Proc:
        log = self.log(name)
        with log.open("ab") as out:
            popen = subprocess.Popen(
                self._in_ns(["setpriv", "--pdeathsig", "TERM", "--", *argv]),
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        proc = _Proc(name, popen, log)
        self._procs.append(proc)
        return proc

    def _run(self, argv: Sequence[str], env: Mapping[str, str], timeout: float = 60) -> str:
        result = subprocess.run(
            self._in_ns(argv), env=dict(env), capture_output=True, text=True, timeout=timeout
        )
        if result.returncode != 0:
            raise RealNetworkError(
                f"`{Path(argv[0]).name} {' '.join(argv[1:4])}` failed ({result.returncode}): "
                f"{self._redact(result.stderr[-1500:] or result.stdout[-1500:])}"
            )
        return result.stdout

    def _payment_init(self, env: Mapping[str, str], proc: _Proc, *role: str) -> None:
        """`yagna payment init`, retried: the daemon answers on its GSB before its erc20
        driver has bound (`endpoint address not found`)."""
        deadline = time.monotonic() + 90
        argv = [str(self.yagna), "payment", "init", *role, "--network", PAYMENT_NETWORK]
        while True:
            self._alive(proc)
            try:
                self._run(argv, env)
                return
            except RealNetworkError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(1)

    def _redact(self, text: str) -> str:
        for key in [self.requestor_key, *self._provider_keys.values()]:
            if key:
                text = text.replace(key, "<app-key>")
        return text

    def _wait_tcp(self, port: int, proc: _Proc, timeout: float = 30) -> None:
        probe = (
            "import socket,sys\n"
            "s=socket.socket(); s.settimeout(1)\n"
            f"sys.exit(s.connect_ex(('127.0.0.1',{port})))"
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._alive(proc)
            check = subprocess.run(self._in_ns([sys.executable, "-c", probe]), check=False)
            if check.returncode == 0:
                return
            time.sleep(0.2)
        raise RealNetworkError(
            f"{proc.name} did not listen on {port} in {timeout}s: {self._tail(proc)}"
        )

    def _alive(self, proc: _Proc) -> None:
        if proc.popen.poll() is not None:
            raise RealNetworkError(
                f"{proc.name} exited with {proc.popen.returncode}: {self._tail(proc)}"
            )

    def _tail(self, proc: _Proc, lines: int = 25) -> str:
        try:
            text = proc.log.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return "(no log)"
        return self._redact("\n".join(text))

    # -- start -------------------------------------------------------------------------------

    def start(self) -> RealNetwork:
        check_binaries(self.bin_dir, self.yagna)
        self._provider_keys: dict[str, str] = {}
        started = time.monotonic()
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        try:
            self._pack_images()
            self._start_anchor()
            hub = self._spawn(
                "hub",
                [str(self.bin_dir / "ya-sb-router"), f"tcp://127.0.0.1:{HUB_PORT}"],
                {"RUST_LOG": "warn", "PATH": os.environ.get("PATH", "")},
            )
            self._wait_tcp(HUB_PORT, hub)
            self._start_requestor()
            for index, spec in enumerate(self.providers, start=1):
                self._start_provider(index, spec)
        except BaseException:
            self.stop()
            raise
        self.timings["start_seconds"] = round(time.monotonic() - started, 1)
        return self

    def _pack_images(self) -> None:
        folder = self.workdir / "images"
        folder.mkdir(parents=True, exist_ok=True)
        for tag, source in self.images.items():
            file = tag.replace("/", "_").replace(":", "_") + ".tar.gz"
            digest = pack_image(source, folder / file)
            url = f"http://127.0.0.1:{IMAGES_PORT}/{file}"
            self.image_packages[tag] = Image(tag, file, digest, url)
        (self.workdir / "images.json").write_text(
            json.dumps(
                {tag: image.task_package for tag, image in self.image_packages.items()}, indent=1
            )
        )

    def _start_anchor(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", self.host_port))
        listener.listen(64)
        self.host_port = listener.getsockname()[1]
        with self.log("netns-host").open("w") as anchor_log:
            try:
                self._anchor = subprocess.Popen(
                    [
                        "unshare",
                        "--net",
                        "--",
                        sys.executable,
                        "-m",
                        "golem_operator.realnet.netns_host",
                        "--relay-fd",
                        str(listener.fileno()),
                        "--api-port",
                        str(REQUESTOR_API_PORT),
                        "--chain-port",
                        str(CHAIN_PORT),
                        "--images-dir",
                        str(self.workdir / "images"),
                        "--images-port",
                        str(IMAGES_PORT),
                    ],
                    pass_fds=[listener.fileno()],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=anchor_log,
                    text=True,
                    start_new_session=True,
                )
            finally:
                listener.close()
        assert self._anchor.stdout is not None
        line = self._anchor.stdout.readline().strip()
        if line != "READY":
            raise RealNetworkError(
                "network namespace anchor did not start: "
                + self.log("netns-host").read_text()[-1500:]
            )
        if os.stat(self._netns()).st_ino == os.stat("/proc/self/ns/net").st_ino:
            raise RealNetworkError("the anchor shares this process's network namespace")

    def _yagna_env(self, name: str, api_port: int, gsb_port: int, key: str) -> dict[str, str]:
        base = self.workdir / name
        (base / "home").mkdir(parents=True, exist_ok=True)
        (base / "yagna").mkdir(parents=True, exist_ok=True)
        env = daemon_environment(base / "home", base / "yagna", api_port, gsb_port)
        env["YAGNA_AUTOCONF_APPKEY"] = key
        return env

    def _wait_identity(self, env: Mapping[str, str], proc: _Proc, timeout: float = 90) -> str:
        """Wait until the daemon answers on its GSB; its default identity."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._alive(proc)
            result = subprocess.run(
                self._in_ns([str(self.yagna), "--json", "id", "show"]),
                env=dict(env),
                capture_output=True,
                text=True,
                timeout=30,
            )
            if result.returncode == 0:
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    return str(json.loads(result.stdout)["Ok"]["nodeId"])
            time.sleep(0.5)
        raise RealNetworkError(f"{proc.name} did not come up in {timeout}s: {self._tail(proc)}")

    def _start_requestor(self) -> None:
        self.requestor_key = secrets.token_hex(16)
        env = self._yagna_env(
            "requestor", REQUESTOR_API_PORT, REQUESTOR_GSB_PORT, self.requestor_key
        )
        proc = self._spawn(
            "requestor-yagna", [str(self.yagna), "service", "run", "--disable-metrics-push"], env
        )
        self.requestor_id = self._wait_identity(env, proc)
        self._payment_init(env, proc, "--sender")
        deadline = time.monotonic() + 60
        while True:
            self._alive(proc)
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/me", timeout=2).status_code == 401:
                    break
            if time.monotonic() > deadline:
                raise RealNetworkError(f"requestor REST not reachable at {self.url}")
            time.sleep(0.2)
        fd = os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(self.requestor_key + "\n")

    def _runtime_wrapper(self) -> Path:
        wrapper = self.workdir / "runtime" / "golem-operator-vm-runtime"
        wrapper.parent.mkdir(parents=True, exist_ok=True)
        wrapper.write_text(
            "#!/bin/sh\n# the project's ExeUnit runtime (golem_operator.realnet.runtime)\n"
            f'exec "{sys.executable}" -m golem_operator.realnet.runtime "$@"\n'
        )
        wrapper.chmod(0o755)
        descriptor = [
            {
                "name": RUNTIME_NAME,
                "version": "0.1.0",
                "supervisor-path": str(self.bin_dir / "exe-unit"),
                "runtime-path": str(wrapper),
                "description": "golem-operator runtime: activity commands in a bubblewrap sandbox",
                "extra-args": [],
                "properties": {},
            }
        ]
        (wrapper.parent / "vm.json").write_text(json.dumps(descriptor, indent=1))
        return wrapper.parent

    def _start_provider(self, index: int, spec: ProviderSpec) -> None:
        api_port, gsb_port = REQUESTOR_API_PORT + 10 * index, REQUESTOR_GSB_PORT + 10 * index
        key = secrets.token_hex(16)
        self._provider_keys[spec.name] = key
        env = self._yagna_env(spec.name, api_port, gsb_port, key)
        proc = self._spawn(
            f"{spec.name}-yagna", [str(self.yagna), "service", "run", "--disable-metrics-push"], env
        )
        self.provider_ids[spec.name] = self._wait_identity(env, proc)
        self._payment_init(env, proc, "--receiver")
        descriptors = self._runtime_wrapper()
        agent = self.workdir / spec.name / "agent"
        agent.mkdir(parents=True, exist_ok=True)
        agent_env = {
            **env,
            "DATA_DIR": str(agent),
            "PROVIDER_LOG_DIR": str(agent / "logs"),
            "EXE_UNIT_PATH": str(descriptors / "*.json"),
            "YAGNA_APPKEY": key,
            "NODE_NAME": spec.name,
            "SUBNET": self.subnet,
            "YA_PAYMENT_NETWORK": PAYMENT_NETWORK,
            "YA_RT_CORES": str(spec.cores),
            "YA_RT_MEM": str(spec.mem_gib),
            "YA_RT_STORAGE": str(spec.storage_gib),
            # ya-provider refuses agreements shorter than 5 min by default; renewal tests use
            # shorter ones (a provider setting, as `ya-provider run --min-agreement-expiration`)
            "MIN_AGREEMENT_EXPIRATION": "30s",
        }
        provider = str(self.bin_dir / "ya-provider")
        preset = ["preset", "create", "--no-interactive", "--preset-name", RUNTIME_NAME]
        preset += ["--exe-unit", RUNTIME_NAME, "--pricing", "linear"]
        self._run([provider, *preset, "--price", *price_arguments(spec)], agent_env)
        self._run([provider, "preset", "activate", "vm"], agent_env)
        # the preset ya-provider creates by itself names a wasmtime runtime that is not here
        self._run([provider, "preset", "deactivate", "default"], agent_env)
        self._spawn(f"{spec.name}-agent", [provider, "run"], agent_env)

    # -- stop --------------------------------------------------------------------------------

    def stop(self) -> None:
        """Agents first, then daemons, the hub last; then whatever is left in the namespace."""
        order = sorted(
            self._procs,
            key=lambda p: 0 if p.name.endswith("-agent") else 2 if p.name == "hub" else 1,
        )
        for proc in order:
            if proc.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.popen.pid, signal.SIGINT)
            try:
                proc.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.popen.pid, signal.SIGKILL)
                proc.popen.wait()
        self._procs.clear()
        anchor, self._anchor = self._anchor, None
        if anchor is not None:
            inode = os.stat(f"/proc/{anchor.pid}/ns/net").st_ino if anchor.poll() is None else None
            anchor.terminate()
            try:
                anchor.wait(timeout=15)
            except subprocess.TimeoutExpired:
                anchor.kill()
                anchor.wait()
            if anchor.stdout is not None:
                anchor.stdout.close()
            if inode is not None:
                for pid in processes_in_namespace(inode):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)

    def summary(self) -> dict[str, object]:
        return {
            "url": self.url,
            "appKeyFile": str(self.key_file),
            "requestor": self.requestor_id,
            "providers": self.provider_ids,
            "subnet": self.subnet,
            "paymentPlatform": PAYMENT_PLATFORM,
            "images": {tag: image.task_package for tag, image in self.image_packages.items()},
            "logs": str(self.workdir / "logs"),
        }


def processes_in_namespace(netns_inode: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.stat(entry / "ns/net").st_ino == netns_inode:
                    pids.append(int(entry.name))
    return pids
