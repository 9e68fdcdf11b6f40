"""Provider churn: activities die under Running instances; replaced, and nothing left open.

The fast counterpart of the soak's churn: the local network crashes the activities of a
two-replica service one after the other (a provider machine dying). Each lost instance is
replaced on a new agreement, and the agreement of the dead activity is ended and its invoice
accepted once, not left open (and billable) until it expires.
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


def _running(cp: ControlPlane, namespace: str) -> list[dict[str, Any]]:
    instances = gsvc_status(cp, namespace, "churn").get("instances", [])
    return [i for i in instances if i["state"] == "Running"]


def test_crashed_activities_are_replaced_and_their_agreements_settled(
    control_plane: ControlPlane, rel_net: LocalNetProcess, rel_gate: DaemonGate, tmp_path: Path
) -> None:
    cp = control_plane
    namespace = f"churn-{uuid.uuid4().hex[:6]}"
    cp.kubectl_run("create", "namespace", namespace)
    operator = start_operator(tmp_path / "op", cp, rel_gate, rel_net, [namespace])
    try:
        doc = simple_manifest(replicas=2)
        doc["metadata"] = {"name": "churn"}
        cp.kubectl_run("apply", "-n", namespace, "-f", "-", input=json.dumps(doc))
        crashed: set[str] = set()
        for _ in range(2):
            victim = wait_for(
                "2 Running", lambda: (r := _running(cp, namespace)) and len(r) == 2 and r, 60
            )[0]
            rel_net.crash(victim["activityId"])
            crashed.add(victim["agreementId"])
            wait_for(
                "replacement",
                lambda v=victim: (
                    len(r := _running(cp, namespace)) == 2
                    and v["agreementId"] not in {i["agreementId"] for i in r}
                ),
                60,
            )

        def settled() -> bool:
            status = gsvc_status(cp, namespace, "churn")
            return not ledger_problems(ledger(rel_net.audit(), namespace, "churn", status))

        wait_for("the dead activities' agreements settled", settled, 30)
        status = gsvc_status(cp, namespace, "churn")
        book = ledger(rel_net.audit(), namespace, "churn", status)
        ended = {a["agreementId"]: a for a in book.agreements if a["agreementId"] in crashed}
        assert len(ended) == 2 and all(a["state"] == "Terminated" for a in ended.values())
        assert ledger_problems(book, Decimal("1.0")) == []
        assert duplicate_agreements(status) == []
        delete_all(cp, namespace, 90)
        assert ledger_problems(ledger(rel_net.audit(), namespace, "churn", {})) == []
    finally:
        operator.stop()
