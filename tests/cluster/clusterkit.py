"""Helpers of the cluster tier: Helm releases of the chart, pods, waiting."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from golem_operator.devenv.cluster import Cluster

CHART = Path(__file__).resolve().parents[2] / "charts" / "golem-operator"


def wait_for(what: str, predicate: Callable[[], Any], timeout: float, interval: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out ({timeout:.0f}s) waiting for {what}; last: {last!r:.2000}")


def create_namespace(cluster: Cluster, name: str) -> None:
    manifest = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    cluster.kubectl_run("apply", "-f", "-", input=json.dumps(manifest))


def helm_values(cluster: Cluster, tmp: Path, values: dict[str, Any]) -> Path:
    repository, tag = cluster.operator_image()
    base: dict[str, Any] = {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "operator": {"logFormat": "text"},
    }
    merged = _merge(base, values)
    path = tmp / f"values-{time.monotonic_ns()}.yaml"
    path.write_text(yaml.safe_dump(merged))
    return path


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def operator_pods(cluster: Cluster, namespace: str) -> list[dict[str, Any]]:
    out = cluster.kubectl_run(
        "get", "pods", "-n", namespace, "-l", "app.kubernetes.io/name=golem-operator", "-o", "json"
    )
    pods: list[dict[str, Any]] = json.loads(out.stdout)["items"]
    return pods


def ready_pod(cluster: Cluster, namespace: str, timeout: float = 300) -> dict[str, Any]:
    """The one operator pod, once every container is ready and none is being deleted."""

    def ready() -> dict[str, Any] | None:
        pods = [
            p for p in operator_pods(cluster, namespace) if "deletionTimestamp" not in p["metadata"]
        ]
        if len(pods) != 1:
            return None
        conditions = {c["type"]: c["status"] for c in pods[0]["status"].get("conditions", [])}
        return pods[0] if conditions.get("Ready") == "True" else None

    try:
        pod: dict[str, Any] = wait_for(f"a Ready operator pod in {namespace}", ready, timeout, 2)
    except AssertionError as error:
        described = cluster.kubectl_run("describe", "pods", "-n", namespace, check=False).stdout
        raise AssertionError(f"{error}\n{described[-6000:]}") from None
    return pod


def exec_in(
    cluster: Cluster,
    namespace: str,
    pod: str,
    *command: str,
    container: str = "operator",
    check: bool = True,
    input: str | None = None,
) -> Any:
    args = ["exec", "-n", namespace, pod, "-c", container]
    if input is not None:
        args.append("-i")
    return cluster.kubectl_run(*args, "--", *command, check=check, input=input)
