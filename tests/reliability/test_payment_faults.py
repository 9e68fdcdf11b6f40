"""Money under faults: transient daemon errors, a dying payment loop, late and missing invoices.

Each test arms faults of the suite's local network (daemon faults on payment paths, provider
faults on providers reserved for this module) and checks what the providers were paid:
- 503s and slow answers fetching debit notes and invoices: every document still decided, every
  ended agreement's invoice accepted once;
- failures injected into the payment loop (per document, and the poll itself): the documents
  are retried, the poll task restarted, and the services show Degraded (PaymentsStalled) while
  it is down;
- a restart between an agreement's termination and its (late) invoice: the invoice is judged
  against the termination time recorded in status: the real cost is accepted, an invoice
  inflated beyond it rejected;
- a provider that never invoices: the deletion waits (Progressing=AwaitingInvoices), reports
  the missing invoice and never records it settled;
- invoices after deletion: accepted while the deletion still waits (the allocation is kept),
  rejected with the reason once the service is gone and its allocation released.
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
    DaemonGate,
    delete_all,
    gsvc_status,
    ledger,
    ledger_problems,
    node_name,
    restart_operator,
    start_operator,
    wait_for,
)

from golem_operator.devenv.controlplane import ControlPlane
from golem_operator.devenv.stack import LocalNetProcess
from support.operator_harness import simple_manifest

#: Providers whose faults these tests change (reset after each test).
RESERVED = [f"r-{n}" for n in range(19, 25)]


@pytest.fixture
def net(rel_net: LocalNetProcess) -> Iterator[LocalNetProcess]:
    """The suite's network; daemon and provider faults set here are cleared afterwards."""
    yield rel_net
    with rel_net.client() as http:
        http.post("/_localnet/daemon-faults", json={"faults": []}).raise_for_status()
        for provider in RESERVED:
            http.post(
                f"/_localnet/providers/{provider}/faults",
                json={
                    "never_invoice": False,
                    "invoice_delay_seconds": None,
                    "invoice_surcharge": "0",
                },
            ).raise_for_status()


def _daemon_faults(net: LocalNetProcess, faults: list[dict[str, Any]]) -> None:
    with net.client() as http:
        http.post("/_localnet/daemon-faults", json={"faults": faults}).raise_for_status()


def _fired(net: LocalNetProcess) -> list[int]:
    with net.client() as http:
        response = http.get("/_localnet/daemon-faults")
        response.raise_for_status()
        return [f["failures"] for f in response.json()]


def _provider_faults(net: LocalNetProcess, provider: str, **faults: Any) -> None:
    with net.client() as http:
        http.post(f"/_localnet/providers/{provider}/faults", json=faults).raise_for_status()


def _apply(cp: ControlPlane, namespace: str, name: str, **spec: Any) -> None:
    allow = spec.pop("allow", None)
    doc = simple_manifest(**spec)
    doc["metadata"] = {"name": name}
    if allow:
        doc["spec"]["market"]["providers"] = {"allow": allow}
    cp.kubectl_run("apply", "-n", namespace, "-f", "-", input=json.dumps(doc))


def _namespace(cp: ControlPlane, prefix: str) -> str:
    namespace = f"{prefix}-{uuid.uuid4().hex[:6]}"
    cp.kubectl_run("create", "namespace", namespace)
    return namespace


def _instances(cp: ControlPlane, namespace: str, name: str) -> list[dict[str, Any]]:
    instances: list[dict[str, Any]] = gsvc_status(cp, namespace, name).get("instances", [])
    return instances


def _running(cp: ControlPlane, namespace: str, name: str, count: int) -> bool:
    return sum(i["state"] == "Running" for i in _instances(cp, namespace, name)) >= count


def _condition(cp: ControlPlane, namespace: str, name: str, kind: str) -> dict[str, Any]:
    for condition in gsvc_status(cp, namespace, name).get("conditions", []):
        if condition["type"] == kind:
            return dict(condition)
    return {}


def _documents(audit: dict[str, Any], namespace: str, name: str, kind: str) -> list[dict[str, Any]]:
    node = node_name(namespace, name)
    mine = {a["agreementId"] for a in audit["agreements"] if a.get("demandNodeName") == node}
    return [d for d in audit[kind] if d["agreementId"] in mine]


def _invoice_of(net: LocalNetProcess, provider: str, node: str) -> dict[str, Any] | None:
    """The invoice of a node's agreement with a provider (with its rejection, if any)."""
    audit = net.audit()
    agreements = [
        a["agreementId"]
        for a in audit["agreements"]
        if a["provider"] == provider and a.get("demandNodeName") == node
    ]
    invoices = [i for i in audit["invoices"] if i["agreementId"] in agreements]
    return invoices[-1] if invoices else None


def _events(cp: ControlPlane, namespace: str) -> list[dict[str, Any]]:
    out = cp.kubectl_run("get", "events", "-n", namespace, "-o", "json")
    items: list[dict[str, Any]] = json.loads(out.stdout)["items"]
    return items


def test_transient_errors_fetching_payment_documents_still_decide_every_document(
    control_plane: ControlPlane, net: LocalNetProcess, rel_gate: DaemonGate, tmp_path: Path
) -> None:
    cp = control_plane
    namespace = _namespace(cp, "pay503")
    # The first fetches of each kind fail through every client retry (4 attempts), one invoice
    # fetch answers too slowly for the client, and a third of the rest answer 503.
    _daemon_faults(
        net,
        [
            {"path": "/payment-api/v1/debitNotes/*", "method": "GET", "count": 6},
            {"path": "/payment-api/v1/invoices/*", "method": "GET", "count": 6},
            {
                "path": "/payment-api/v1/invoices/*",
                "method": "GET",
                "status": None,
                "delay_seconds": 12,
                "count": 1,
            },
            {"path": "/payment-api/v1/debitNotes/*", "method": "GET", "probability": 0.3},
            {"path": "/payment-api/v1/invoices/*", "method": "GET", "probability": 0.3},
        ],
    )
    operator = start_operator(tmp_path / "op", cp, rel_gate, net, [namespace])
    try:
        for name in ("flaky-a", "flaky-b"):
            _apply(cp, namespace, name, replicas=2)
        for name in ("flaky-a", "flaky-b"):
            wait_for(f"{name} Running", lambda n=name: _running(cp, namespace, n, 2), 120)

        def notes_decided() -> bool:
            audit = net.audit()
            notes = [
                n
                for name in ("flaky-a", "flaky-b")
                for n in _documents(audit, namespace, name, "debitNotes")
            ]
            return len(notes) >= 8 and all(n["status"] != "RECEIVED" for n in notes[:-4])

        wait_for("8 debit notes, each decided", notes_decided, 150, every=2)
        assert _fired(net)[0] == 6  # the deterministic debit-note failures happened
        delete_all(cp, namespace, 150)
        fired = _fired(net)
        assert fired[1] == 6 and fired[2] == 1, fired  # and the invoice ones
        audit = net.audit()
        for name in ("flaky-a", "flaky-b"):
            notes = _documents(audit, namespace, name, "debitNotes")
            assert notes and all(n["status"] == "ACCEPTED" for n in notes), notes
            assert ledger_problems(ledger(audit, namespace, name, {}), Decimal("1.0")) == []
        assert "handling invoice" in operator.log.read_text()  # a failure was retried
    finally:
        operator.stop()


def test_payment_loop_failures_are_retried_restarted_and_shown_as_degraded(
    control_plane: ControlPlane, net: LocalNetProcess, rel_gate: DaemonGate, tmp_path: Path
) -> None:
    cp = control_plane
    namespace = _namespace(cp, "payloop")
    # The first 3 document attempts raise, and the polls die 8 times (4 each: ~8 s down).
    operator = start_operator(
        tmp_path / "op",
        cp,
        rel_gate,
        net,
        [namespace],
        extra_env={"GOLEM_OPERATOR_FAIL_AT": "payment-document:3,payments-poll:8"},
    )
    try:
        _apply(cp, namespace, "loop", replicas=1)
        degraded = wait_for(
            "Degraded=PaymentsStalled",
            lambda: (
                (c := _condition(cp, namespace, "loop", "Degraded")).get("reason")
                == "PaymentsStalled"
                and c
            ),
            60,
        )
        assert degraded["status"] == "True"
        assert "payments-" in degraded["message"], degraded
        wait_for("Running", lambda: _running(cp, namespace, "loop", 1), 120)
        wait_for(
            "Degraded cleared",
            lambda: _condition(cp, namespace, "loop", "Degraded").get("status") == "False",
            90,
        )

        def notes_accepted() -> bool:
            notes = _documents(net.audit(), namespace, "loop", "debitNotes")
            return len(notes) >= 2 and all(n["status"] == "ACCEPTED" for n in notes[:-1])

        wait_for("debit notes accepted", notes_accepted, 90, every=2)
        delete_all(cp, namespace, 150)
        book = ledger(net.audit(), namespace, "loop", {})
        assert ledger_problems(book, Decimal("1.0")) == []
        log = operator.log.read_text()
        assert "injected failure at payment-document" in log
        assert "restarting background task payments-" in log
    finally:
        operator.stop()


def test_invoice_after_a_restart_is_judged_against_the_recorded_termination(
    control_plane: ControlPlane, net: LocalNetProcess, rel_gate: DaemonGate, tmp_path: Path
) -> None:
    cp = control_plane
    namespace = _namespace(cp, "payterm")
    honest, inflated = "r-23", "r-24"
    # Both invoice 60 s after the end; one adds more than the prices allow for the agreement's
    # life (but less than they would allow if it were judged at arrival, after the delay).
    _provider_faults(net, honest, invoice_delay_seconds=60)
    _provider_faults(net, inflated, invoice_delay_seconds=60, invoice_surcharge="0.0035")
    operator = start_operator(tmp_path / "op", cp, rel_gate, net, [namespace])
    node = node_name(namespace, "term")
    try:
        _apply(cp, namespace, "term", replicas=2, allow=[honest, inflated])
        wait_for("2 Running", lambda: _running(cp, namespace, "term", 2), 120)
        cp.kubectl_run(
            "patch",
            "-n",
            namespace,
            "gsvc",
            "term",
            "--type=merge",
            "-p",
            '{"spec":{"replicas":0}}',
        )

        def terminated() -> list[dict[str, Any]]:
            done = [
                i
                for i in _instances(cp, namespace, "term")
                if i["state"] == "Terminated" and i.get("agreementId")
            ]
            return done if len(done) == 2 else []

        ended = wait_for("both Terminated", terminated, 90)
        assert all(not i.get("settled") for i in ended)  # the invoices are not there yet
        operator.kill()  # kill -9 between the termination and the invoices
        time.sleep(5)
        restart_operator(operator)
        decided = wait_for(
            "both invoices decided",
            lambda: (
                (a := _invoice_of(net, honest, node))
                and (b := _invoice_of(net, inflated, node))
                and a["status"] != "RECEIVED"
                and b["status"] != "RECEIVED"
                and (a, b)
            ),
            150,
            every=2,
        )
        honest_invoice, inflated_invoice = decided
        assert honest_invoice["status"] == "ACCEPTED", honest_invoice
        assert inflated_invoice["status"] == "REJECTED", inflated_invoice
        message = (inflated_invoice["rejection"] or {}).get("message", "")
        assert "exceeds the agreed prices" in message, inflated_invoice
        # The time it was judged against is in status, where the restart found it.
        recorded = {i["name"]: i.get("terminatedAt") for i in _instances(cp, namespace, "term")}
        assert all(recorded[i["name"]] for i in ended), recorded
        delete_all(cp, namespace, 150)
    finally:
        operator.stop()


def test_a_provider_that_never_invoices_keeps_the_deletion_waiting_then_unsettled(
    control_plane: ControlPlane, net: LocalNetProcess, rel_gate: DaemonGate, tmp_path: Path
) -> None:
    cp = control_plane
    namespace = _namespace(cp, "paynone")
    _provider_faults(net, "r-22", never_invoice=True)
    operator = start_operator(
        tmp_path / "op",
        cp,
        rel_gate,
        net,
        [namespace],
        extra_env={"GOLEM_OPERATOR_INVOICE_WAIT_SECONDS": "25"},
    )
    try:
        _apply(cp, namespace, "silent", replicas=1, allow=["r-22"])
        wait_for("Running", lambda: _running(cp, namespace, "silent", 1), 120)
        cp.kubectl_run("delete", "-n", namespace, "gsvc", "silent", "--wait=false")
        waiting = wait_for(
            "Progressing=AwaitingInvoices",
            lambda: (
                (c := _condition(cp, namespace, "silent", "Progressing")).get("reason")
                == "AwaitingInvoices"
                and c
            ),
            90,
        )
        assert waiting["status"] == "True" and "allocation is kept" in waiting["message"]
        instance = _instances(cp, namespace, "silent")[0]
        assert instance["state"] == "Terminated" and not instance.get("settled"), instance
        agreement = instance["agreementId"]
        # Still waiting a while later (not the old 0 s after the instances stopped).
        time.sleep(8)
        assert gsvc_status(cp, namespace, "silent"), "deleted before the invoice wait ended"
        delete_all(cp, namespace, 90)
        missing = [e for e in _events(cp, namespace) if e.get("reason") == "InvoiceMissing"]
        assert missing and agreement in missing[0]["message"], missing
        assert "not settled" in missing[0]["message"]
        audit = net.audit()
        assert [i for i in audit["invoices"] if i["agreementId"] == agreement] == []
        log = operator.log.read_text()
        assert "InvoiceAccepted" not in log or agreement not in log.split("InvoiceAccepted")[-1]
    finally:
        operator.stop()


def test_invoices_after_deletion_are_paid_while_allocated_else_rejected_with_the_reason(
    control_plane: ControlPlane, net: LocalNetProcess, rel_gate: DaemonGate, tmp_path: Path
) -> None:
    cp = control_plane
    namespace = _namespace(cp, "paylate")
    _provider_faults(net, "r-20", invoice_delay_seconds=8)  # within the deletion's wait
    _provider_faults(net, "r-21", invoice_delay_seconds=40)  # after the service is gone
    operator = start_operator(
        tmp_path / "op",
        cp,
        rel_gate,
        net,
        [namespace],
        extra_env={"GOLEM_OPERATOR_INVOICE_WAIT_SECONDS": "20"},
    )
    try:
        _apply(cp, namespace, "patient", replicas=1, allow=["r-20"])
        _apply(cp, namespace, "hasty", replicas=1, allow=["r-21"])
        for name in ("patient", "hasty"):
            wait_for(f"{name} Running", lambda n=name: _running(cp, namespace, n, 1), 120)
        deleted = time.monotonic()
        delete_all(cp, namespace, 120)
        assert time.monotonic() - deleted < 40, "the deletion waited for the late invoice"
        patient = _invoice_of(net, "r-20", node_name(namespace, "patient"))
        assert patient is not None and patient["status"] == "ACCEPTED", patient
        late = wait_for(
            "the late invoice decided",
            lambda: (
                (i := _invoice_of(net, "r-21", node_name(namespace, "hasty")))
                and i["status"] != "RECEIVED"
                and i
            ),
            90,
            every=2,
        )
        assert late["status"] == "REJECTED", late
        message = (late["rejection"] or {}).get("message", "")
        assert "was deleted" in message and "allocation" in message, late
        assert "which no service holds: rejected" in operator.log.read_text()
    finally:
        operator.stop()
