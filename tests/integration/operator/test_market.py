"""The service's demand on the local Golem network: kept across scaling, replaced when what it
says changes, and published again when Pending instances find no usable offer."""

from __future__ import annotations

import json
from typing import Any

from support.operator_harness import Service, simple_manifest

#: Providers only this module rents (providers.yaml); counter-proposals to them fail on demand.
SHY = ["shy-1", "shy-2", "shy-3"]


def patch_spec(service: Service, spec: dict[str, Any]) -> None:
    service.cp.kubectl_run(
        "patch",
        "-n",
        service.namespace,
        f"gsvc/{service.name}",
        "--type=merge",
        "-p",
        json.dumps({"spec": spec}),
    )


def observed(service: Service) -> bool:
    return bool(service.status.get("observedGeneration") == service.get()["metadata"]["generation"])


def live_demands(service: Service) -> set[str]:
    return set(service.net.audit()["demands"])


def test_scaling_and_budget_keep_the_demand_and_a_payload_change_replaces_it(
    service: Service,
) -> None:
    service.apply(simple_manifest(replicas=1))
    service.wait_running(1)
    demand = service.status["demandId"]
    assert demand in live_demands(service)

    service.cp.kubectl_run("scale", "-n", service.namespace, f"gsvc/{service.name}", "--replicas=3")
    running = service.wait_running(3)
    patch_spec(service, {"budget": "2.0"})
    service.wait("the budget change observed", lambda: observed(service), 30)
    status = service.status
    assert status["demandId"] == demand
    assert demand in live_demands(service)
    assert len(service.seen("demandId")) == 1  # never replaced in between

    # What the demand asks for changes: a new demand, the old one withdrawn, and the
    # Running instances keep their agreements.
    patch_spec(service, {"payload": {"minMemGib": 1.0}})
    replaced = service.wait(
        "a new demand",
        lambda: (d := service.status.get("demandId")) and d != demand and d,
        60,
    )
    assert replaced in live_demands(service)
    assert demand not in live_demands(service)
    still = {i["agreementId"] for i in service.instances("Running")}
    assert {i["agreementId"] for i in running} <= still


def daemon_faults(service: Service, faults: list[dict[str, Any]]) -> None:
    with service.net.client() as http:
        http.post("/_localnet/daemon-faults", json={"faults": faults}).raise_for_status()


def fired(service: Service) -> int:
    with service.net.client() as http:
        answer = http.get("/_localnet/daemon-faults")
        answer.raise_for_status()
        return sum(int(f["failures"]) for f in answer.json())


def test_instances_whose_negotiations_failed_all_run_once_the_providers_are_usable(
    service: Service,
) -> None:
    # Every provider this service may rent fails its first negotiation: each offer is spent
    # and its provider avoided for a while. The same demand would never offer them again.
    daemon_faults(
        service,
        [
            {
                "path": "/market-api/v1/demands/*/proposals/*",
                "method": "POST",
                "status": 500,
                "count": len(SHY),
                "message": "counter-proposal lost (injected fault)",
            }
        ],
    )
    try:
        doc = simple_manifest(replicas=len(SHY))
        doc["spec"]["market"]["providers"] = {"allow": SHY}
        service.apply(doc)
        service.wait("every first negotiation failed", lambda: fired(service) == len(SHY), 60)
        first = service.status["demandId"]
        assert len(service.instances("Pending")) == len(SHY)
        running = service.wait_running(len(SHY), timeout=180)
    finally:
        daemon_faults(service, [])
    assert {i["provider"]["name"] for i in running} == set(SHY)
    assert service.status["demandId"] != first
    assert first not in live_demands(service)
    refreshed = service.events_by_reason().get("DemandRefreshed", [])
    assert refreshed and first in refreshed[0], refreshed
