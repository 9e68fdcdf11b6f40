"""Create, run, scale and delete GolemServices on the local Golem network."""

from __future__ import annotations

import json

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

    # The run script's output reaches status.
    def stats() -> bool:
        return all(
            (i.get("lastRun") or {}).get("success") and "count" in i["lastRun"]["stdout"]
            for i in service.instances("Running")
        )

    service.wait("run output in status", stats, 30)
    status = service.status
    assert status["readyReplicas"] == 2 and status["replicas"] == 2
    assert status["phase"] == "Running"
    assert service.condition("Ready")["status"] == "True"
    assert status["observedGeneration"] == service.get()["metadata"]["generation"]
    reasons = {e["reason"] for e in service.events()}
    assert {"AgreementSigned", "Started"} <= reasons
    print(json.dumps(status, indent=1)[:3000])
