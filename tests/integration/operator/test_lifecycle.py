"""Create, run, scale and delete GolemServices on the local Golem network."""

from __future__ import annotations

from decimal import Decimal

from support.operator_harness import Service, simple_manifest


def test_create_runs_every_replica_and_the_start_script(service: Service) -> None:
    service.apply(simple_manifest(replicas=2))
    running = service.wait_running(2)
    providers = {i["provider"]["id"] for i in running}
    assert len(providers) == 2
    for instance in running:
        assert instance["agreementId"] and instance["activityId"]
        # The start script launched the simulator: its pid file exists inside the activity.
        pid = service.net.read_file(instance["activityId"], "/golem/work/simulate_observations.pid")
        assert pid and pid.strip().isdigit()

    def stats() -> bool:
        return all(
            (i.get("lastRun") or {}).get("success") and '"count"' in i["lastRun"]["stdout"]
            for i in service.instances("Running")
        )

    service.wait("run output in status", stats, 30)
    # The summary follows the instance objects within a status write interval.
    service.wait("readyReplicas 2", lambda: service.status.get("readyReplicas") == 2, 15)
    status = service.status
    assert status["readyReplicas"] == 2 and status["replicas"] == 2
    assert status["phase"] == "Running"
    assert status["selector"] == f"services.golem.network/service={service.name}"
    assert service.condition("Ready")["status"] == "True"
    assert service.condition("Degraded")["status"] == "False"
    assert status["observedGeneration"] == service.get()["metadata"]["generation"]
    assert status["allocationId"] and status["demandId"]
    reasons = service.events_by_reason()
    assert {"Created", "AgreementSigned", "Started"} <= set(reasons)
    # Debit notes are validated and accepted while it runs: spent grows.
    service.wait("debit notes accepted", lambda: Decimal(service.status["spent"]) > 0, 30)


def test_scale_up_and_down_with_kubectl_scale(service: Service) -> None:
    service.apply(simple_manifest(replicas=1))
    first = service.wait_running(1)[0]
    service.cp.kubectl_run("scale", "-n", service.namespace, f"gsvc/{service.name}", "--replicas=3")
    running = service.wait_running(3)
    newest = max(running, key=lambda i: i["startedAt"])
    service.cp.kubectl_run("scale", "-n", service.namespace, f"gsvc/{service.name}", "--replicas=2")
    service.wait_running(2)
    stopped = service.wait(
        "one instance Terminated",
        lambda: [
            i for i in service.instances("Terminated") if i.get("stoppingReason") == "ScaleDown"
        ],
    )
    assert len(stopped) == 1
    # Scale-down stops the newest Running instance, not the oldest.
    assert stopped[0]["name"] != first["name"]
    assert stopped[0]["name"] == newest["name"] or stopped[0]["startedAt"] >= first["startedAt"]
    marker = service.net.read_file(stopped[0]["activityId"], "/golem/work/stopped")
    assert marker is not None, "the stop script did not run"
    # The summary follows the instance objects within a status write interval.
    service.wait("the summary at 2 replicas", lambda: service.status["replicas"] == 2, 15)


def test_delete_runs_stop_scripts_and_settles_every_agreement(service: Service) -> None:
    service.apply(simple_manifest(replicas=2))
    running = service.wait_running(2)
    service.delete(wait=True, timeout=120)
    for instance in running:
        assert service.net.read_file(instance["activityId"], "/golem/work/stopped") is not None
    service.assert_settled()
    audit = service.net.audit()
    allocations = [
        a for a in audit["allocations"] if a["allocationId"] in service.seen("allocationId")
    ]
    assert allocations and all(a["released"] for a in allocations)
    assert service.seen("demandId") and not set(audit["demands"]) & service.seen("demandId")


def test_two_services_in_two_namespaces_are_independent(
    service: Service, other_service: Service
) -> None:
    service.apply(simple_manifest(replicas=1))
    other_service.apply(simple_manifest(replicas=2))
    service.wait_running(1)
    other_service.wait_running(2)
    other_service.delete(wait=True, timeout=120)
    # Deleting one service leaves the other Running, on the same agreement.
    before = service.instances("Running")[0]
    assert service.instances("Running")[0]["agreementId"] == before["agreementId"]
    assert service.condition("Ready")["status"] == "True"
    other_service.assert_settled()
