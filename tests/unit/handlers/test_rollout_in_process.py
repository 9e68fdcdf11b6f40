"""Rolling updates driven by the engine in-process: the local Golem network (real commands)
and the fake Kubernetes boundary. The instance objects are sampled as a watcher would see
them: maxSurge and maxUnavailable hold at every sample.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
from typing import Any

from fake_kube import FakeKube
from test_worker_in_process import NS, localnet, make_engine, spec, until

from golem_operator.handlers.engine import Engine
from golem_operator.localnet import LocalNetwork

__all__ = ["localnet"]  # the fixture, imported


def change_spec(engine: Engine, kube: FakeKube, name: str, changes: dict[str, Any]) -> None:
    """What kubectl apply does: a new spec, a new generation."""
    body = kube.services[(NS, name)]
    body["spec"] = {**body["spec"], **changes}
    body["metadata"]["generation"] += 1
    engine.sync(copy.deepcopy(body))


def with_run_env(base: dict[str, Any], value: str) -> dict[str, Any]:
    """The same service with another run-script environment: a new revision."""
    lifecycle = copy.deepcopy(base["lifecycle"])
    lifecycle["run"]["commands"][0]["run"]["env"] = [{"name": "VERSION", "value": value}]
    return {"lifecycle": lifecycle}


class Sampler:
    """The instance objects as a watcher sees them, sampled on every write."""

    def __init__(self, kube: FakeKube, service: str) -> None:
        self.kube = kube
        self.service = service
        self.samples: list[list[tuple[str, str, bool]]] = []
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            self.kube.changed.clear()
            self.samples.append(
                [
                    (
                        b["spec"].get("revision", ""),
                        (b.get("status") or {}).get("state", "Pending"),
                        bool((b.get("status") or {}).get("stoppingReason")),
                    )
                    for b in self.kube.instance_list(NS, self.service)
                ]
            )
            await self.kube.changed.wait()

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


def holding(sample: list[tuple[str, str, bool]]) -> int:
    return sum(
        1
        for _, state, leaving in sample
        if state in ("Pending", "Starting", "Running") and not leaving
    )


def serving(sample: list[tuple[str, str, bool]], revision: str | None = None) -> int:
    return sum(
        1
        for rev, state, leaving in sample
        if state == "Running" and not leaving and (revision is None or rev == revision)
    )


def status_of(kube: FakeKube, name: str) -> dict[str, Any]:
    return kube.services[(NS, name)].get("status") or {}


def progressing(kube: FakeKube, name: str) -> tuple[str, str]:
    for condition in status_of(kube, name).get("conditions", []):
        if condition["type"] == "Progressing":
            return condition["status"], condition["reason"]
    return "", ""


async def test_a_rolling_update_keeps_max_surge_and_max_unavailable_at_every_sample(
    localnet: LocalNetwork,
) -> None:
    kube = FakeKube()
    engine = make_engine(localnet, kube)
    base = {**spec(3), "updateStrategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}}
    try:
        engine.sync(kube.add_service(NS, "web", base))
        await until("3 available", lambda: status_of(kube, "web").get("availableReplicas") == 3, 90)
        old = status_of(kube, "web")["updateRevision"]
        sampler = Sampler(kube, "web")
        change_spec(engine, kube, "web", with_run_env(base, "2"))
        await until(
            "a new update revision", lambda: status_of(kube, "web")["updateRevision"] != old
        )
        new = status_of(kube, "web")["updateRevision"]
        await until(
            "the rollout complete",
            lambda: (
                status_of(kube, "web").get("currentRevision") == new
                and progressing(kube, "web") == ("False", "NewRevisionAvailable")
            ),
            90,
        )
        await sampler.close()
        during = sampler.samples
        assert max(holding(s) for s in during) == 4  # the surge was used, never exceeded
        assert min(serving(s) for s in during) >= 3  # maxUnavailable 0
        assert serving(during[-1], new) == 3 and serving(during[-1], old) == 0
        status = status_of(kube, "web")
        assert (status["updatedReplicas"], status["availableReplicas"]) == (3, 3)
        assert [r["revision"] for r in status["revisions"]] == [old, new]
        # Old instances went through their stop scripts, for the rollout.
        stopped = [
            b["status"] for b in kube.instance_list(NS, "web") if b["spec"]["revision"] == old
        ]
        assert stopped and all(s.get("stoppingReason") == "RevisionUpdated" for s in stopped)
    finally:
        await engine.close()


async def test_pause_holds_a_rollout_and_resume_finishes_it(localnet: LocalNetwork) -> None:
    kube = FakeKube()
    engine = make_engine(localnet, kube)
    base = spec(2)
    try:
        engine.sync(kube.add_service(NS, "web", base))
        await until("2 available", lambda: status_of(kube, "web").get("availableReplicas") == 2, 90)
        old = status_of(kube, "web")["updateRevision"]
        change_spec(engine, kube, "web", {**with_run_env(base, "2"), "paused": True})
        await until(
            "RolloutPaused", lambda: progressing(kube, "web") == ("False", "RolloutPaused"), 60
        )
        await asyncio.sleep(3.0)
        revisions = [b["spec"]["revision"] for b in kube.instance_list(NS, "web")]
        assert revisions == [old, old]  # nothing replaced while paused
        change_spec(engine, kube, "web", {"paused": False})
        new = status_of(kube, "web")["updateRevision"]
        await until(
            "resumed and complete",
            lambda: (
                status_of(kube, "web").get("currentRevision") == new
                and status_of(kube, "web").get("availableReplicas") == 2
            ),
            90,
        )
    finally:
        await engine.close()


async def test_a_failing_revision_stalls_within_max_unavailable_and_old_ones_serve(
    localnet: LocalNetwork,
) -> None:
    kube = FakeKube()
    engine = make_engine(localnet, kube)
    base = {
        **spec(2),
        "progressDeadlineSeconds": 8,
        "updateStrategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
    }
    try:
        engine.sync(kube.add_service(NS, "web", base))
        await until("2 available", lambda: status_of(kube, "web").get("availableReplicas") == 2, 90)
        old = status_of(kube, "web")["updateRevision"]
        lifecycle = copy.deepcopy(base["lifecycle"])
        lifecycle["start"]["commands"] = [{"run": {"entrypoint": "/golem/run/missing.sh"}}]
        change_spec(engine, kube, "web", {"lifecycle": lifecycle})
        await until(
            "ProgressDeadlineExceeded",
            lambda: progressing(kube, "web") == ("False", "ProgressDeadlineExceeded"),
            60,
        )
        status = status_of(kube, "web")
        message = next(c for c in status["conditions"] if c["type"] == "Progressing")["message"]
        assert "StartFailed" in message
        running_old = [
            b
            for b in kube.instance_list(NS, "web")
            if b["spec"]["revision"] == old and b["status"].get("state") == "Running"
        ]
        assert len(running_old) == 2 and not any(
            b["status"].get("stoppingReason") for b in running_old
        )
        assert status["availableReplicas"] == 2 and status["currentRevision"] == old
        # Rolling back (the previous spec again) keeps them, and the stall ends.
        change_spec(engine, kube, "web", {"lifecycle": base["lifecycle"]})
        await until(
            "back on the old revision",
            lambda: progressing(kube, "web") == ("False", "NewRevisionAvailable"),
            30,
        )
        assert status_of(kube, "web")["updateRevision"] == old
        kept = {b["metadata"]["name"] for b in running_old}
        still = {
            b["metadata"]["name"]
            for b in kube.instance_list(NS, "web")
            if b["status"].get("state") == "Running"
        }
        assert kept == still  # no duplicate work: the same instances serve
    finally:
        await engine.close()
