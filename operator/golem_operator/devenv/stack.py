"""The local stack as processes: the local Golem network and the operator, beside a control plane.

Used by `golem-operator demo`, the integration tests and the benchmarks. Each piece is a real
process (so tests can kill -9 the operator and restart it); logs go to files in a work dir.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from golem_operator.constants import SERVICE_LABEL
from golem_operator.devenv.controlplane import ControlPlane, free_port

ROOT = Path(__file__).resolve().parents[3]


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"{proc.args!r:.120} exited {proc.returncode}: {log.read_text()[-2000:]}"
            )
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(url, timeout=1.0)
            return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout}s: {log.read_text()[-2000:]}")


@dataclass
class LocalNetProcess:
    """`golem-operator local-network` in a subprocess."""

    workdir: Path
    config: Path | None = None
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    key_file: Path = field(init=False)

    def __post_init__(self) -> None:
        self.key_file = self.workdir / "localnet.key"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def app_key(self) -> str:
        return self.key_file.read_text().strip()

    def start(self, timeout: float = 30.0) -> LocalNetProcess:
        if not self.port:
            self.port = free_port()
        log = self.workdir / "localnet.log"
        args = [
            sys.executable,
            "-m",
            "golem_operator.cli",
            "local-network",
            "--port",
            str(self.port),
        ]
        args += ["--app-key-file", str(self.key_file)]
        if self.config is not None:
            args += ["--config", str(self.config)]
        self.proc = subprocess.Popen(
            args, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True
        )
        _wait_http(self.url + "/me", self.proc, log, timeout)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.app_key}"}, timeout=30
        )

    def audit(self) -> dict[str, Any]:
        with self.client() as http:
            response = http.get("/_localnet/audit")
            response.raise_for_status()
            result: dict[str, Any] = response.json()
            return result

    def read_file(self, activity_id: str, path: str) -> str | None:
        with self.client() as http:
            response = http.get(f"/_localnet/activities/{activity_id}/files", params={"path": path})
            if response.status_code == 404:
                return None
            response.raise_for_status()
            return response.text

    def set_faults(self, provider: str, faults: dict[str, Any]) -> None:
        with self.client() as http:
            http.post(f"/_localnet/providers/{provider}/faults", json=faults).raise_for_status()

    def images(self) -> list[dict[str, Any]]:
        with self.client() as http:
            response = http.get("/_localnet/images")
            response.raise_for_status()
            result: list[dict[str, Any]] = response.json()
            return result

    def retag(self, tag: str, image_hash: str) -> None:
        """Point a registry tag at another of the network's images."""
        with self.client() as http:
            http.post(
                "/_localnet/images/tags", json={"tag": tag, "hash": image_hash}
            ).raise_for_status()

    def crash(self, activity_id: str) -> None:
        with self.client() as http:
            http.post(f"/_localnet/activities/{activity_id}/crash").raise_for_status()


@dataclass
class OperatorProcess:
    """`golem-operator run` in a subprocess, against a control plane and a Golem daemon."""

    workdir: Path
    kubeconfig: Path
    golem_url: str
    key_file: Path
    namespaces: list[str] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)
    #: The image registry; by default the Golem daemon's URL, since the stack's daemon is the
    #: local network, which serves the registry API for its images.
    image_registry: str | None = None
    proc: subprocess.Popen[bytes] | None = None
    metrics_port: int = 0
    health_port: int = 0
    starts: int = 0
    #: kopf peering name and priority (standby replicas); standalone when None
    peering: str | None = None
    priority: int = 0

    @property
    def log(self) -> Path:
        return self.workdir / "operator.log"

    def start(self, timeout: float = 60.0) -> OperatorProcess:
        self.metrics_port = free_port()
        self.health_port = free_port()
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "GOLEM_URL": self.golem_url,
            "GOLEM_APPKEY_FILE": str(self.key_file),
            "GOLEM_OPERATOR_METRICS_PORT": str(self.metrics_port),
            "GOLEM_OPERATOR_HEALTH_PORT": str(self.health_port),
            "GOLEM_OPERATOR_STATUS_INTERVAL": "0.5",
            "GOLEM_OPERATOR_BIND_ADDRESS": "127.0.0.1",
            "GOLEM_OPERATOR_IMAGE_REGISTRY": self.image_registry or self.golem_url,
            # Run results show within 2 s here (the default, 15 s, spares the API server at
            # scale; benchmarks set it back).
            "GOLEM_OPERATOR_RUN_RESULT_INTERVAL": "2",
            **self.extra_env,
        }
        args = [sys.executable, "-m", "golem_operator.cli", "run"]
        if self.peering:
            args += ["--peering", self.peering, "--priority", str(self.priority)]
        else:
            args.append("--standalone")
        for namespace in self.namespaces:
            args += ["--namespace", namespace]
        if not self.namespaces:
            args.append("--all-namespaces")
        self.starts += 1
        with self.log.open("ab") as log:
            log.write(f"\n=== operator start #{self.starts} ===\n".encode())
        self.proc = subprocess.Popen(
            args,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        _wait_http(f"http://127.0.0.1:{self.health_port}/healthz", self.proc, self.log, timeout)
        return self

    def kill(self) -> None:
        """SIGKILL: the crash that the recovery tests need."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None

    def metrics(self) -> str:
        return httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text


def gsvc(cp: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    out = cp.kubectl_run("get", "-n", namespace, "gsvc", name, "-o", "json", check=False)
    if out.returncode != 0:
        return {}
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def service_view(cp: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    """A GolemService with its instances: the service object, whose status gets an
    `instances` list built from its GolemServiceInstance objects (name + status each, in
    creation order), read in one request. {} when the service does not exist."""
    out = cp.kubectl_run("get", "-n", namespace, "gsvc,gsi", "-o", "json", check=False)
    if out.returncode != 0:
        return {}
    service: dict[str, Any] = {}
    instances: list[dict[str, Any]] = []
    for item in json.loads(out.stdout).get("items", []):
        meta = item["metadata"]
        if item["kind"] == "GolemService" and meta["name"] == name:
            service = item
        elif (meta.get("labels") or {}).get(SERVICE_LABEL) == name:
            instances.append(
                {
                    # An object whose first status write has not happened yet is Pending.
                    "state": "Pending",
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "revision": (item.get("spec") or {}).get("revision", ""),
                    "deleting": bool(meta.get("deletionTimestamp")),
                    **(item.get("status") or {}),
                }
            )
    if not service:
        return {}
    instances.sort(key=lambda i: _sequence(i["name"]))
    service.setdefault("status", {})["instances"] = instances
    return service


def _sequence(name: str) -> int:
    tail = name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0
