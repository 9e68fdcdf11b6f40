"""The Golem daemon goes away, or revokes the app key: Degraded with a reason, then recovery.

The daemon gate cuts the operator off from the local network for OUTAGE seconds (the network
and its providers keep running, as they would across a yagna restart). The operator must say
so (Degraded, GolemUnreachable), retry with backoff rather than in a tight loop, not count
the outage against its instances, and carry on with the same agreements afterwards. A
revoked app key (the localnet's key rotation) must give GolemUnauthorized, not a crash loop.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from reliability_support import (
    APP_KEYS_USED,
    DaemonGate,
    duplicate_agreements,
    gsvc_status,
    ledger,
    ledger_problems,
    start_operator,
    wait_for,
)

from golem_operator.devenv.controlplane import ControlPlane
from golem_operator.devenv.stack import LocalNetProcess, OperatorProcess
from support.operator_harness import simple_manifest

OUTAGE = 12.0
#: A retry loop without backoff makes hundreds of attempts per second; with backoff the
#: operator's pollers and drivers settle at a few per second (measured: about 2/s).
MAX_ATTEMPTS_PER_SECOND = 8.0


@pytest.fixture
def outage_operator(
    control_plane: ControlPlane,
    rel_net: LocalNetProcess,
    rel_gate: DaemonGate,
    tmp_path: Path,
) -> Iterator[tuple[OperatorProcess, str]]:
    namespace = f"outage-{uuid.uuid4().hex[:6]}"
    control_plane.kubectl_run("create", "namespace", namespace)
    operator = start_operator(tmp_path / "op", control_plane, rel_gate, rel_net, [namespace])
    yield operator, namespace
    rel_gate.restore()
    operator.stop()


def _condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    for condition in status.get("conditions", []):
        if condition["type"] == kind:
            return dict(condition)
    return {}


def _apply(cp: ControlPlane, namespace: str, name: str, replicas: int) -> None:
    doc = simple_manifest(replicas=replicas)
    doc["metadata"] = {"name": name}
    cp.kubectl_run("apply", "-n", namespace, "-f", "-", input=json.dumps(doc))


def _running(cp: ControlPlane, namespace: str, name: str, count: int) -> list[dict[str, Any]]:
    status = gsvc_status(cp, namespace, name)
    running = [i for i in status.get("instances", []) if i["state"] == "Running"]
    return running if len(running) == count else []


def _settle_and_check(cp: ControlPlane, net: LocalNetProcess, namespace: str, name: str) -> None:
    cp.kubectl_run("delete", "-n", namespace, "gsvc", name, "--wait=false")
    wait_for(
        "deletion",
        lambda: cp.kubectl_run("get", "-n", namespace, "gsvc", name, check=False).returncode,
        90,
    )
    book = ledger(net.audit(), namespace, name, {})
    assert book.agreements
    assert ledger_problems(book, Decimal("1.0")) == []


def test_daemon_outage_is_reported_retried_with_backoff_and_survived(
    control_plane: ControlPlane,
    rel_net: LocalNetProcess,
    rel_gate: DaemonGate,
    outage_operator: tuple[OperatorProcess, str],
) -> None:
    operator, namespace = outage_operator
    cp, name = control_plane, "outage"
    _apply(cp, namespace, name, 2)
    before = wait_for("2 Running", lambda: _running(cp, namespace, name, 2), 60)
    agreements = sorted(i["agreementId"] for i in before)

    rel_gate.cut()
    cut_at = time.monotonic()
    attempts_before = len(rel_gate.attempts)
    degraded_at = None
    samples: list[tuple[float, str, str, str]] = []  # (t, Degraded status, reason, phase)
    while time.monotonic() - cut_at < OUTAGE:
        status = gsvc_status(cp, namespace, name)
        degraded = _condition(status, "Degraded")
        samples.append(
            (
                time.monotonic() - cut_at,
                degraded.get("status", ""),
                degraded.get("reason", ""),
                status.get("phase", ""),
            )
        )
        if degraded_at is None and degraded.get("reason") == "GolemUnreachable":
            degraded_at = time.monotonic() - cut_at
            assert degraded["status"] == "True" and "Golem daemon" in degraded["message"]
        time.sleep(0.5)
    window = (cut_at + OUTAGE / 2, cut_at + OUTAGE)
    late_attempts = [t for t in rel_gate.attempts[attempts_before:] if window[0] <= t <= window[1]]
    during = gsvc_status(cp, namespace, name)
    rel_gate.restore()
    restored_at = time.monotonic()

    # Reported within seconds, and steadily (no flapping back to healthy mid-outage).
    assert degraded_at is not None and degraded_at < 8, samples
    after_report = [s for s in samples if s[0] > degraded_at + 1]
    assert after_report and all(s[1] == "True" and s[2] == "GolemUnreachable" for s in after_report)
    assert all(s[3] == "Degraded" for s in after_report), samples
    # Retried with backoff: a bounded rate of connection attempts once the outage settled.
    rate = len(late_attempts) / (OUTAGE / 2)
    assert 0 < rate <= MAX_ATTEMPTS_PER_SECOND, (rate, len(late_attempts))
    # The outage is not the instances' fault: none failed, none was replaced.
    assert sorted(i["agreementId"] for i in during["instances"]) == agreements
    assert all(i.get("consecutiveFailures", 0) == 0 for i in during["instances"])

    # Recovery: healthy again, the same two agreements Running, their run scripts reporting.
    def recovered() -> bool:
        status = gsvc_status(cp, namespace, name)
        running = [i for i in status.get("instances", []) if i["state"] == "Running"]
        fresh = [
            i
            for i in running
            if i.get("lastRun", {}).get("success")
            and i["lastRun"]["time"] > time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(restored_at))
        ]
        return _condition(status, "Degraded").get("status") == "False" and len(fresh) == 2

    wait_for("recovery", recovered, 45)
    status = gsvc_status(cp, namespace, name)
    assert sorted(i["agreementId"] for i in status["instances"]) == agreements
    assert duplicate_agreements(status) == []
    book = ledger(rel_net.audit(), namespace, name, status)
    assert sorted(book.approved()) == agreements  # no agreement signed during or after
    assert operator.proc is not None and operator.proc.poll() is None  # never restarted
    _settle_and_check(cp, rel_net, namespace, name)


def test_revoked_app_key_gives_a_clear_condition_not_a_crash_loop(
    control_plane: ControlPlane,
    rel_net: LocalNetProcess,
    outage_operator: tuple[OperatorProcess, str],
) -> None:
    operator, namespace = outage_operator
    cp, name = control_plane, "revoked"
    _apply(cp, namespace, name, 1)
    before = wait_for("1 Running", lambda: _running(cp, namespace, name, 1), 60)
    original = rel_net.app_key
    revoked_with = "rotated-" + uuid.uuid4().hex
    APP_KEYS_USED.add(revoked_with)
    with rel_net.client() as http:
        http.post("/_localnet/app-key", json={"key": revoked_with}).raise_for_status()
    try:
        condition = wait_for(
            "GolemUnauthorized",
            lambda: (
                (c := _condition(gsvc_status(cp, namespace, name), "Degraded")).get("reason")
                == "GolemUnauthorized"
                and c
            ),
            20,
        )
        assert condition["status"] == "True" and "app key" in condition["message"]
        assert original not in json.dumps(condition)
        time.sleep(8)  # several run intervals and retries under the revoked key
        status = gsvc_status(cp, namespace, name)
        instance = next(i for i in status["instances"] if i["name"] == before[0]["name"])
        # Not the instance's fault: still Running on the same agreement, no failures counted.
        assert instance["state"] == "Running", instance
        assert instance["agreementId"] == before[0]["agreementId"]
        assert instance.get("consecutiveFailures", 0) == 0, instance
        assert operator.proc is not None and operator.proc.poll() is None
        assert operator.log.read_text().count("Traceback") == 0
    finally:
        headers = {"Authorization": f"Bearer {revoked_with}"}
        with rel_net.client() as http:
            http.post(
                "/_localnet/app-key", json={"key": original}, headers=headers
            ).raise_for_status()
    wait_for(
        "recovery",
        lambda: _condition(gsvc_status(cp, namespace, name), "Degraded").get("status") == "False",
        45,
    )
    assert [i["agreementId"] for i in _running(cp, namespace, name, 1)] == [
        before[0]["agreementId"]
    ]
    _settle_and_check(cp, rel_net, namespace, name)
