"""Rolling updates against the real API server: maxSurge and maxUnavailable as a watch of the
GolemServiceInstance objects sees them; a stalled revision, pause, and rollback."""

from __future__ import annotations

import json
import subprocess
import threading
from typing import Any

from support.operator_harness import FAULTY, Service

REVISION_LABEL = "services.golem.network/revision"


def manifest(replicas: int, run_value: str = "1", **spec: Any) -> dict[str, Any]:
    """A service on the minimal image; run_value changes the run script's environment (and
    so the revision)."""
    doc: dict[str, Any] = {
        "apiVersion": "services.golem.network/v1alpha1",
        "kind": "GolemService",
        "metadata": {},
        "spec": {
            "replicas": replicas,
            "payload": {"image": {"tag": "golem/minimal:latest"}},
            "lifecycle": {
                "start": {"commands": [{"run": {"entrypoint": "/golem/run/start.sh"}}]},
                "run": {
                    "intervalSeconds": 2,
                    "commands": [
                        {
                            "run": {
                                "entrypoint": "/golem/run/run.sh",
                                "env": [{"name": "VERSION", "value": run_value}],
                            }
                        }
                    ],
                },
                "stop": {"commands": [{"run": {"entrypoint": "/golem/run/stop.sh"}}]},
            },
            "market": {"providers": {"deny": list(FAULTY)}, "debitNoteIntervalSeconds": 10},
            "budget": "5",
        },
    }
    doc["spec"].update(spec)
    return doc


class InstanceWatch:
    """`kubectl get gsi --watch`: after every event, what the watcher knows of each object."""

    def __init__(self, service: Service) -> None:
        cp = service.cp
        self.proc = subprocess.Popen(
            [
                str(cp.kubectl),
                f"--kubeconfig={cp.kubeconfig}",
                "get",
                "gsi",
                "-n",
                service.namespace,
                "-l",
                f"services.golem.network/service={service.name}",
                "--watch",
                "--output-watch-events",
                "-o",
                "json",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.objects: dict[str, tuple[str, str, bool]] = {}
        self.samples: list[list[tuple[str, str, bool]]] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        decoder = json.JSONDecoder()
        buffer = ""
        for line in self.proc.stdout:
            buffer += line
            try:
                event, end = decoder.raw_decode(buffer.lstrip())
            except json.JSONDecodeError:
                continue
            buffer = buffer.lstrip()[end:]
            body = event["object"]
            name = body["metadata"]["name"]
            if event["type"] == "DELETED":
                self.objects.pop(name, None)
            else:
                status = body.get("status") or {}
                self.objects[name] = (
                    body["metadata"]["labels"].get(REVISION_LABEL, ""),
                    status.get("state", "Pending"),
                    bool(status.get("stoppingReason")),
                )
            self.samples.append(list(self.objects.values()))

    def stop(self) -> list[list[tuple[str, str, bool]]]:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self._thread.join(timeout=10)
        return list(self.samples)


def holding(sample: list[tuple[str, str, bool]]) -> int:
    return sum(
        1
        for _, state, leaving in sample
        if state in ("Pending", "Starting", "Running") and not leaving
    )


def serving(sample: list[tuple[str, str, bool]]) -> int:
    return sum(1 for _, state, leaving in sample if state == "Running" and not leaving)


def rollout_done(service: Service, revision: str, replicas: int) -> bool:
    status = service.status
    progressing = service.condition("Progressing")
    return bool(
        status.get("currentRevision") == revision
        and status.get("updateRevision") == revision
        and status.get("availableReplicas") == replicas
        and progressing.get("reason") == "NewRevisionAvailable"
    )


def test_a_rolling_update_respects_max_surge_and_max_unavailable_and_rolls_back(
    service: Service,
) -> None:
    strategy = {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}}
    first = manifest(3, "1", updateStrategy=strategy)
    service.apply(first)
    service.wait("3 available", lambda: service.status.get("availableReplicas") == 3, 90)
    old = service.status["updateRevision"]
    watch = InstanceWatch(service)
    service.apply(manifest(3, "2", updateStrategy=strategy))
    new = service.wait(
        "a new revision", lambda: (r := service.status.get("updateRevision")) != old and r
    )
    service.wait("the rollout complete", lambda: rollout_done(service, new, 3), 180)
    samples = watch.stop()
    assert samples, "the watch saw nothing"
    # At every moment the watch saw: at most replicas + maxSurge, at least replicas -
    # maxUnavailable serving.
    assert max(holding(s) for s in samples) <= 4
    assert min(serving(s) for s in samples if len(s) >= 3) >= 2
    assert max(holding(s) for s in samples) == 4  # the surge was used
    status = service.status
    assert status["updatedReplicas"] == 3
    assert [r["revision"] for r in status["revisions"]] == [old, new]

    # Rollback the GitOps way: the previous manifest again is the previous revision again.
    service.apply(first)
    service.wait("rolled back", lambda: rollout_done(service, old, 3), 180)
    assert [r["revision"] for r in service.status["revisions"]] == [new, old]
    running = service.instances("Running")
    assert {i["revision"] for i in running} == {old}


def test_a_failing_revision_stalls_pauses_and_rolls_back_without_new_work(
    service: Service,
) -> None:
    first = manifest(2, "1", progressDeadlineSeconds=15)
    service.apply(first)
    service.wait("2 available", lambda: service.status.get("availableReplicas") == 2, 90)
    old = service.status["updateRevision"]
    before = {i["name"]: i["agreementId"] for i in service.instances("Running")}
    failing = manifest(2, "1", progressDeadlineSeconds=15)
    failing["spec"]["lifecycle"]["start"]["commands"] = [
        {"run": {"entrypoint": "/golem/run/missing.sh"}}
    ]
    service.apply(failing)
    stalled = service.wait(
        "ProgressDeadlineExceeded",
        lambda: (
            (c := service.condition("Progressing")).get("reason") == "ProgressDeadlineExceeded"
            and c
        ),
        120,
    )
    assert stalled["status"] == "False" and "StartFailed" in stalled["message"]
    assert service.condition("Degraded")["reason"] == "ProgressDeadlineExceeded"
    # The old instances serve on: maxUnavailable (25% of 2) is 0.
    serving_now = {i["name"]: i["agreementId"] for i in service.instances("Running")}
    assert serving_now == before
    assert service.status["currentRevision"] == old

    # Paused: the rollout holds (no new attempts counted as progress), reported as such.
    paused = {**failing, "spec": {**failing["spec"], "paused": True}}
    service.apply(paused)
    service.wait(
        "RolloutPaused",
        lambda: service.condition("Progressing").get("reason") == "RolloutPaused",
    )

    # Rollback by hand: the previous spec again (kubectl apply). The same instances serve,
    # on the same agreements: nothing is started again.
    service.apply(first)
    service.wait("back on the old revision", lambda: rollout_done(service, old, 2), 60)
    assert {i["name"]: i["agreementId"] for i in service.instances("Running")} == before
    assert service.condition("Degraded")["status"] == "False"
