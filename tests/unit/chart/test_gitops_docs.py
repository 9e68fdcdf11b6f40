"""The Argo CD health check in docs/gitops.md, run with Lua 5.1 (as Argo CD's gopher-lua) on
GolemService objects in each state."""

from __future__ import annotations

import re
from typing import Any

import lupa.lua51 as lua51
import pytest
from chartkit import ROOT

GITOPS_DOC = ROOT / "docs" / "gitops.md"


def health_script() -> str:
    blocks = re.findall(r"```lua\n(.*?)```", GITOPS_DOC.read_text(), re.S)
    assert len(blocks) == 1, "docs/gitops.md must hold exactly one Lua health check"
    return blocks[0]


def health(obj: dict[str, Any]) -> tuple[str, str]:
    runtime = lua51.LuaRuntime()
    runtime.globals().obj = runtime.table_from(obj, recursive=True)
    check = runtime.execute(f"return (function() {health_script()} end)()")
    return check["status"], check["message"]


def service(
    generation: int = 2,
    observed: int | None = 2,
    replicas: int = 2,
    deleting: bool = False,
    **conditions: str,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "s", "generation": generation}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    obj: dict[str, Any] = {"metadata": meta, "spec": {"replicas": replicas}}
    if observed is not None:
        obj["status"] = {
            "observedGeneration": observed,
            "conditions": [
                {
                    "type": kind,
                    "status": status,
                    "reason": f"{kind}Reason",
                    "message": f"{kind} says {status}",
                    "observedGeneration": observed,
                }
                for kind, status in conditions.items()
            ],
        }
    return obj


@pytest.mark.parametrize(
    ("obj", "status", "message"),
    [
        (service(observed=None), "Progressing", "Waiting for the operator"),
        (service(observed=1, Ready="True"), "Progressing", "generation 2"),
        (service(Ready="True", Progressing="False", Degraded="False"), "Healthy", "Ready says"),
        (
            service(Ready="False", Progressing="True", Degraded="False"),
            "Progressing",
            "Progressing says",
        ),
        (service(Ready="True", Progressing="True"), "Progressing", "Progressing says"),
        (service(Ready="False", Degraded="True"), "Degraded", "Degraded says True"),
        (service(replicas=0, Ready="False", Progressing="False"), "Suspended", "zero"),
        (service(deleting=True, Ready="True"), "Progressing", "settling"),
    ],
)
def test_health_check(obj: dict[str, Any], status: str, message: str) -> None:
    got_status, got_message = health(obj)
    assert got_status == status
    assert message in got_message


def with_reason(obj: dict[str, Any], kind: str, reason: str, **status: str) -> dict[str, Any]:
    for condition in obj["status"]["conditions"]:
        if condition["type"] == kind:
            condition["reason"] = reason
            condition["message"] = f"{reason}: details"
    obj["status"].update(status)
    return obj


@pytest.mark.parametrize(
    ("obj", "status", "message"),
    [
        (
            with_reason(
                service(Ready="True", Progressing="False", Degraded="False"),
                "Progressing",
                "ProgressDeadlineExceeded",
            ),
            "Degraded",
            "ProgressDeadlineExceeded: details",
        ),
        (
            with_reason(
                service(Ready="True", Progressing="False", Degraded="False"),
                "Progressing",
                "RolloutPaused",
            ),
            "Suspended",
            "RolloutPaused: details",
        ),
        (
            with_reason(
                service(Ready="True", Progressing="True", Degraded="False"),
                "Progressing",
                "RevisionUpdating",
                currentRevision="a",
                updateRevision="b",
            ),
            "Progressing",
            "RevisionUpdating: details",
        ),
        (
            with_reason(
                service(Ready="True", Progressing="False", Degraded="False"),
                "Progressing",
                "NewRevisionAvailable",
                currentRevision="b",
                updateRevision="b",
            ),
            "Healthy",
            "Ready says",
        ),
        (
            # Not yet every instance on the update revision: not Healthy yet.
            with_reason(
                service(Ready="True", Progressing="False", Degraded="False"),
                "Progressing",
                "NewRevisionAvailable",
                currentRevision="a",
                updateRevision="b",
            ),
            "Progressing",
            "NewRevisionAvailable",
        ),
    ],
)
def test_health_check_reads_the_rollout(obj: dict[str, Any], status: str, message: str) -> None:
    got_status, got_message = health(obj)
    assert got_status == status
    assert message in got_message


def test_conditions_of_an_older_generation_are_ignored() -> None:
    obj = service(Ready="True", Degraded="True")
    for condition in obj["status"]["conditions"]:
        if condition["type"] == "Degraded":
            condition["observedGeneration"] = 1
    assert health(obj)[0] == "Healthy"
