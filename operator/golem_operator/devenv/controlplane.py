"""A local Kubernetes control plane: etcd + kube-apiserver on free loopback ports.

Envtest-style (no kubelet, no controller-manager, no pods). Used by the test session fixture
and by `golem-operator demo`. Binaries come from scripts/build-control-plane.sh, found through
$GOLEM_OPERATOR_BIN. A control plane that cannot start raises: tests fail, never skip.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ADMIN_TOKEN = "golem-operator-test-admin"  # noqa: S105 - a throwaway token for a local server


class ControlPlaneError(RuntimeError):
    """The local control plane could not be started."""


class KubectlError(RuntimeError):
    """A kubectl command failed; the message carries its stderr."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def find_bin_dir() -> Path:
    """The directory holding kube-apiserver, etcd, kubectl and helm."""
    configured = os.environ.get("GOLEM_OPERATOR_BIN")
    if not configured:
        env_file = Path(__file__).resolve().parents[3] / ".env.tools"
        if env_file.exists():
            for line in env_file.read_text().splitlines():
                if line.startswith("export GOLEM_OPERATOR_BIN="):
                    configured = line.split("=", 1)[1].strip().strip('"')
    if not configured:
        raise ControlPlaneError(
            "GOLEM_OPERATOR_BIN is not set: run scripts/setup.sh (make setup) to build "
            "kube-apiserver, etcd, kubectl and helm"
        )
    path = Path(configured)
    for name in ("kube-apiserver", "etcd", "kubectl"):
        if not (path / name).is_file():
            raise ControlPlaneError(f"{path / name} is missing: run scripts/setup.sh")
    return path


@dataclass
class ControlPlane:
    """Starts and stops etcd and kube-apiserver; writes an admin kubeconfig."""

    bin_dir: Path = field(default_factory=find_bin_dir)
    workdir: Path | None = None
    extra_tokens: dict[str, tuple[str, str]] = field(default_factory=dict)
    _procs: list[subprocess.Popen[bytes]] = field(default_factory=list, init=False)
    _own_workdir: bool = field(default=False, init=False)
    etcd_port: int = field(default=0, init=False)
    api_port: int = field(default=0, init=False)

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    @property
    def kubeconfig(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "kubeconfig"

    @property
    def kubectl(self) -> Path:
        return self.bin_dir / "kubectl"

    def start(self, timeout: float = 90.0) -> ControlPlane:
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="golem-cp-"))
            self._own_workdir = True
        work = self.workdir
        (work / "pki").mkdir(parents=True, exist_ok=True)
        self.etcd_port, peer_port, self.api_port = free_port(), free_port(), free_port()

        etcd_log = (work / "etcd.log").open("wb")
        self._procs.append(
            subprocess.Popen(
                [
                    str(self.bin_dir / "etcd"),
                    f"--data-dir={work / 'etcd'}",
                    f"--listen-client-urls=http://127.0.0.1:{self.etcd_port}",
                    f"--advertise-client-urls=http://127.0.0.1:{self.etcd_port}",
                    f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                    f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                    f"--initial-cluster=default=http://127.0.0.1:{peer_port}",
                    "--unsafe-no-fsync=true",
                    "--log-level=warn",
                ],
                stdout=etcd_log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        sa_key = work / "sa.key"
        if not sa_key.exists():
            subprocess.run(
                ["openssl", "genrsa", "-out", str(sa_key), "2048"],
                check=True,
                capture_output=True,
            )
        tokens = [f'{ADMIN_TOKEN},admin,admin,"system:masters"']
        for token, (user, groups) in self.extra_tokens.items():
            tokens.append(f'{token},{user},{user},"{groups}"')
        (work / "tokens.csv").write_text("\n".join(tokens) + "\n")
        self._start_apiserver()
        self._wait_ready(timeout)
        self._write_kubeconfig()
        return self

    def _start_apiserver(self) -> None:
        work = self.workdir
        assert work is not None
        log = (work / "kube-apiserver.log").open("ab")
        sa_key = work / "sa.key"
        self._procs.append(
            subprocess.Popen(
                [
                    str(self.bin_dir / "kube-apiserver"),
                    f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
                    "--bind-address=127.0.0.1",
                    "--advertise-address=127.0.0.1",
                    f"--secure-port={self.api_port}",
                    f"--cert-dir={work / 'pki'}",
                    "--authorization-mode=RBAC",
                    f"--token-auth-file={work / 'tokens.csv'}",
                    "--service-cluster-ip-range=10.0.0.0/24",
                    "--disable-admission-plugins=ServiceAccount",
                    "--allow-privileged=true",
                    f"--service-account-issuer=https://127.0.0.1:{self.api_port}/",
                    f"--service-account-key-file={sa_key}",
                    f"--service-account-signing-key-file={sa_key}",
                    "--enable-priority-and-fairness=false",
                    "--profiling=false",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )

    def restart_apiserver(self, timeout: float = 90.0) -> None:
        """Kill kube-apiserver (SIGKILL) and start it again on the same etcd and port."""
        api = self._procs.pop()
        api.kill()
        api.wait()
        self._start_apiserver()
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        deadline = time.monotonic() + timeout
        last_error = "not started"
        for path in ("/readyz", "/api/v1/namespaces/default"):
            while True:
                for proc in self._procs:
                    if proc.poll() is not None:
                        self.stop()
                        raise ControlPlaneError(
                            f"{proc.args!r:.80} exited with {proc.returncode}; see {self.workdir}"
                        )
                request = urllib.request.Request(  # noqa: S310 - our own https URL
                    self.server + path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
                )
                try:
                    with urllib.request.urlopen(  # noqa: S310 - our own https URL
                        request, context=ctx, timeout=5
                    ) as response:
                        if response.status == 200:
                            break
                except (urllib.error.URLError, OSError) as error:
                    last_error = str(error)
                if time.monotonic() > deadline:
                    self.stop()
                    raise ControlPlaneError(
                        f"kube-apiserver not ready within {timeout}s ({path}: {last_error})"
                    )
                time.sleep(0.25)

    def _write_kubeconfig(self) -> None:
        self.kubeconfig.write_text(yaml.safe_dump(self.kubeconfig_dict(ADMIN_TOKEN, "admin")))

    def kubeconfig_dict(self, token: str, user: str) -> dict[str, object]:
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "local",
                    "cluster": {"server": self.server, "insecure-skip-tls-verify": True},
                }
            ],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": "local", "context": {"cluster": "local", "user": user}}],
            "current-context": "local",
        }

    def kubectl_run(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this control plane."""
        result = subprocess.run(
            [str(self.kubectl), f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and result.returncode != 0:
            raise KubectlError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    def install_crds(self, path: Path, timeout: float = 60.0) -> None:
        """Apply the CRDs under path and wait until every one is Established."""
        self.kubectl_run("apply", "--server-side", "--force-conflicts", "-f", str(path))
        names = self.kubectl_run("get", "-f", str(path), "-o", "name").stdout.split()
        self.wait_established(*names, timeout=timeout)

    def wait_established(self, *names: str, timeout: float = 60.0) -> None:
        """Wait until each CRD (crd/NAME or NAME) is Established."""
        deadline = time.monotonic() + timeout
        for name in names:
            name = name if "/" in name else f"crd/{name}"
            while True:
                # `kubectl wait` fails at once while .status.conditions is still empty: poll.
                out = self.kubectl_run(
                    "get",
                    name,
                    "-o",
                    'jsonpath={.status.conditions[?(@.type=="Established")].status}',
                    check=False,
                )
                if out.stdout.strip() == "True":
                    break
                if time.monotonic() > deadline:
                    raise ControlPlaneError(f"{name} not Established within {timeout}s")
                time.sleep(0.2)

    def stop(self) -> None:
        for proc in reversed(self._procs):
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        for proc in reversed(self._procs):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._procs.clear()
        if self._own_workdir and self.workdir is not None and not os.environ.get("KEEP_CP"):
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
