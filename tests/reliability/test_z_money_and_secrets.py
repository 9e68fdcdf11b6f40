"""Money and secrets over the whole suite (this module runs last: its name sorts last).

- Offers above the price caps are never accepted: the cheapest provider ("pricey", whose start
  price is above the cap) is taken by a service without caps and never by one with them.
- A tight budget holds: one instance fits, the others wait, BudgetExhausted says why.
- Across every scenario of the suite (crashes, outage, revoked key, API server restart,
  hostile values), what the local network paid for a service never exceeds its budget.
- The app key, and the content of every Secret the suite uploaded (plain or base64), never
  appear in what the suite captured: every operator log (tracebacks included), every Event of
  every namespace, every GolemService's status.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from reliability_support import (
    APP_KEYS_USED,
    OPERATOR_LOGS,
    UPLOADED_SECRETS,
    DaemonGate,
    delete_all,
    gsvc_status,
    ledger,
    ledger_problems,
    start_operator,
    wait_for,
)

from golem_operator.devenv.controlplane import ControlPlane
from golem_operator.devenv.stack import LocalNetProcess, OperatorProcess
from support.operator_harness import simple_manifest

#: Every service of the suite has this budget unless listed in BUDGETS (by node name).
DEFAULT_BUDGET = Decimal("1.0")
BUDGETS: dict[str, Decimal] = {}


@pytest.fixture(scope="module")
def money(
    control_plane: ControlPlane,
    rel_net: LocalNetProcess,
    rel_gate: DaemonGate,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[OperatorProcess, str]]:
    namespace = f"money-{uuid.uuid4().hex[:6]}"
    control_plane.kubectl_run("create", "namespace", namespace)
    work = tmp_path_factory.mktemp("money")
    operator = start_operator(work, control_plane, rel_gate, rel_net, [namespace])
    try:
        yield operator, namespace
        delete_all(control_plane, namespace, 90)
    finally:
        operator.stop()


def _apply(cp: ControlPlane, namespace: str, name: str, doc: dict[str, Any]) -> None:
    doc["metadata"] = {"name": name}
    cp.kubectl_run("apply", "-n", namespace, "-f", "-", input=json.dumps(doc))


def _providers(cp: ControlPlane, namespace: str, name: str) -> list[str]:
    instances = gsvc_status(cp, namespace, name).get("instances", [])
    return [i["provider"]["name"] for i in instances if i["state"] == "Running"]


def _market(allow_pricey: bool = True) -> dict[str, Any]:
    doc = simple_manifest(replicas=1)
    deny = doc["spec"]["market"]["providers"]["deny"]
    doc["spec"]["market"]["providers"]["deny"] = [p for p in deny if p != "pricey"]
    return doc


def test_offers_above_the_caps_are_never_accepted(
    control_plane: ControlPlane, rel_net: LocalNetProcess, money: tuple[OperatorProcess, str]
) -> None:
    cp, (_, namespace) = control_plane, money
    capped = _market()
    capped["spec"]["replicas"] = 3
    capped["spec"]["market"]["maxStartPrice"] = "0.01"  # pricey asks 0.02
    _apply(cp, namespace, "capped", capped)
    wait_for("3 Running", lambda: len(_providers(cp, namespace, "capped")) == 3, 60)
    assert "pricey" not in _providers(cp, namespace, "capped")
    # The refusal is visible: a Pending instance or the market says why, never an agreement.
    book = ledger(rel_net.audit(), namespace, "capped", gsvc_status(cp, namespace, "capped"))
    assert all(a["provider"] != "pricey" for a in book.agreements), book.agreements

    # Control: without the cap the same market takes pricey first (it is the cheapest).
    _apply(cp, namespace, "uncapped", _market())
    wait_for("uncapped Running", lambda: _providers(cp, namespace, "uncapped"), 60)
    assert _providers(cp, namespace, "uncapped") == ["pricey"]


def test_a_tight_budget_holds(
    control_plane: ControlPlane, rel_net: LocalNetProcess, money: tuple[OperatorProcess, str]
) -> None:
    cp, (_, namespace) = control_plane, money
    doc = simple_manifest(replicas=3)
    # One r-provider agreement can cost 0.056 GLM over its 15 minutes: one fits, not two.
    doc["spec"]["budget"] = "0.08"
    BUDGETS[f"golem-operator/{namespace}/tight"] = Decimal("0.08")
    _apply(cp, namespace, "tight", doc)

    def blocked() -> dict[str, Any]:
        status = gsvc_status(cp, namespace, "tight")
        degraded = next((c for c in status.get("conditions", []) if c["type"] == "Degraded"), {})
        running = [i for i in status.get("instances", []) if i["state"] == "Running"]
        return degraded if degraded.get("reason") == "BudgetExhausted" and running else {}

    degraded = wait_for("BudgetExhausted with one Running", blocked, 60)
    assert "0.08" in degraded["message"]
    status = gsvc_status(cp, namespace, "tight")
    assert len([i for i in status["instances"] if i.get("agreementId")]) == 1
    book = ledger(rel_net.audit(), namespace, "tight", status)
    assert ledger_problems(book, Decimal("0.08")) == []


def test_no_service_of_the_suite_was_paid_beyond_its_budget(
    rel_net: LocalNetProcess, money: tuple[OperatorProcess, str]
) -> None:
    audit = rel_net.audit()
    by_agreement = {a["agreementId"]: a.get("demandNodeName") for a in audit["agreements"]}
    paid: dict[str, Decimal] = {}
    for payment in audit["payments"]:
        node = by_agreement.get(payment["agreementId"]) or "?"
        paid[node] = paid.get(node, Decimal(0)) + Decimal(payment["amount"])
    assert paid, "the suite paid nothing: the check would be vacuous"
    over = {n: p for n, p in paid.items() if p > BUDGETS.get(n, DEFAULT_BUDGET)}
    assert over == {}
    # And no allocation was ever asked to cover more than the requestor's funds allowed.
    for allocation in audit["allocations"]:
        assert Decimal(allocation["totalAmount"]) <= Decimal("1000"), allocation


def test_the_app_key_and_uploaded_secrets_appear_nowhere(
    control_plane: ControlPlane, rel_net: LocalNetProcess, money: tuple[OperatorProcess, str]
) -> None:
    keys = APP_KEYS_USED | {rel_net.app_key}
    # Uploaded Secret content, plain and in base64 (hostile values uploads and prints some).
    keys |= UPLOADED_SECRETS | {base64.b64encode(v.encode()).decode() for v in UPLOADED_SECRETS}
    logs = [p for p in OPERATOR_LOGS if p.exists()]
    assert logs and all(k for k in keys)
    captured: dict[str, str] = {str(p): p.read_text(errors="replace") for p in logs}
    captured["events"] = control_plane.kubectl_run("get", "events", "-A", "-o", "json").stdout
    captured["gsvc"] = control_plane.kubectl_run("get", "gsvc", "-A", "-o", "json").stdout
    # The operator did talk to the daemon with the key (the scan is not vacuous).
    assert any("connected to Golem daemon" in text for text in captured.values())
    leaks = [
        (where, key[:4] + "…") for where, text in captured.items() for key in keys if key in text
    ]
    assert leaks == []
    assert sum(len(t) for t in captured.values()) > 10_000
