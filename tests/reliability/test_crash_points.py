"""kill -9 at every distinct point of an instance's life, then restart: nothing lost, none twice.

Each point of `golem_operator.crashpoints.POINTS` gets its own namespace, service and operator
started with GOLEM_OPERATOR_CRASH_AT=<point>; the operator exits with 137 exactly there (as
kill -9 would), is restarted without it, and must converge and settle. The scenarios run side
by side (one operator per namespace) in a module fixture; each test asserts one point.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from reliability_support import (
    DaemonGate,
    duplicate_agreements,
    gsvc_status,
    ledger,
    ledger_problems,
    node_name,
    restart_operator,
    start_operator,
    wait_exit,
    wait_for,
)

from golem_operator.core.payments import carries_mark
from golem_operator.crashpoints import POINTS
from golem_operator.devenv.controlplane import ControlPlane
from golem_operator.devenv.stack import LocalNetProcess, OperatorProcess
from support.operator_harness import simple_manifest

#: Points reached only once the service is deleted (stop script, final invoice, release).
ON_DELETE = {"stop-script", "invoice-accepted", "deletion-releasing"}
BUDGET = Decimal("1.0")


@dataclass
class CrashRun:
    point: str
    namespace: str
    name: str
    exit_code: int | None = None
    crashed_at_point: bool = False
    converged: bool = False
    problems_after_restart: list[str] = field(default_factory=list)
    problems_at_end: list[str] = field(default_factory=list)
    bad_events: list[str] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    error: str = ""
    log_tail: str = ""
    #: allocation-created: the allocations carrying the mark status recorded before the crash,
    #: and the one status names once the restarted operator converged
    marked_allocations: list[str] = field(default_factory=list)
    adopted_allocation: str | None = None


def manifest() -> dict[str, Any]:
    doc = simple_manifest(replicas=1, budget=str(BUDGET))
    # A stop script that takes a moment, so that a crash inside it interrupts it.
    stop = doc["spec"]["lifecycle"]["stop"]["commands"]
    stop.insert(0, {"run": {"entrypoint": "/bin/sh", "args": ["-c", "sleep 2"]}})
    return doc


def _apply(cp: ControlPlane, namespace: str, name: str) -> None:
    doc = manifest()
    doc["metadata"] = {"name": name}
    cp.kubectl_run("apply", "-n", namespace, "-f", "-", input=json.dumps(doc))


def _delete(cp: ControlPlane, namespace: str, name: str) -> None:
    cp.kubectl_run("delete", "-n", namespace, "gsvc", name, "--wait=false", "--ignore-not-found")


def _exists(cp: ControlPlane, namespace: str, name: str) -> bool:
    out = cp.kubectl_run("get", "-n", namespace, "gsvc", name, "-o", "name", check=False)
    return out.returncode == 0


def _running(cp: ControlPlane, namespace: str, name: str) -> bool:
    instances = gsvc_status(cp, namespace, name).get("instances", [])
    return sum(1 for i in instances if i["state"] == "Running") == 1


def _problems(net: LocalNetProcess, run: CrashRun, status: dict[str, Any]) -> list[str]:
    book = ledger(net.audit(), run.namespace, run.name, status)
    return ledger_problems(book, BUDGET) + duplicate_agreements(status)


def scenario(
    point: str, cp: ControlPlane, net: LocalNetProcess, gate: DaemonGate, work: Path
) -> CrashRun:
    namespace = f"crash-{point}-{uuid.uuid4().hex[:6]}"
    run = CrashRun(point, namespace, "svc")
    cp.kubectl_run("create", "namespace", namespace)
    began = time.monotonic()
    operator: OperatorProcess | None = None
    try:
        operator = start_operator(work / point, cp, gate, net, [namespace], crash_at=point)
        _apply(cp, namespace, run.name)
        if point in ON_DELETE:
            wait_for("Running", lambda: _running(cp, namespace, run.name), 60)
            _delete(cp, namespace, run.name)
        run.exit_code = wait_exit(operator, 60)
        run.timings["crash"] = time.monotonic() - began
        run.crashed_at_point = f"crash point {point} reached" in operator.log.read_text()
        if run.exit_code is None:
            return run
        if point == "allocation-created":
            mark = gsvc_status(cp, namespace, run.name).get("allocationPending")
            run.marked_allocations = _marked_allocations(net, mark) if mark else []
        restart_operator(operator)
        restarted = time.monotonic()
        if point not in ON_DELETE:
            # Converged: the replica Running, every agreement open in status or paid once.
            def settled() -> bool:
                status = gsvc_status(cp, namespace, run.name)
                run.problems_after_restart = _problems(net, run, status)
                return _running(cp, namespace, run.name) and not run.problems_after_restart

            run.converged = _wait_quietly(settled, 120)
            run.timings["converge"] = time.monotonic() - restarted
            run.adopted_allocation = gsvc_status(cp, namespace, run.name).get("allocationId")
            _delete(cp, namespace, run.name)
        gone = _wait_quietly(lambda: not _exists(cp, namespace, run.name), 150)
        run.timings["deleted"] = time.monotonic() - restarted
        if point in ON_DELETE:
            run.converged = gone
        # After deletion: every agreement ended and paid once, sandboxes dead, nothing left.
        run.problems_at_end = _problems(net, run, {})
        run.leftovers = _leftovers(net, run)
        released = {a["allocationId"]: a["released"] for a in net.audit()["allocations"]}
        run.leftovers += [
            f"allocation {a[:12]} not released" for a in run.marked_allocations if not released[a]
        ]
        run.bad_events = _bad_events(cp, namespace)
    except Exception as error:
        run.error = f"{type(error).__name__}: {error}"
    finally:
        if operator is not None:
            run.log_tail = operator.log.read_text()[-3000:]
            operator.stop()
    return run


def _marked_allocations(net: LocalNetProcess, mark: str) -> list[str]:
    """Allocations created with the expiry status recorded as the mark of a new allocation."""
    when = datetime.fromisoformat(mark)
    return [
        a["allocationId"]
        for a in net.audit()["allocations"]
        if a.get("timeout") and carries_mark(datetime.fromisoformat(a["timeout"]), when)
    ]


def _wait_quietly(predicate: Callable[[], bool], timeout: float) -> bool:
    try:
        wait_for("condition", predicate, timeout)
    except AssertionError:
        return False
    return True


def _leftovers(net: LocalNetProcess, run: CrashRun) -> list[str]:
    """Golem objects of the deleted service still alive: demands, open or pending agreements."""
    node = node_name(run.namespace, run.name)
    found = []
    with net.client() as http:
        demands = http.get("/market-api/v1/demands").json()
    for demand in demands:
        if demand["properties"].get("golem.node.id.name") == node:
            found.append(f"demand {demand['demandId'][:12]} still subscribed")
    for agreement in net.audit()["agreements"]:
        if agreement.get("demandNodeName") == node and agreement["state"] in (
            "Approved",
            "Pending",
        ):
            found.append(f"agreement {agreement['agreementId'][:12]} {agreement['state']}")
    return found


def _bad_events(cp: ControlPlane, namespace: str) -> list[str]:
    """Warnings that must not follow a crash: unpaid invoices, reconcile errors."""
    events = json.loads(cp.kubectl_run("get", "events", "-n", namespace, "-o", "json").stdout)
    return [
        f"{e['reason']}: {e['message'][:200]}"
        for e in events["items"]
        if e["reason"]
        in ("InvoiceMissing", "InvoiceRejected", "DebitNoteRejected", "ReconcileError")
    ]


@pytest.fixture(scope="module")
def crash_runs(
    control_plane: ControlPlane,
    rel_net: LocalNetProcess,
    rel_gate: DaemonGate,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, CrashRun]:
    work = tmp_path_factory.mktemp("crash-points")
    with ThreadPoolExecutor(max_workers=len(POINTS)) as pool:
        futures = {
            point: pool.submit(scenario, point, control_plane, rel_net, rel_gate, work)
            for point in POINTS
        }
        runs = {point: future.result() for point, future in futures.items()}
    (work / "runs.json").write_text(json.dumps([asdict(r) for r in runs.values()], indent=1))
    return runs


@pytest.mark.parametrize("point", POINTS)
def test_crash_point(point: str, crash_runs: dict[str, CrashRun]) -> None:
    run = crash_runs[point]
    context = f"{run}\n--- operator log tail ---\n{run.log_tail}"
    assert not run.error, context
    # The crash happened, where it was meant to (not earlier, not by another cause).
    assert run.exit_code == 137 and run.crashed_at_point, context
    assert run.converged, context
    assert run.problems_after_restart == [], context
    assert run.problems_at_end == [], context
    assert run.leftovers == [], context
    assert run.bad_events == [], context
    if point == "allocation-created":
        # The allocation created just before the crash was found by its mark and adopted, not
        # leaked beside a second one (and deletion released it).
        assert len(run.marked_allocations) == 1, context
        assert run.adopted_allocation == run.marked_allocations[0], context


def test_every_agreement_of_the_crash_runs_is_accounted_for(
    crash_runs: dict[str, CrashRun], rel_net: LocalNetProcess
) -> None:
    """Across all crash runs: no agreement the operator signed is open, none paid twice."""
    audit = rel_net.audit()
    nodes = {node_name(r.namespace, r.name) for r in crash_runs.values()}
    mine = [a for a in audit["agreements"] if a.get("demandNodeName") in nodes]
    assert len(mine) >= len(POINTS)
    for agreement in mine:
        assert agreement["state"] not in ("Approved", "Pending"), agreement
    paid: dict[str, Decimal] = {}
    for payment in audit["payments"]:
        paid[payment["documentId"]] = paid.get(payment["documentId"], Decimal(0)) + Decimal(
            payment["amount"]
        )
    invoices = {i["invoiceId"]: i for i in audit["invoices"]}
    for document_id, amount in paid.items():
        if document_id in invoices:
            # The localnet pays only what is still owed: a second payment would exceed it.
            assert amount <= Decimal(invoices[document_id]["amount"]), document_id
