"""The operator, unchanged, against the real provider software (`make realnet-test`).

examples/simple-service.yaml with one change: the payload names the image package the network
serves on loopback by its hash and URL (payload.image {hash, url}: no registry runs offline), so
the demand carries golem.srv.comp.task_package = hash:sha3:<hex>:<url>. Everything else
(demand, negotiation, exec, debit notes, invoices) is the real
yagna 0.17.6, ya-provider and exe-unit.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml

from golem_operator.devenv.controlplane import ControlPlane
from golem_operator.devenv.stack import OperatorProcess
from golem_operator.realnet.network import RealNetwork
from support.operator_harness import ROOT, Service
from support.realnet_audit import RealNetAudit

pytestmark = pytest.mark.timeout(900)

ACCEPT_TIMEOUT_S = 240  # golem.com.payment.debit-notes.accept-timeout? in the operator's demand


def manifest(network: RealNetwork, **spec: Any) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "simple-service.yaml").read_text())
    image = network.image_packages["golem/simple-service:latest"]
    doc["spec"]["payload"]["image"] = {"hash": image.sha3, "url": image.url}
    doc["spec"]["lifecycle"]["run"]["intervalSeconds"] = 5
    doc["spec"]["market"] = {"debitNoteIntervalSeconds": 15}
    doc["spec"].update(spec)
    return doc


@pytest.fixture
def service(control_plane: ControlPlane, operator: OperatorProcess, namespace: str) -> Service:
    # Service's audit helpers read the local network; here `audit` reads the real yagna.
    return Service(control_plane, None, namespace, "simple-service")  # type: ignore[arg-type]


def observations(instance: dict[str, Any]) -> int:
    """The run script prints the statistics of what the start script's simulator observed."""
    last = instance.get("lastRun") or {}
    if not last.get("success"):
        return 0
    lines = [line for line in str(last.get("stdout", "")).splitlines() if line.startswith("{")]
    return int(json.loads(lines[-1])["count"]) if lines else 0


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class DebitNoteWatch:
    """When each debit note was first seen ACCEPTED (the requestor's yagna keeps no acceptance
    time, and its debitNoteEvents carry only what the requestor received)."""

    def __init__(self, audit: RealNetAudit) -> None:
        self.audit = audit
        self.accepted_seen: dict[str, datetime] = {}

    def poll(self) -> list[Any]:
        notes: list[Any] = self.audit.debit_notes()
        now = datetime.now(UTC)
        for note in notes:
            if note["status"] in ("ACCEPTED", "SETTLED"):
                self.accepted_seen.setdefault(note["debitNoteId"], now)
        return notes


def assert_settled(service: Service, watch: DebitNoteWatch) -> None:
    """Every agreement terminated with exactly one accepted invoice; every debit note accepted
    within the accept timeout of its issue, except each agreement's final one.

    ya-provider sends a final debit note when the activity is destroyed, immediately followed
    by the invoice (within a second here); the invoice supersedes it and the provider does not
    wait for its acceptance, so the operator need not accept it.
    """
    audit = watch.audit
    agreements = set(service.seen_agreements)
    assert agreements
    invoices = audit.invoices()
    notes = watch.poll()
    latencies: list[float] = []
    for agreement_id in agreements:
        assert audit.agreement(agreement_id)["state"] == "Terminated", agreement_id
        billed = [i for i in invoices if i["agreementId"] == agreement_id]
        assert len(billed) == 1, (agreement_id, billed)
        assert billed[0]["status"] in ("ACCEPTED", "SETTLED"), billed
        mine = sorted(
            (n for n in notes if n["agreementId"] == agreement_id), key=lambda n: n["timestamp"]
        )
        summary = [(n["timestamp"], n["status"]) for n in mine]
        print(f"debit notes of {agreement_id[:8]}: {summary}; invoice {billed[0]['timestamp']}")
        assert mine, f"no debit note for {agreement_id}"
        assert not [n for n in mine if n["status"] == "REJECTED"], summary
        *periodic, final = mine
        if final["status"] not in ("ACCEPTED", "SETTLED"):
            issued_before_invoice = parse_time(billed[0]["timestamp"]) - parse_time(
                final["timestamp"]
            )
            assert issued_before_invoice.total_seconds() < 5, (summary, billed[0]["timestamp"])
        else:
            periodic.append(final)
        for note in periodic:
            assert note["status"] in ("ACCEPTED", "SETTLED"), summary
            seen = watch.accepted_seen[note["debitNoteId"]]
            latencies.append((seen - parse_time(note["timestamp"])).total_seconds())
    if latencies:
        print(f"figures: debit notes accepted within {max(latencies):.1f} s of issue (at most)")
        assert max(latencies) < ACCEPT_TIMEOUT_S, latencies


def test_simple_service_runs_scales_and_deletes_settled(
    service: Service, real_network: RealNetwork, audit: RealNetAudit
) -> None:
    watch = DebitNoteWatch(audit)
    applied = time.monotonic()
    service.apply(manifest(real_network, replicas=1))
    first = service.wait_running(1, timeout=240)[0]
    running_after = time.monotonic() - applied
    assert first["provider"]["id"] in real_network.provider_ids.values()
    # The start script's simulator feeds what the run script reports.
    service.wait(
        "run output showing observations",
        lambda: any(observations(i) > 0 for i in service.instances("Running")),
        120,
    )

    service.cp.kubectl_run("scale", "-n", service.namespace, "gsvc", service.name, "--replicas=2")
    both = service.wait_running(2, timeout=240)
    assert {i["provider"]["id"] for i in both} == set(real_network.provider_ids.values())
    # debit notes arrive at the negotiated cadence (15 s) and the operator accepts them
    agreements = {i["agreementId"] for i in both}

    def two_accepted_each() -> bool:
        notes = watch.poll()
        return all(
            len([n for n in notes if n["agreementId"] == a and n["status"] == "ACCEPTED"]) >= 2
            for a in agreements
        )

    service.wait("two accepted debit notes per agreement", two_accepted_each, 120)

    deleting = time.monotonic()
    service.delete(wait=True, timeout=300)
    deleted_after = time.monotonic() - deleting
    assert_settled(service, watch)
    print(f"figures: Running {running_after:.1f} s after apply; deletion {deleted_after:.1f} s")


def test_expiring_agreement_is_renewed_on_the_real_provider(
    service: Service, real_network: RealNetwork, audit: RealNetAudit
) -> None:
    watch = DebitNoteWatch(audit)
    service.apply(manifest(real_network, replicas=1, agreementDuration="5m", renewBefore="4m"))
    first = service.wait_running(1, timeout=240)[0]

    def renewed() -> Any:
        watch.poll()
        running = service.instances("Running")
        old = next(i for i in service.instances() if i["name"] == first["name"])
        return (
            old["state"] == "Terminated"
            and len(running) == 1
            and running[0].get("replaces") == first["name"]
            and running
        )

    successor = service.wait("renewal", renewed, 240)[0]
    assert successor["agreementId"] != first["agreementId"]
    old = next(i for i in service.instances() if i["name"] == first["name"])
    assert old["stoppingReason"] == "Superseded"
    service.delete(wait=True, timeout=300)
    assert_settled(service, watch)
