"""The real yagna daemon (PyPI golem-node 0.17.6) as a test fixture, isolated to loopback.

Called by the contract-suite conftest (`tests/contract/conftest.py`), once per session:
`async with running_yagna(workdir) as daemon:` yields a `YagnaDaemon` (REST url, requestor and
provider identities and app keys). Fails (raises `YagnaStartError`) if yagna cannot start; never
skips.

Isolation, in one picture::

    host network namespace                | private namespace (`unshare --net`, only lo, up)
    --------------------------------------+--------------------------------------------------
    test: httpx -> 127.0.0.1:<free port>  | realnet.netns_host (the anchor): accepts on
      (a listening socket the fixture     |   that host-side socket and relays each
       bound, inherited by the anchor)    |   connection to 127.0.0.1:7465 = yagna REST;
                                          |   serves a fake Ethereum JSON-RPC on :8545
                                          | yagna service run   (nsenter --net=<anchor>)
                                          | yagna CLI commands  (nsenter --net=<anchor>)

* The anchor process `golem_operator.realnet.netns_host` is exec'ed by `unshare --net`, brings
  `lo` up and refuses to run if any other interface exists. yagna and every `yagna` CLI call
  enter its namespace with `nsenter --net=/proc/<anchor>/ns/net`, so yagna can reach nothing but the
  namespace's own loopback: its relay, central-net, release-check and chain traffic all fail or
  land on the fake chain.
* The only bridge is one listening TCP socket that the test process bound on the host's
  127.0.0.1 and passed to the anchor: a socket keeps the namespace it was created in, so the
  anchor accepts on the host side and connects on the namespace side. It only accepts; nothing in
  the namespace can open a connection out.
* Inside the namespace the ports are fixed (7465 REST, 7464 GSB, ...): the namespace is new and
  private, so they are free by construction. The host-side port is chosen by the kernel.
* The namespace has no name and no bind mount: it disappears with its last process. Teardown
  stops yagna (SIGINT), the anchor (SIGTERM), then kills anything still inside the namespace,
  and checks that no process is left in it. yagna and the anchor also get a parent-death signal,
  so a killed test run does not leave them behind.
* Every endpoint yagna knows points at 127.0.0.1 (see `yagna_environment`); HOME, YAGNA_DATADIR
  and the logs live in a fresh directory per session. The second identity (`prov`) is created,
  given an app key, and yagna is restarted once so that it treats the identity as local;
  `yagna payment init --sender` / `--receiver` run after that restart (they do not persist).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from golem_operator.realnet.network import CHAINS, WRAPPER_CHAINS, ZERO_ADDRESS

YAGNA_VERSION = "0.17.6"
DEFAULT_YAGNA_BINARY = Path.home() / ".cache/golem-operator" / f"yagna-{YAGNA_VERSION}/bin/yagna"
PAYMENT_NETWORK = "holesky"
PAYMENT_PLATFORM = "erc20-holesky-tglm"
PROVIDER_ALIAS = "prov"

# Inside the private namespace; free by construction.
API_PORT = 7465
GSB_PORT = 7464
RELAY_PORT = 7477
NET_BIND_PORT = 11500
METRICS_PORT = 9092
CHAIN_PORT = 8545


START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
CLI_TIMEOUT_S = 30.0
NETNS_HOST_MODULE = "golem_operator.realnet.netns_host"
_APP_KEY_SHAPE = re.compile(r"^[0-9a-f]{32}$")


class YagnaStartError(RuntimeError):
    """yagna (or its namespace) could not be brought up; the message carries a log tail."""


@dataclass(frozen=True)
class YagnaDaemon:
    """A running yagna as the tests see it. Keys are kept out of repr."""

    url: str
    requestor_id: str
    provider_id: str
    datadir: Path
    daemon_pid: int
    namespace_pid: int
    requestor_key: str = field(repr=False)
    provider_key: str = field(repr=False)
    payment_platform: str = PAYMENT_PLATFORM


def yagna_binary() -> Path:
    """GOLEM_OPERATOR_YAGNA (written by scripts/setup.sh into .env.tools), else the cache path."""
    configured = os.environ.get("GOLEM_OPERATOR_YAGNA")
    return Path(configured) if configured else DEFAULT_YAGNA_BINARY


def yagna_environment(workdir: Path) -> dict[str, str]:
    """The daemon's whole environment: every endpoint on 127.0.0.1, state under `workdir`."""
    home = workdir / "home"
    datadir = workdir / "yagna-data"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "RUST_LOG": "info",
        "YAGNA_DATADIR": str(datadir),
        "YAGNA_LOG_DIR": str(datadir),
        "YAGNA_API_URL": f"http://127.0.0.1:{API_PORT}",
        "GSB_URL": f"tcp://127.0.0.1:{GSB_PORT}",
        "YA_NET_TYPE": "hybrid",
        "YA_NET_RELAY_HOST": f"127.0.0.1:{RELAY_PORT}",
        "YA_NET_BIND_URL": f"udp://127.0.0.1:{NET_BIND_PORT}",
        "CENTRAL_NET_HOST": f"127.0.0.1:{GSB_PORT}",
        "YAGNA_METRICS_URL": f"http://127.0.0.1:{METRICS_PORT}/",
        "YA_CONSENT_STATS": "deny",
    }
    for chain in CHAINS:
        env[f"{chain}_GETH_ADDR"] = f"http://127.0.0.1:{CHAIN_PORT}"
    for chain in WRAPPER_CHAINS:
        env[f"{chain}_WRAPPER_CONTRACT_ADDRESS"] = ZERO_ADDRESS
    return env


def processes_in_namespace(netns_inode: int) -> list[int]:
    """PIDs whose network namespace is the given one (by /proc/<pid>/ns/net inode)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if os.stat(entry / "ns/net").st_ino == netns_inode:
                pids.append(int(entry.name))
    return pids


def _tail(path: Path, secrets: Sequence[str], lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return f"(no log at {path})"
    joined = "\n".join(text)
    for secret in secrets:
        if secret:
            joined = joined.replace(secret, "<app-key>")
    return joined


class YagnaProcesses:
    """Owns the namespace anchor and the yagna daemon; `start()` then `stop()`, once each."""

    def __init__(self, workdir: Path, binary: Path | None = None) -> None:
        self.workdir = workdir
        self.binary = binary or yagna_binary()
        self.env = yagna_environment(workdir)
        self.anchor: subprocess.Popen[str] | None = None
        self.daemon: subprocess.Popen[bytes] | None = None
        self.netns_inode: int | None = None
        self.host_port: int | None = None
        self._starts = 0
        self._secrets: list[str] = []

    # -- namespace ---------------------------------------------------------------------------

    def _start_anchor(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        self.host_port = listener.getsockname()[1]
        anchor_log = (self.workdir / "netns-host.log").open("w")
        try:
            self.anchor = subprocess.Popen(
                [
                    "unshare",
                    "--net",
                    "--",
                    sys.executable,
                    "-m",
                    NETNS_HOST_MODULE,
                    "--relay-fd",
                    str(listener.fileno()),
                    "--api-port",
                    str(API_PORT),
                    "--chain-port",
                    str(CHAIN_PORT),
                ],
                pass_fds=[listener.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=anchor_log,
                text=True,
            )
        finally:
            listener.close()  # the anchor holds its own copy
            anchor_log.close()

    async def _wait_anchor_ready(self) -> None:
        assert self.anchor is not None and self.anchor.stdout is not None
        stdout = self.anchor.stdout
        line = await asyncio.wait_for(asyncio.to_thread(stdout.readline), timeout=20)
        if line.strip() != "READY":
            raise YagnaStartError(
                "network namespace anchor did not start:\n"
                + _tail(self.workdir / "netns-host.log", self._secrets)
            )
        self.netns_inode = os.stat(f"/proc/{self.anchor.pid}/ns/net").st_ino
        if self.netns_inode == os.stat("/proc/self/ns/net").st_ino:
            raise YagnaStartError("the anchor shares the test's network namespace")

    def _in_namespace(self, argv: Sequence[str]) -> list[str]:
        assert self.anchor is not None
        return ["nsenter", f"--net=/proc/{self.anchor.pid}/ns/net", "--", *argv]

    # -- daemon ------------------------------------------------------------------------------

    def _log_path(self) -> Path:
        return self.workdir / f"yagna-run-{self._starts}.log"

    async def _start_daemon(self) -> None:
        self._starts += 1
        with self._log_path().open("wb") as log:
            # Popen (not asyncio's) from the loop thread: the parent-death signal is tied to
            # the thread that forks, and the handle is used synchronously in stop().
            self.daemon = subprocess.Popen(  # noqa: ASYNC220
                self._in_namespace(
                    [
                        "setpriv",
                        "--pdeathsig",
                        "TERM",
                        "--",
                        str(self.binary),
                        "service",
                        "run",
                        "--disable-metrics-push",
                    ]
                ),
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        await self._wait_rest_ready()

    async def _wait_rest_ready(self) -> None:
        assert self.daemon is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        async with httpx.AsyncClient(base_url=self.url, timeout=2.0) as http:
            while time.monotonic() < deadline:
                if self.daemon.poll() is not None:
                    raise YagnaStartError(
                        f"yagna exited with {self.daemon.returncode} during start:\n"
                        + _tail(self._log_path(), self._secrets)
                    )
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get("/me")).status_code == 401:
                        return
                await asyncio.sleep(0.2)
        raise YagnaStartError(
            f"yagna REST not ready in {START_TIMEOUT_S} s:\n"
            + _tail(self._log_path(), self._secrets)
        )

    async def _stop_daemon(self) -> None:
        daemon, self.daemon = self.daemon, None
        if daemon is None or daemon.poll() is not None:
            return
        daemon.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(asyncio.to_thread(daemon.wait), STOP_TIMEOUT_S)
        except TimeoutError:
            daemon.kill()
            await asyncio.to_thread(daemon.wait)

    async def cli(self, *args: str) -> str:
        """Run `yagna ARGS` inside the namespace against the running daemon; stdout text."""
        proc = await asyncio.create_subprocess_exec(
            *self._in_namespace([str(self.binary), *args]),
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), CLI_TIMEOUT_S)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise YagnaStartError(f"`yagna {args[0]} {args[1]}` timed out") from None
        if proc.returncode != 0:
            stderr = err.decode(errors="replace")[-2000:]
            for secret in self._secrets:
                stderr = stderr.replace(secret, "<app-key>")
            raise YagnaStartError(
                f"`yagna {' '.join(args[:3])}` failed ({proc.returncode}): {stderr}"
            )
        return out.decode()

    async def _create_app_key(self, name: str, identity: str | None) -> str:
        args = ["--json", "app-key", "create", name]
        if identity:
            args += ["--id", identity]
        key = json.loads(await self.cli(*args))
        if not isinstance(key, str) or not _APP_KEY_SHAPE.match(key):
            raise YagnaStartError(f"unexpected `yagna app-key create` output for {name}")
        self._secrets.append(key)
        return key

    async def _payment_init(self, provider_id: str) -> None:
        await self.cli("payment", "init", "--sender", "--network", PAYMENT_NETWORK)
        await self.cli(
            "payment", "init", "--receiver", "--network", PAYMENT_NETWORK, "--account", provider_id
        )

    # -- public ------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self.host_port is not None
        return f"http://127.0.0.1:{self.host_port}"

    async def start(self) -> YagnaDaemon:
        if not os.access(self.binary, os.X_OK):
            raise YagnaStartError(
                f"yagna binary not found at {self.binary}: run scripts/setup.sh or set "
                "GOLEM_OPERATOR_YAGNA"
            )
        (self.workdir / "home").mkdir(parents=True, exist_ok=True)
        (self.workdir / "yagna-data").mkdir(parents=True, exist_ok=True)
        self._start_anchor()
        await self._wait_anchor_ready()
        await self._start_daemon()

        requestor_key = await self._create_app_key("requestor", None)
        created = json.loads(
            await self.cli("--json", "id", "create", "--no-password", PROVIDER_ALIAS)
        )
        provider_id = str(created["Ok"]["nodeId"])
        provider_key = await self._create_app_key("provider", provider_id)

        # yagna only routes to identities that existed when it started.
        await self._stop_daemon()
        await self._start_daemon()
        await self._payment_init(provider_id)

        async with httpx.AsyncClient(base_url=self.url, timeout=10.0) as http:
            me = await http.get("/me", headers={"Authorization": f"Bearer {requestor_key}"})
        assert self.daemon is not None and self.anchor is not None
        if me.status_code != 200:
            raise YagnaStartError(f"GET /me with the requestor key answered {me.status_code}")
        return YagnaDaemon(
            url=self.url,
            requestor_id=str(me.json()["identity"]),
            provider_id=provider_id,
            datadir=self.workdir / "yagna-data",
            daemon_pid=self.daemon.pid,
            namespace_pid=self.anchor.pid,
            requestor_key=requestor_key,
            provider_key=provider_key,
        )

    async def stop(self) -> None:
        """Stop yagna and the anchor; kill stragglers; the namespace goes with them."""
        await self._stop_daemon()
        anchor, self.anchor = self.anchor, None
        if anchor is not None:
            if anchor.poll() is None:
                anchor.terminate()
                try:
                    await asyncio.wait_for(asyncio.to_thread(anchor.wait), STOP_TIMEOUT_S)
                except TimeoutError:
                    anchor.kill()
                    await asyncio.to_thread(anchor.wait)
            if anchor.stdout is not None:
                anchor.stdout.close()
        if self.netns_inode is not None:
            for pid in processes_in_namespace(self.netns_inode):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while processes_in_namespace(self.netns_inode) and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            left = processes_in_namespace(self.netns_inode)
            if left:
                raise RuntimeError(f"processes left in the yagna test namespace: {left}")


@contextlib.asynccontextmanager
async def running_yagna(workdir: Path, binary: Path | None = None) -> AsyncIterator[YagnaDaemon]:
    """Start yagna in its own loopback-only namespace for the block; always tear it all down."""
    processes = YagnaProcesses(workdir, binary)
    try:
        yield await processes.start()
    finally:
        await processes.stop()
