"""A provider that vanishes right after approving an agreement: the start fails there, the
instance is started on another provider, and the vanished agreement is ended and kept in status
(it holds money until settled), never left open.
"""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

from reliability_support import (
    DaemonGate,
    delete_all,
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

VANISHING = "r-1"
HEALTHY = "r-2"  # after r-1 by name: the chooser takes r-1 first at an equal price


def test_a_vanished_provider_is_left_and_its_agreement_ended(
    control_plane: ControlPlane, rel_net: LocalNetProcess, rel_gate: DaemonGate, tmp_path: Path
) -> None:
    cp = control_plane
    namespace = f"vanish-{uuid.uuid4().hex[:6]}"
    cp.kubectl_run("create", "namespace", namespace)
    rel_net.set_faults(VANISHING, {"vanish_after_approval": True})
    # The vanished provider's invoice never comes: deletion waits only briefly for it.
    operator = start_operator(
        tmp_path / "op",
        cp,
        rel_gate,
        rel_net,
        [namespace],
        extra_env={"GOLEM_OPERATOR_INVOICE_WAIT_SECONDS": "15"},
    )
    try:
        doc = simple_manifest(replicas=1)
        doc["metadata"] = {"name": "vanish"}
        doc["spec"]["market"]["providers"] = {"allow": [VANISHING, HEALTHY]}
        cp.kubectl_run("apply", "-n", namespace, "-f", "-", input=json.dumps(doc))

        def running() -> list[dict[str, Any]]:
            instances = gsvc_status(cp, namespace, "vanish").get("instances", [])
            return [i for i in instances if i["state"] == "Running"]

        replacement = wait_for("Running elsewhere", running, 90)[0]
        assert replacement["provider"]["name"] == HEALTHY
        status = gsvc_status(cp, namespace, "vanish")
        vanished = [
            i for i in status["instances"] if i.get("provider", {}).get("name") == VANISHING
        ]
        assert len(vanished) == 1, status["instances"]
        lost = vanished[0]
        # Tracked: the record keeps its agreement (money is settled per agreement).
        assert lost["state"] == "Terminated" and lost["agreementId"], lost
        assert "activity not created" in lost["message"], lost
        assert any(p for p in status["avoidedProviders"] if p != replacement["provider"]["id"])
        book = ledger(rel_net.audit(), namespace, "vanish", status)
        states = {a["agreementId"]: a for a in book.agreements}
        assert states[lost["agreementId"]]["state"] == "Terminated"
        assert states[lost["agreementId"]]["terminator"] == "Requestor"
        # Only the vanished provider's missing invoice may be missing.
        problems = ledger_problems(book, Decimal("1.0"))
        assert all(lost["agreementId"][:12] in p for p in problems), problems
        assert duplicate_agreements(status) == []
        # Deletion settles the rest (the vanished invoice never comes: its wait runs out).
        delete_all(cp, namespace, 150)
        after = ledger(rel_net.audit(), namespace, "vanish", {})
        assert not after.approved()
    finally:
        rel_net.set_faults(VANISHING, {"vanish_after_approval": False})
        operator.stop()
