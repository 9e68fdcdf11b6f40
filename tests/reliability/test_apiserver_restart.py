"""kube-apiserver killed and restarted on the same etcd: watches recover, no change is lost.

The operator keeps running across the restart (same process). A scale-up made right after the
API server is back, and a scale-down after that, must both be acted on: the first proves the
watch reconnected (or relisted) and saw a change made while it was down or reconnecting, the
second that the resumed watch stream delivers new events.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from reliability_support import (
    DaemonGate,
    duplicate_agreements,
    gsvc_status,
    ledger,
    ledger_problems,
    start_operator,
    wait_for,
)

from golem_operator.devenv.controlplane import ControlPlane
from golem_operator.devenv.stack import LocalNetProcess
from support.operator_harness import simple_manifest


def _live(status: dict[str, Any], state: str = "Running") -> list[dict[str, Any]]:
    return [i for i in status.get("instances", []) if i["state"] == state]


def test_apiserver_restart_loses_no_change(
    control_plane: ControlPlane, rel_net: LocalNetProcess, rel_gate: DaemonGate, tmp_path: Path
) -> None:
    cp, name = control_plane, "apirestart"
    namespace = f"api-{uuid.uuid4().hex[:6]}"
    cp.kubectl_run("create", "namespace", namespace)
    operator = start_operator(tmp_path / "op", cp, rel_gate, rel_net, [namespace])
    try:
        doc = simple_manifest(replicas=1)
        doc["metadata"] = {"name": name}
        cp.kubectl_run("apply", "-n", namespace, "-f", "-", input=json.dumps(doc))
        first = wait_for("1 Running", lambda: _live(gsvc_status(cp, namespace, name)) or None, 60)[
            0
        ]
        pid = operator.proc.pid if operator.proc else None

        cp.restart_apiserver()
        cp.kubectl_run("scale", "-n", namespace, "gsvc", name, "--replicas=2")
        wait_for("2 Running", lambda: len(_live(gsvc_status(cp, namespace, name))) == 2, 90)
        cp.kubectl_run("scale", "-n", namespace, "gsvc", name, "--replicas=1")

        def scaled_down() -> bool:
            status = gsvc_status(cp, namespace, name)
            live = [i for i in status["instances"] if i["state"] != "Terminated"]
            generation = json.loads(
                cp.kubectl_run("get", "-n", namespace, "gsvc", name, "-o", "json").stdout
            )["metadata"]["generation"]
            return len(live) == 1 and status.get("observedGeneration") == generation

        wait_for("scale-down to 1", scaled_down, 60)
        status = gsvc_status(cp, namespace, name)
        # The instance from before the restart kept its agreement (the newest was stopped).
        assert [i["agreementId"] for i in _live(status)] == [first["agreementId"]]
        assert duplicate_agreements(status) == []
        assert ledger_problems(ledger(rel_net.audit(), namespace, name, status)) == []
        assert operator.proc is not None and operator.proc.pid == pid
        assert operator.proc.poll() is None
    finally:
        cp.kubectl_run("delete", "-n", namespace, "gsvc", name, "--wait=false")
        wait_for(
            "deletion",
            lambda: cp.kubectl_run("get", "-n", namespace, "gsvc", name, check=False).returncode,
            90,
        )
        operator.stop()
    assert ledger_problems(ledger(rel_net.audit(), namespace, name, {})) == []
