"""Instances that fail: before Running (respawn) and after (restartPolicy), and renewal."""

from __future__ import annotations

import json
from typing import Any

from support.operator_harness import FAULTY, Service, simple_manifest


def only(*providers: str, **spec: Any) -> dict[str, Any]:
    """A manifest allowed to rent only these providers."""
    doc = simple_manifest(**spec)
    doc["spec"]["market"]["providers"] = {"allow": list(providers)}
    return doc


def allow(service: Service, *providers: str) -> None:
    """Change the provider allow list of a running service (a spec update).

    The market is part of the revision, so this is a new revision: the rollout is paused in
    the same update, so that the instance under test meets its failure rather than being
    replaced by the rollout (failures are still replaced, with the spec as it is now).
    """
    service.cp.kubectl_run(
        "patch",
        "-n",
        service.namespace,
        "gsvc",
        service.name,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"paused": True, "market": {"providers": {"allow": list(providers)}}}}),
    )


def test_start_failure_is_respawned_on_another_provider(service: Service) -> None:
    service.apply(only("fails-start", replicas=1))
    failed = service.wait(
        "StartFailed on fails-start",
        lambda: [i for i in service.instances("Terminated") if i["reason"] == "StartFailed"],
    )
    assert failed[0]["provider"]["name"] == "fails-start"
    assert "start script failed" in failed[0]["message"]
    # The failed provider is avoided for a while by this service (the summary follows the
    # instance objects within a write interval).
    service.wait(
        "the failed provider avoided",
        lambda: failed[0]["provider"]["id"] in service.status.get("avoidedProviders", {}),
        15,
    )
    allow(service, "fails-start", "p-9")
    running = service.wait_running(1)[0]
    assert running["provider"]["name"] == "p-9"
    assert running["restarts"] >= 1
    assert "StartFailed" in service.events_by_reason()


def test_start_failure_without_respawn_ends_terminated_and_degraded(service: Service) -> None:
    service.apply(only("fails-start", replicas=1, respawnUnstartedInstances=False))
    failed = service.wait(
        "Terminated after StartFailed",
        lambda: [i for i in service.instances("Terminated") if i["reason"] == "StartFailed"],
    )[0]
    assert "start script failed" in failed["message"]
    degraded = service.wait(
        "Degraded",
        lambda: (
            service.condition("Degraded").get("status") == "True" and service.condition("Degraded")
        ),
    )
    assert failed["name"] in degraded["message"]
    # Not replaced: no other instance appears.
    assert [i["name"] for i in service.instances()] == [failed["name"]]
    assert service.status["phase"] == "Degraded"


def test_provider_crash_after_running_is_replaced_elsewhere(service: Service) -> None:
    service.apply(only("crashes", replicas=1))
    first = service.wait_running(1)[0]
    assert first["provider"]["name"] == "crashes"
    allow(service, "crashes", "p-8")
    lost = service.wait(
        "ActivityLost",
        lambda: [i for i in service.instances("Terminated") if i["reason"] == "ActivityLost"],
        60,
    )
    assert lost[0]["name"] == first["name"]
    replacement = service.wait_running(1, 60)[0]
    assert replacement["provider"]["name"] == "p-8"
    assert replacement["restarts"] == 1


def test_agreement_terminated_by_provider_is_replaced(service: Service) -> None:
    service.apply(only("terminates", replicas=1))
    first = service.wait_running(1)[0]
    assert first["provider"]["name"] == "terminates"
    allow(service, "terminates", "p-7")
    service.wait(
        "replacement on p-7",
        lambda: [i for i in service.instances("Running") if i["provider"]["name"] == "p-7"],
        60,
    )
    old = next(i for i in service.instances() if i["name"] == first["name"])
    assert old["state"] == "Terminated" and old["reason"] == "ActivityLost"


def test_failing_run_script_is_replaced_after_the_threshold(service: Service) -> None:
    doc = only("fails-run", replicas=1)
    doc["spec"]["lifecycle"]["run"]["failureThreshold"] = 2
    service.apply(doc)
    first = service.wait_running(1)[0]
    assert first["provider"]["name"] == "fails-run"
    allow(service, "fails-run", "p-6")
    service.wait(
        "replacement on p-6",
        lambda: [i for i in service.instances("Running") if i["provider"]["name"] == "p-6"],
        60,
    )
    old = next(i for i in service.instances() if i["name"] == first["name"])
    assert old["state"] in ("Stopping", "Terminated")
    assert old["stoppingReason"] == "RunFailed"
    assert old["lastRun"]["success"] is False
    service.wait(
        "old instance stopped",
        lambda: [i for i in service.instances("Terminated") if i["name"] == first["name"]],
    )
    # The stop script ran on the failed instance before its agreement ended.
    assert service.net.read_file(first["activityId"], "/golem/work/stopped") is not None


def test_restart_policy_never_does_not_replace(service: Service) -> None:
    doc = only("fails-run", "p-5", replicas=1, restartPolicy="Never")
    doc["spec"]["lifecycle"]["run"]["failureThreshold"] = 2
    service.apply(doc)
    first = service.wait_running(1)[0]
    failed = service.wait(
        "Terminated after RunFailed",
        lambda: [i for i in service.instances("Terminated") if i["name"] == first["name"]],
        60,
    )[0]
    assert failed["final"] is True
    service.wait("Degraded", lambda: service.condition("Degraded").get("status") == "True")
    assert len(service.instances()) == 1
    assert service.status["readyReplicas"] == 0


def test_expiring_agreement_is_renewed_and_the_replica_count_holds(service: Service) -> None:
    # Providers take nothing shorter than 5m; renewBefore starts the successor soon after the
    # first agreement is signed: 5m plus 30 s of expiration slack, less 4m55s, is 35 s.
    service.apply(simple_manifest(replicas=1, agreementDuration="5m", renewBefore="4m55s"))
    first = service.wait_running(1)[0]
    # The summary follows the instance objects within a status write interval.
    service.wait("readyReplicas 1", lambda: service.status.get("readyReplicas") == 1, 15)
    ready: list[int] = []

    def renewed() -> Any:
        status = service.status
        ready.append(status.get("readyReplicas", 0))
        running = service.instances("Running")
        old = next(i for i in service.instances() if i["name"] == first["name"])
        return (
            old["state"] == "Terminated"
            and len(running) == 1
            and running[0].get("replaces") == first["name"]
            and running
        )

    successor = service.wait("renewal", renewed, 90)[0]
    # The counts stay true throughout: the old instance served until its successor did.
    assert len(ready) > 10 and min(ready) == 1
    assert service.condition("Ready")["status"] == "True"
    assert successor["agreementId"] != first["agreementId"]
    old = next(i for i in service.instances() if i["name"] == first["name"])
    assert old["stoppingReason"] == "Superseded"
    assert (
        "FAULTY" not in successor["provider"]["name"]
        and successor["provider"]["name"] not in FAULTY
    )
