"""What one write costs the Kubernetes API server: a GolemService status patch, a scale, an Event.

Run from the repository root:  .venv/bin/python scripts/bench_apiserver.py [--atomic-lists]
Starts a local control plane (etcd + kube-apiserver on 127.0.0.1), installs the CRD, creates
one GolemService whose status holds 10 Running instances (what a 10-replica service writes),
then sends sequential merge patches of its status (one instance's lastRun changed each
time), scale patches, and Event posts, and prints the API server's and etcd's CPU per write
(from /proc) and the latency. `--atomic-lists` installs the CRD with its list-map types
(status.instances keyed by name, conditions by type) made atomic, to show what field-level
tracking of those lists costs. Explains the operator benchmark's API-server-bound phases;
see docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bench_common as bc
import httpx
import yaml
from bench_operator import GROUP_PATH, manifest

from golem_operator.devenv.controlplane import ADMIN_TOKEN, ControlPlane

STAMP = "2026-01-01T00:00:00+00:00"


def running_instance(index: int) -> dict[str, Any]:
    return {
        "name": f"svc-{index}",
        "state": "Running",
        "agreementId": f"{index:064x}",
        "activityId": f"{index:032x}",
        "provider": {"id": "0x" + "c" * 40, "name": f"bench-{index}"},
        "price": {"start": "0.001", "perCpuHour": "0.1", "perEnvHour": "0.02"},
        "approvedAt": STAMP,
        "agreementExpiresAt": STAMP,
        "lastRun": {"time": STAMP, "success": True, "stdout": "run\n", "stderr": ""},
        "spent": "0",
        "restarts": 0,
        "lastTransitionTime": STAMP,
        "message": "running",
    }


def atomic_crd(source: Path, target: Path) -> Path:
    """The CRD with every `x-kubernetes-list-type: map` made atomic."""
    doc = yaml.safe_load(source.read_text())

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("x-kubernetes-list-type") == "map":
                node["x-kubernetes-list-type"] = "atomic"
                node.pop("x-kubernetes-list-map-keys", None)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    target.write_text(yaml.safe_dump(doc))
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writes", type=int, default=300, help="writes of each kind")
    parser.add_argument("--atomic-lists", action="store_true")
    args = parser.parse_args()
    print(f"machine: {bc.machine()}")
    with tempfile.TemporaryDirectory(prefix="bench-apiserver-") as tmp, ControlPlane() as cp:
        crd = bc.ROOT / "crds" / "golemservices.yaml"
        if args.atomic_lists:
            crd = atomic_crd(crd, Path(tmp) / "crd.yaml")
        cp.kubectl_run("apply", "--server-side", "-f", str(crd))
        cp.kubectl_run(
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/golemservices.services.golem.network",
        )
        cp.kubectl_run("create", "namespace", "bench")
        http = httpx.Client(
            base_url=cp.server,
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            verify=False,  # noqa: S501 - the local API server's self-signed certificate
            timeout=30,
        )
        deadline = time.monotonic() + 60
        while http.get(f"{GROUP_PATH}/golemservices").status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError("the CRD is not served")
            time.sleep(0.2)
        objects = f"{GROUP_PATH}/namespaces/bench/golemservices"
        http.post(objects, json=manifest("svc", 10)).raise_for_status()
        status = {"instances": [running_instance(i) for i in range(10)], "replicas": 10}
        merge = {"Content-Type": "application/merge-patch+json"}
        written = http.patch(
            f"{objects}/svc/status", content=json.dumps({"status": status}), headers=merge
        )
        written.raise_for_status()
        print(f"object size: {len(written.content)} bytes of JSON")
        pids = {"kube-apiserver": cp._procs[1].pid, "etcd": cp._procs[0].pid}

        def patch_status(k: int) -> None:
            body = copy.deepcopy(status)
            body["instances"][k % 10]["lastRun"]["time"] = (
                f"2026-01-01T{k // 3600 % 24:02d}:{k // 60 % 60:02d}:{k % 60:02d}+00:00"
            )
            http.patch(
                f"{objects}/svc/status", content=json.dumps({"status": body}), headers=merge
            ).raise_for_status()

        def scale(k: int) -> None:
            body = {"spec": {"replicas": 10 + k % 2}}
            http.patch(
                f"{objects}/svc/scale", content=json.dumps(body), headers=merge
            ).raise_for_status()

        def event(k: int) -> None:
            body = {
                "metadata": {"generateName": "svc.", "namespace": "bench"},
                "involvedObject": {
                    "apiVersion": "services.golem.network/v1alpha1",
                    "kind": "GolemService",
                    "name": "svc",
                    "namespace": "bench",
                },
                "reason": "Running",
                "message": f"svc-{k}: Starting -> Running",
                "type": "Normal",
                "source": {"component": "golem-operator"},
                "firstTimestamp": "2026-01-01T00:00:00Z",
                "lastTimestamp": "2026-01-01T00:00:00Z",
                "count": 1,
            }
            http.post("/api/v1/namespaces/bench/events", json=body).raise_for_status()

        rows = []
        kinds: list[tuple[str, Callable[[int], None]]] = [
            ("status merge patch (10 instances)", patch_status),
            ("scale patch", scale),
            ("Event post", event),
        ]
        for label, write in kinds:
            before = {name: bc.cpu_seconds(pid) for name, pid in pids.items()}
            began = time.monotonic()
            for k in range(args.writes):
                write(k)
            seconds = time.monotonic() - began
            cpu = {name: bc.cpu_seconds(pid) - before[name] for name, pid in pids.items()}
            rows.append(
                [
                    label,
                    f"{1000 * cpu['kube-apiserver'] / args.writes:.1f}",
                    f"{1000 * cpu['etcd'] / args.writes:.1f}",
                    f"{1000 * seconds / args.writes:.1f}",
                ]
            )
        http.close()
    lists = "atomic" if args.atomic_lists else "as shipped (list-map)"
    print(f"CRD lists: {lists}; {args.writes} sequential writes of each kind")
    print(
        bc.table(
            ["write", "kube-apiserver CPU ms", "etcd CPU ms", "latency ms"],
            rows,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
