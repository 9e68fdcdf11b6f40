"""Price caps, the budget, status.spent, and the operator's metrics."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

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
    running = (
        f'golem_operator_instances{{namespace="{service.namespace}",'
        f'service="{service.name}",state="Running"}} 1.0'
    )

    # The gauges are set with the service's summary, within a status write interval.
    def scraped() -> str:
        text = operator.metrics()
        return text if running in text else ""

    text = service.wait("the Running gauge", scraped, 15)
    assert "golem_operator_golem_api_request_duration_seconds_bucket" in text
    assert f'golem_operator_reconciles_total{{namespace="{service.namespace}"' in text
    assert "golem_operator_status_patches_total" in text


def _allocation(service: Service) -> dict[str, Any]:
    allocation_id = service.status.get("allocationId")
    found = [a for a in service.net.audit()["allocations"] if a["allocationId"] == allocation_id]
    return found[0] if allocation_id and found else {}


def test_the_allocation_follows_the_budget(service: Service) -> None:
    service.apply(simple_manifest(replicas=1, budget="1.0"))
    first = service.wait("an allocation", lambda: _allocation(service), 30)
    assert Decimal(first["totalAmount"]) == Decimal("1.0")

    # Raised before anything is spent: the same allocation now holds the new budget.
    service.apply(simple_manifest(replicas=1, budget="2.5"))
    raised = service.wait(
        "the allocation raised",
        lambda: (a := _allocation(service)) and Decimal(a["totalAmount"]) != 1 and a,
        30,
    )
    assert raised["allocationId"] == first["allocationId"]
    left = Decimal(raised["totalAmount"]) - Decimal(raised["spentAmount"])
    assert abs(left - (Decimal("2.5") - Decimal(service.status["spent"]))) < Decimal("0.01")
    service.wait_running(1)

    # Lowered below what the running agreement may still cost (about 0.056 GLM over 15m): the
    # allocation keeps that, and the condition says the budget falls short.
    service.apply(simple_manifest(replicas=1, budget="0.01"))
    degraded = service.wait(
        "BudgetBelowCommitted",
        lambda: (c := service.condition("Degraded")).get("reason") == "BudgetBelowCommitted" and c,
        30,
    )
    assert "spec.budget 0.01 GLM is below" in degraded["message"]
    lowered = service.wait(
        "the allocation lowered",
        lambda: (a := _allocation(service)) and Decimal(a["totalAmount"]) < 2 and a,
        30,
    )
    assert Decimal(lowered["totalAmount"]) - Decimal(lowered["spentAmount"]) > Decimal("0.01")

    service.apply(simple_manifest(replicas=1, budget="3"))
    service.wait(
        "the shortfall cleared",
        lambda: service.condition("Degraded").get("reason") != "BudgetBelowCommitted",
        30,
    )
    final = service.wait(
        "the allocation raised again",
        lambda: (a := _allocation(service)) and Decimal(a["totalAmount"]) > 2 and a,
        30,
    )
    assert final["allocationId"] == first["allocationId"]
    left = Decimal(final["totalAmount"]) - Decimal(final["spentAmount"])
    # What the allocation can still pay is the budget left (a debit note may be accepted on
    # Golem a moment before status counts it).
    assert abs(left - (Decimal(3) - Decimal(service.status["spent"]))) < Decimal("0.01")
    events = service.events_by_reason()
    assert len(events.get("AllocationAmended", [])) >= 3
