"""kill -9 of the operator mid-lifecycle: no duplicate agreement, nothing untracked, convergence."""

from __future__ import annotations

from typing import Any

from golem_operator.devenv.stack import OperatorProcess
from support.operator_harness import Service, simple_manifest


def slow_script(doc: dict[str, Any], phase: str, seconds: int) -> dict[str, Any]:
    """Make a lifecycle script start with a sleep, to give the kill a window."""
    commands = doc["spec"]["lifecycle"][phase].setdefault("commands", [])
    commands.insert(0, {"run": {"entrypoint": "/bin/sh", "args": ["-c", f"sleep {seconds}"]}})
    return doc


def open_or_paid(service: Service, new_ids: set[str]) -> None:
    """Every agreement made since the test began is open and in status, or terminated and paid."""
    audit = service.net.audit()
    in_status = {i.get("agreementId") for i in service.instances() if i["state"] != "Terminated"}
    for agreement in audit["agreements"]:
        if agreement["agreementId"] not in new_ids:
            continue
        if agreement["state"] == "Approved":
            assert agreement["agreementId"] in in_status, f"untracked open agreement {agreement}"
        else:
            assert agreement["state"] == "Terminated", agreement
            invoices = [
                i for i in audit["invoices"] if i["agreementId"] == agreement["agreementId"]
            ]
            assert len(invoices) == 1 and invoices[0]["status"] == "ACCEPTED", (agreement, invoices)


def agreement_ids(service: Service) -> set[str]:
    """Every agreement this service ever signed (the audit view knows the signing demand)."""
    return {a["agreementId"] for a in service.agreements()}


def test_kill_during_starting_converges_without_duplicates(
    service: Service, operator: OperatorProcess
) -> None:
    before = agreement_ids(service)
    service.apply(slow_script(simple_manifest(replicas=2), "start", 6))
    service.wait("an instance Starting", lambda: service.instances("Starting"), 60)
    operator.kill()
    operator.start()
    running = service.wait_running(2, 90)
    new = agreement_ids(service) - before
    # Each Running instance holds one approved agreement; interrupted starts were terminated.
    approved = [
        a
        for a in service.net.audit()["agreements"]
        if a["agreementId"] in new and a["state"] == "Approved"
    ]
    assert sorted(a["agreementId"] for a in approved) == sorted(i["agreementId"] for i in running)
    service.wait("interrupted agreements paid", lambda: _paid(service, new), 60)
    open_or_paid(service, new)


def _paid(service: Service, new: set[str]) -> bool:
    try:
        open_or_paid(service, new)
    except AssertionError:
        return False
    return True


def test_kill_during_stopping_completes_the_stop(
    service: Service, operator: OperatorProcess
) -> None:
    before = agreement_ids(service)
    service.apply(slow_script(simple_manifest(replicas=2), "stop", 5))
    running = service.wait_running(2)
    service.cp.kubectl_run("delete", "-n", service.namespace, "gsvc", service.name, "--wait=false")
    service.wait("an instance Stopping", lambda: service.instances("Stopping"), 30)
    operator.kill()
    operator.start()
    service.wait("deletion", lambda: not service.get(), 120)
    for instance in running:
        assert service.net.read_file(instance["activityId"], "/golem/work/stopped") is not None
    new = agreement_ids(service) - before
    assert new
    audit = service.net.audit()
    for agreement in audit["agreements"]:
        if agreement["agreementId"] in new:
            assert agreement["state"] == "Terminated", agreement
            invoices = [
                i for i in audit["invoices"] if i["agreementId"] == agreement["agreementId"]
            ]
            assert len(invoices) == 1 and invoices[0]["status"] == "ACCEPTED", invoices


def test_restart_while_running_readopts_without_new_agreements(
    service: Service, operator: OperatorProcess
) -> None:
    service.apply(simple_manifest(replicas=2))
    running = service.wait_running(2)
    before = agreement_ids(service)
    operator.kill()
    operator.start()
    # Re-adopted: the same agreements keep running and the run script keeps reporting.
    first_times = {i["name"]: i["lastRun"]["time"] for i in running if i.get("lastRun")}
    service.wait(
        "fresh run results",
        lambda: all(
            i.get("lastRun", {}).get("time", "") > first_times.get(i["name"], "")
            for i in service.instances("Running")
        ),
        30,
    )
    assert sorted(i["agreementId"] for i in service.instances("Running")) == sorted(
        i["agreementId"] for i in running
    )
    assert agreement_ids(service) == before
