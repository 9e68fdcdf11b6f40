"""A service's work lives and dies with its object as the API server has it.

- peering handover: operator A (priority 100) runs a service; B (priority 200) joins the same
  peering; A stops every Golem call and status write, B adopts what status records (no new
  agreement), then scales and deletes it;
- an object removed without its finalizer (stripped by hand), then recreated under the same
  name: the old worker settles the old object's agreements and never writes the new status;
- force-delete and recreate: the old worker stops driving its instances at once;
- terminate answering 5xx for a while: the instance stays Stopping, its agreement tracked,
  until the daemon accepts the termination.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from reliability_support import (
    APP_KEYS_USED,
    OPERATOR_LOGS,
    DaemonGate,
    delete_all,
    gsvc_status,
    node_name,
    start_operator,
    wait_for,
)

from golem_operator.devenv.controlplane import ControlPlane
from golem_operator.devenv.stack import LocalNetProcess, OperatorProcess
from support.operator_harness import ROOT, simple_manifest

PEERING_CRDS = ROOT / "charts" / "golem-operator" / "charts" / "kopf-peering" / "crds"
BEATS = "/golem/work/beats"
GOLEM_CALLS = "golem_operator_golem_api_request_duration_seconds_count"


def beating_manifest(replicas: int) -> dict[str, Any]:
    """A service whose run script appends a line to a file in its sandbox every second."""
    doc = simple_manifest(replicas=replicas)
    doc["spec"]["lifecycle"]["run"] = {
        "intervalSeconds": 1,
        "commands": [{"run": {"entrypoint": "/bin/sh", "args": ["-c", f"date >> {BEATS}"]}}],
    }
    return doc


def apply(cp: ControlPlane, namespace: str, name: str, doc: dict[str, Any]) -> None:
    doc = {**doc, "metadata": {"name": name}}
    cp.kubectl_run("apply", "-n", namespace, "-f", "-", input=json.dumps(doc))


def running(cp: ControlPlane, namespace: str, name: str, count: int) -> list[dict[str, Any]]:
    found = [i for i in gsvc_status(cp, namespace, name).get("instances", [])]
    live = [i for i in found if i["state"] == "Running"]
    return live if len(live) == count and len(found) == count else []


def agreements(net: LocalNetProcess, namespace: str, name: str) -> list[dict[str, Any]]:
    node = node_name(namespace, name)
    return [a for a in net.audit()["agreements"] if a.get("demandNodeName") == node]


def beats(net: LocalNetProcess, activity_id: str) -> int:
    text = net.read_file(activity_id, BEATS)
    return len((text or "").splitlines())


def metric_sum(text: str, name: str, labels: str = "") -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and labels in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def uid(cp: ControlPlane, namespace: str, name: str) -> str:
    out = cp.kubectl_run("get", "-n", namespace, "gsvc", name, "-o", "jsonpath={.metadata.uid}")
    return out.stdout.strip()


def terminate_leftover(net: LocalNetProcess, agreement_id: str) -> None:
    """End an agreement the test left open on purpose (force-delete settles nothing)."""
    with net.client() as http:
        http.post(
            f"/market-api/v1/agreements/{agreement_id}/terminate",
            json={"message": "test cleanup"},
        )


@pytest.fixture
def operators(
    tmp_path: Path, control_plane: ControlPlane, rel_gate: DaemonGate, rel_net: LocalNetProcess
) -> Iterator[Callable[..., OperatorProcess]]:
    started: list[OperatorProcess] = []

    def start(namespace: str, label: str, **peering: Any) -> OperatorProcess:
        if not peering:
            proc = start_operator(tmp_path / label, control_plane, rel_gate, rel_net, [namespace])
            started.append(proc)
            return proc
        workdir = tmp_path / label
        workdir.mkdir(parents=True, exist_ok=True)
        proc = OperatorProcess(
            workdir,
            control_plane.kubeconfig,
            rel_gate.url,
            rel_net.key_file,
            namespaces=[namespace],
            extra_env={"GOLEM_OPERATOR_LOG_LEVEL": "INFO"},
            **peering,
        )
        OPERATOR_LOGS.append(proc.log)
        APP_KEYS_USED.add(rel_net.app_key)
        started.append(proc.start())
        return proc

    yield start
    for proc in started:
        proc.stop()


def test_peering_handover(
    control_plane: ControlPlane,
    rel_net: LocalNetProcess,
    make_namespace: Callable[[], str],
    operators: Callable[..., OperatorProcess],
) -> None:
    cp, namespace, name = control_plane, make_namespace(), "handover"
    cp.kubectl_run("apply", "-f", str(PEERING_CRDS))
    cp.kubectl_run("wait", "--for=condition=Established", "crd/kopfpeerings.kopf.dev")
    peering = {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "gso"}}
    cp.kubectl_run("apply", "-n", namespace, "-f", "-", input=json.dumps(peering))

    first = operators(namespace, "a", peering="gso", priority=100)
    apply(cp, namespace, name, beating_manifest(2))
    before = wait_for("2 Running under A", lambda: running(cp, namespace, name, 2), 150)
    held = {i["agreementId"] for i in before}

    second = operators(namespace, "b", peering="gso", priority=200)

    def golem_calls() -> float:
        return metric_sum(first.metrics(), GOLEM_CALLS)

    def first_quiet() -> bool:
        # A's two instances run their script every second: any call from A shows within 4 s.
        before = golem_calls()
        time.sleep(4)
        return golem_calls() == before

    wait_for("A to stop calling Golem", first_quiet, 90)
    assert second.proc is not None and second.proc.poll() is None
    calls = golem_calls()
    patches = metric_sum(first.metrics(), "golem_operator_status_patches_total", name)
    # B adopts what status records: the same agreements, running scripts again.
    after = wait_for("2 Running under B", lambda: running(cp, namespace, name, 2), 90)
    assert {i["agreementId"] for i in after} == held
    for instance in after:
        count = beats(rel_net, instance["activityId"])
        wait_for(
            f"B's run script on {instance['name']}",
            lambda a=instance["activityId"], c=count: beats(rel_net, a) > c + 2,
            60,
        )
    assert len(agreements(rel_net, namespace, name)) == 2, "no agreement may be signed twice"

    # Scale and delete under B.
    cp.kubectl_run(
        "patch", "-n", namespace, "gsvc", name, "--type=merge", "-p", '{"spec":{"replicas":3}}'
    )
    wait_for("3 Running under B", lambda: running(cp, namespace, name, 3), 150)
    assert golem_calls() == calls, "the paused operator called Golem"
    assert metric_sum(first.metrics(), "golem_operator_status_patches_total", name) == patches, (
        "the paused operator wrote status"
    )
    mine = agreements(rel_net, namespace, name)
    assert len(mine) == 3, mine
    delete_all(cp, namespace, 180)
    ended = agreements(rel_net, namespace, name)
    assert {a["state"] for a in ended} == {"Terminated"}, ended
    assert golem_calls() == calls


def test_object_gone_without_finalizer_is_settled(
    control_plane: ControlPlane,
    rel_net: LocalNetProcess,
    make_namespace: Callable[[], str],
    operators: Callable[..., OperatorProcess],
) -> None:
    cp, namespace, name = control_plane, make_namespace(), "stripped"
    operator = operators(namespace, "op")
    apply(cp, namespace, name, beating_manifest(1))
    (old,) = wait_for("1 Running", lambda: running(cp, namespace, name, 1), 150)
    old_uid = uid(cp, namespace, name)
    # Frozen meanwhile, the operator cannot put its finalizer back before the deletion: the
    # object leaves the API server without any deletion handler running.
    assert operator.proc is not None
    os.killpg(operator.proc.pid, signal.SIGSTOP)
    try:
        cp.kubectl_run(
            "patch", "-n", namespace, "gsvc", name, "--type=json",
            "-p", '[{"op": "remove", "path": "/metadata/finalizers"}]',
        )  # fmt: skip
        cp.kubectl_run("delete", "-n", namespace, "gsvc", name, "--wait=true", "--timeout=30s")
    finally:
        os.killpg(operator.proc.pid, signal.SIGCONT)
    # The same name again at once: a new object (new uid) with its own worker.
    apply(cp, namespace, name, beating_manifest(1))
    assert uid(cp, namespace, name) != old_uid
    # The old worker settles the old object's agreement as a deletion would...
    wait_for(
        "the old agreement terminated",
        lambda: any(
            a["agreementId"] == old["agreementId"] and a["state"] == "Terminated"
            for a in agreements(rel_net, namespace, name)
        ),
        90,
    )
    activity = next(
        a for a in rel_net.audit()["activities"] if a["activityId"] == old["activityId"]
    )
    assert not activity["sandboxAlive"], activity
    # ...and never writes into the new object's status.
    (new,) = wait_for("1 Running (new object)", lambda: running(cp, namespace, name, 1), 150)
    assert new["agreementId"] != old["agreementId"]
    for _ in range(10):
        status = gsvc_status(cp, namespace, name)
        ids = {i.get("agreementId") for i in status.get("instances", [])}
        assert old["agreementId"] not in ids, status
        time.sleep(0.5)
    delete_all(cp, namespace, 120)
    assert {a["state"] for a in agreements(rel_net, namespace, name)} == {"Terminated"}


def test_force_delete_and_recreate_ends_the_old_worker(
    control_plane: ControlPlane,
    rel_net: LocalNetProcess,
    make_namespace: Callable[[], str],
    operators: Callable[..., OperatorProcess],
) -> None:
    cp, namespace, name = control_plane, make_namespace(), "forced"
    operators(namespace, "op")
    apply(cp, namespace, name, beating_manifest(1))
    (old,) = wait_for("1 Running", lambda: running(cp, namespace, name, 1), 150)
    wait_for("the run script beating", lambda: beats(rel_net, old["activityId"]) >= 2, 30)
    cp.kubectl_run(
        "annotate", "-n", namespace, "gsvc", name, "services.golem.network/force-delete=true"
    )
    cp.kubectl_run("delete", "-n", namespace, "gsvc", name, "--wait=true", "--timeout=60s")
    apply(cp, namespace, name, beating_manifest(1))
    (new,) = wait_for("1 Running (new object)", lambda: running(cp, namespace, name, 1), 150)
    try:
        assert new["agreementId"] != old["agreementId"]
        # Nothing drives the old instance any more: its run script stops beating.
        settled = beats(rel_net, old["activityId"])
        time.sleep(6)
        assert beats(rel_net, old["activityId"]) == settled
        # Force-delete settles nothing on Golem: the old agreement is left as it was.
        states = {a["agreementId"]: a["state"] for a in agreements(rel_net, namespace, name)}
        assert states[old["agreementId"]] == "Approved"
    finally:
        terminate_leftover(rel_net, old["agreementId"])
    delete_all(cp, namespace, 120)


def set_daemon_faults(net: LocalNetProcess, faults: list[dict[str, Any]]) -> list[dict[str, Any]]:
    with net.client() as http:
        response = http.put("/_localnet/daemon-faults", json=faults)
        response.raise_for_status()
        result: list[dict[str, Any]] = response.json()
        return result


def test_terminate_failing_with_5xx_keeps_the_agreement_tracked(
    control_plane: ControlPlane,
    rel_net: LocalNetProcess,
    make_namespace: Callable[[], str],
    operators: Callable[..., OperatorProcess],
) -> None:
    cp, namespace, name = control_plane, make_namespace(), "fivexx"
    operators(namespace, "op")
    apply(cp, namespace, name, beating_manifest(1))
    (instance,) = wait_for("1 Running", lambda: running(cp, namespace, name, 1), 150)
    agreement = instance["agreementId"]
    path = f"/market-api/v1/agreements/{agreement}/terminate"
    set_daemon_faults(rel_net, [{"path": path, "method": "POST", "status": 500}])
    try:
        cp.kubectl_run(
            "patch", "-n", namespace, "gsvc", name, "--type=merge", "-p", '{"spec":{"replicas":0}}'
        )
        # The daemon keeps failing: the instance stays Stopping, the agreement tracked.
        wait_for(
            "the instance Stopping",
            lambda: [
                i
                for i in gsvc_status(cp, namespace, name).get("instances", [])
                if i["name"] == instance["name"] and i["state"] == "Stopping"
            ],
            60,
        )
        time.sleep(8)
        (kept,) = [
            i
            for i in gsvc_status(cp, namespace, name).get("instances", [])
            if i["name"] == instance["name"]
        ]
        assert kept["state"] == "Stopping" and kept["agreementId"] == agreement, kept
        states = {a["agreementId"]: a["state"] for a in agreements(rel_net, namespace, name)}
        assert states[agreement] == "Approved"
    finally:
        set_daemon_faults(rel_net, [])
    # Once the daemon answers again, the termination goes through and is recorded.
    wait_for(
        "the agreement terminated",
        lambda: (
            {a["agreementId"]: a["state"] for a in agreements(rel_net, namespace, name)}[agreement]
            == "Terminated"
        ),
        90,
    )
    wait_for(
        "the instance Terminated in status",
        lambda: (
            [
                i
                for i in gsvc_status(cp, namespace, name).get("instances", [])
                if i["name"] == instance["name"] and i["state"] == "Terminated"
            ]
            or not [
                i
                for i in gsvc_status(cp, namespace, name).get("instances", [])
                if i["name"] == instance["name"]
            ]
        ),
        60,
    )
    delete_all(cp, namespace, 120)
