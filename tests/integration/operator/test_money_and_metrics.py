"""Price caps, the budget, status.spent, and the operator's metrics."""

from __future__ import annotations

import time
from decimal import Decimal

from golem_operator.devenv.stack import OperatorProcess
from support.operator_harness import Service, simple_manifest


def test_offers_above_the_price_caps_are_never_signed(service: Service) -> None:
    doc = simple_manifest(replicas=1)
    doc["spec"]["market"]["providers"] = {"allow": ["pricey", "p-4"]}
    doc["spec"]["market"]["maxCpuPerHour"] = "1"
    service.apply(doc)
    running = service.wait_running(1)[0]
    assert running["provider"]["name"] == "p-4"
    assert not [a for a in service.agreements() if a["provider"] == "pricey"]


def test_budget_stops_new_instances_and_says_so(service: Service) -> None:
    doc = simple_manifest(replicas=1, budget="1")
    doc["spec"]["market"]["providers"] = {"allow": ["pricey"]}
    service.apply(doc)
    degraded = service.wait(
        "BudgetExhausted",
        lambda: (c := service.condition("Degraded")).get("reason") == "BudgetExhausted" and c,
        30,
    )
    assert "budget" in degraded["message"]
    pending = service.instances("Pending")
    assert pending and "no offer fits the budget" in pending[0]["message"]
    time.sleep(3)
    assert service.agreements() == []
    audit = service.net.audit()
    assert not [a for a in audit["agreements"] if a["provider"] == "pricey"]


def test_spent_matches_what_the_network_was_paid(service: Service) -> None:
    service.apply(simple_manifest(replicas=1))
    service.wait_running(1)
    service.wait("a debit note accepted", lambda: Decimal(service.status["spent"]) > 0, 40)
    service.delete(wait=True, timeout=120)
    audit = service.net.audit()
    paid = sum(
        Decimal(p["amount"])
        for p in audit["payments"]
        if p["agreementId"] in service.seen_agreements
    )
    invoices = [i for i in audit["invoices"] if i["agreementId"] in service.seen_agreements]
    assert invoices and all(i["status"] == "ACCEPTED" for i in invoices)
    assert paid == sum(Decimal(i["amount"]) for i in invoices)
    assert paid <= Decimal(simple_manifest()["spec"]["budget"])


def test_metrics_report_instances_and_golem_calls(
    service: Service, operator: OperatorProcess
) -> None:
    service.apply(simple_manifest(replicas=1))
    service.wait_running(1)
    text = operator.metrics()
    running = (
        f'golem_operator_instances{{namespace="{service.namespace}",'
        f'service="{service.name}",state="Running"}} 1.0'
    )
    assert running in text
    assert "golem_operator_golem_api_request_duration_seconds_bucket" in text
    assert f'golem_operator_reconciles_total{{namespace="{service.namespace}"' in text
    assert "golem_operator_status_patches_total" in text
