"""The reliability soak: kill -9s, a daemon outage, provider churn and payment faults; then leaks.

Not part of `make test` (it runs for minutes). Starts its own control plane, the local Golem
network (tests/reliability/providers.yaml) behind a daemon gate, and the operator; applies a
few services; then for --duration seconds kills the operator with SIGKILL at random moments
(and restarts it), cuts the daemon off once for --outage seconds, and crashes provider
activities at --churn-rate per second for --churn-for seconds. Throughout, the daemon answers
503 to a share (--daemon-fault-rate) of the fetches of debit notes and invoices, of agreement
terminations and of activity deletions, and --late-invoices providers send their invoices
20 s after the agreement ended. Every second it samples each
service's status. Afterwards it lets things converge, checks for leaks (open agreements that
status does not know, ended agreements not paid exactly once, live sandboxes of ended
activities, more paid than the budget), deletes everything, checks again, and writes the
figures into docs/reliability.md between the soak-results markers.

    source .env.tools && .venv/bin/python scripts/soak.py --duration 480
"""

from __future__ import annotations

import argparse
import json
import random
import shlex
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "reliability"), str(ROOT / "tests")]

from reliability_support import (  # noqa: E402
    PROVIDERS,
    DaemonGate,
    duplicate_agreements,
    gsvc_status,
    ledger,
    ledger_problems,
    node_name,
    start_operator,
)

from golem_operator.devenv.controlplane import ControlPlane  # noqa: E402
from golem_operator.devenv.stack import LocalNetProcess, OperatorProcess  # noqa: E402
from support.operator_harness import simple_manifest  # noqa: E402

DOC = ROOT / "docs" / "reliability.md"
START, END = "<!-- soak-results:start -->", "<!-- soak-results:end -->"
NAMESPACE = "soak"
BUDGET = Decimal("5.0")


@dataclass
class Tally:
    """What the sampler saw of one service."""

    samples: int = 0
    all_running: int = 0
    degraded: dict[str, int] = field(default_factory=dict)
    duplicates: set[str] = field(default_factory=set)
    agreements: set[str] = field(default_factory=set)


@dataclass
class Chaos:
    kills: int = 0
    kills_during_outage: int = 0
    restart_seconds: list[float] = field(default_factory=list)
    outage_seconds: float = 0.0
    outage_refused_attempts: int = 0
    crashes: int = 0
    daemon_faults: list[dict[str, Any]] = field(default_factory=list)
    daemon_fault_answers: int = 0
    late_invoicers: list[str] = field(default_factory=list)
    timeline: list[str] = field(default_factory=list)


def payment_faults(net: LocalNetProcess, rate: float) -> list[dict[str, Any]]:
    """503s on the calls that settle money: document fetches, terminations, activity deletes."""
    if rate <= 0:
        return []
    faults = [
        {"path": "/payment-api/v1/debitNotes/*", "method": "GET", "probability": rate},
        {"path": "/payment-api/v1/invoices/*", "method": "GET", "probability": rate},
        {"path": "/market-api/v1/agreements/*/terminate", "method": "POST", "probability": rate},
        {"path": "/activity-api/v1/activity/*", "method": "DELETE", "probability": rate},
    ]
    with net.client() as http:
        http.post("/_localnet/daemon-faults", json={"faults": faults}).raise_for_status()
    return faults


class Sampler(threading.Thread):
    def __init__(self, cp: ControlPlane, services: dict[str, int]) -> None:
        super().__init__(daemon=True)
        self.cp, self.services = cp, services
        self.tallies = {name: Tally() for name in services}
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(1.0):
            for name, replicas in self.services.items():
                try:
                    status = gsvc_status(self.cp, NAMESPACE, name)
                except Exception as error:  # the sampler must outlive API hiccups
                    print(f"sampler: {name}: {error}", flush=True)
                    continue
                tally = self.tallies[name]
                tally.samples += 1
                running = [i for i in status.get("instances", []) if i["state"] == "Running"]
                tally.all_running += len(running) >= replicas
                for condition in status.get("conditions", []):
                    if condition["type"] == "Degraded" and condition["status"] == "True":
                        reason = condition["reason"]
                        tally.degraded[reason] = tally.degraded.get(reason, 0) + 1
                tally.duplicates.update(duplicate_agreements(status))
                tally.agreements.update(
                    i["agreementId"] for i in status.get("instances", []) if i.get("agreementId")
                )


def live_activities(cp: ControlPlane, services: dict[str, int]) -> list[str]:
    found = []
    for name in services:
        for instance in gsvc_status(cp, NAMESPACE, name).get("instances", []):
            if instance["state"] == "Running" and instance.get("activityId"):
                found.append(instance["activityId"])
    return found


def leaks(net: LocalNetProcess, cp: ControlPlane, services: dict[str, int]) -> list[str]:
    audit = net.audit()
    found = []
    for name in services:
        status = gsvc_status(cp, NAMESPACE, name)
        found += [f"{name}: {p}" for p in ledger_problems(ledger(audit, NAMESPACE, name, status))]
    return found


def money(net: LocalNetProcess, services: dict[str, int]) -> dict[str, dict[str, Any]]:
    audit = net.audit()
    result = {}
    for name in services:
        book = ledger(audit, NAMESPACE, name, {})
        result[name] = {
            "agreements": len(book.agreements),
            "paid": book.paid,
            "over_budget": book.paid > BUDGET,
        }
    return result


def leftovers(net: LocalNetProcess, services: dict[str, int]) -> list[str]:
    """After deletion: demands, open agreements, live sandboxes, unreleased allocations."""
    nodes = {node_name(NAMESPACE, n) for n in services}
    found = []
    with net.client() as http:
        demands = http.get("/market-api/v1/demands").json()
    found += [
        f"demand {d['demandId'][:12]} still subscribed"
        for d in demands
        if d["properties"].get("golem.node.id.name") in nodes
    ]
    audit = net.audit()
    mine = {a["agreementId"] for a in audit["agreements"] if a.get("demandNodeName") in nodes}
    found += [
        f"agreement {a['agreementId'][:12]} {a['state']}"
        for a in audit["agreements"]
        if a["agreementId"] in mine and a["state"] in ("Approved", "Pending")
    ]
    found += [
        f"sandbox of {a['activityId'][:12]} alive"
        for a in audit["activities"]
        if a["agreementId"] in mine and a["sandboxAlive"]
    ]
    found += [
        f"allocation {a['allocationId'][:8]} not released"
        for a in audit["allocations"]
        if not a["released"]
    ]
    return found


def wait_until(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(1.0)
    return False


def restart(operator: OperatorProcess, chaos: Chaos) -> None:
    began = time.monotonic()
    operator.start()
    chaos.restart_seconds.append(time.monotonic() - began)


def soak(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="golem-soak-"))
    services = {f"svc-{i}": args.replicas for i in range(1, args.services + 1)}
    cp = ControlPlane().start()
    net = LocalNetProcess(work / "net", config=PROVIDERS)
    (work / "net").mkdir()
    net.start()
    gate = DaemonGate(net.port).start()
    operator: OperatorProcess | None = None
    chaos = Chaos()
    began = time.monotonic()

    def log(text: str) -> None:
        line = f"{time.monotonic() - began:7.1f}s {text}"
        chaos.timeline.append(line)
        print(line, flush=True)

    try:
        cp.kubectl_run("apply", "--server-side", "-f", str(ROOT / "crds"))
        wait_until(
            lambda: (
                cp.kubectl_run(
                    "wait",
                    "--for=condition=Established",
                    "--timeout=10s",
                    "crd/golemservices.services.golem.network",
                    check=False,
                ).returncode
                == 0
            ),
            60,
        )
        cp.kubectl_run("create", "namespace", NAMESPACE)
        operator = start_operator(work / "operator", cp, gate, net, [NAMESPACE])
        for name, replicas in services.items():
            doc = simple_manifest(replicas=replicas, budget=str(BUDGET))
            doc["metadata"] = {"name": name}
            cp.kubectl_run("apply", "-n", NAMESPACE, "-f", "-", input=json.dumps(doc))
        sampler = Sampler(cp, services)
        sampler.start()
        log(f"{len(services)} services x {args.replicas} replicas applied")
        chaos.daemon_faults = payment_faults(net, args.daemon_fault_rate)
        chaos.late_invoicers = [f"r-{n}" for n in range(1, args.late_invoices + 1)]
        for provider in chaos.late_invoicers:
            net.set_faults(provider, {"invoice_delay_seconds": 20})
        log(f"daemon faults {args.daemon_fault_rate:.0%}; late invoices: {chaos.late_invoicers}")

        # The timeline: kill moments, one outage window, one churn window.
        duration = args.duration
        kills = sorted(rng.uniform(5, duration - 5) for _ in range(args.kills))
        outage_at = rng.uniform(duration * 0.3, max(duration * 0.3, duration - args.outage - 10))
        churn_at = rng.uniform(5, max(5.0, duration - args.churn_for - 5))
        crash_every = 1.0 / args.churn_rate if args.churn_rate > 0 else float("inf")
        next_crash = churn_at
        cut = False
        t0 = time.monotonic()
        while (now := time.monotonic() - t0) < duration or cut:
            if not cut and outage_at <= now < outage_at + args.outage:
                gate.cut()
                cut, cut_began, refused_before = True, time.monotonic(), len(gate.attempts)
                log(f"daemon outage begins ({args.outage:.0f}s)")
            if cut and now >= outage_at + args.outage:
                gate.restore()
                cut = False
                chaos.outage_seconds += time.monotonic() - cut_began
                chaos.outage_refused_attempts += len(gate.attempts) - refused_before
                log("daemon outage ends")
            if kills and now >= kills[0]:
                kills.pop(0)
                operator.kill()
                chaos.kills += 1
                chaos.kills_during_outage += cut
                restart(operator, chaos)
                log(f"kill -9 #{chaos.kills}, restarted")
            if churn_at <= now < churn_at + args.churn_for and now >= next_crash:
                next_crash += crash_every
                if not cut:
                    activities = live_activities(cp, services)
                    if activities:
                        victim = rng.choice(activities)
                        try:
                            net.crash(victim)
                            chaos.crashes += 1
                            log(f"provider crash: activity {victim[:12]}")
                        except Exception as error:  # gone meanwhile
                            log(f"crash of {victim[:12]} failed: {error}")
            time.sleep(0.2)
        log("chaos over; converging")
        # How many answers the daemon faults spoilt during the chaos (they stay on till the end).
        with net.client() as http:
            chaos.daemon_fault_answers = sum(
                f["failures"] for f in http.get("/_localnet/daemon-faults").json()
            )

        converged = wait_until(
            lambda: all(
                len(
                    [
                        i
                        for i in gsvc_status(cp, NAMESPACE, n).get("instances", [])
                        if i["state"] == "Running"
                    ]
                )
                >= r
                for n, r in services.items()
            ),
            args.settle,
        )
        # Ended agreements get their invoices within seconds: give them the settle time.
        wait_until(lambda: not leaks(net, cp, services), 60)
        found_after_chaos = leaks(net, cp, services)
        sampler.stopped.set()
        sampler.join(5)
        log(f"converged={converged}; leaks after chaos: {found_after_chaos}")
        cp.kubectl_run("delete", "gsvc", "--all", "-n", NAMESPACE, "--wait=false")
        deleted = wait_until(
            lambda: (
                not json.loads(cp.kubectl_run("get", "gsvc", "-n", NAMESPACE, "-o", "json").stdout)[
                    "items"
                ]
            ),
            180,
        )
        found_after_delete = leftovers(net, services) + [
            p
            for n in services
            for p in ledger_problems(ledger(net.audit(), NAMESPACE, n, {}), BUDGET)
        ]
        log(f"deleted={deleted}; leftovers after deletion: {found_after_delete}")
        return {
            "services": services,
            "tallies": sampler.tallies,
            "chaos": chaos,
            "converged": converged,
            "leaks_after_chaos": found_after_chaos,
            "deleted": deleted,
            "leaks_after_delete": found_after_delete,
            "money": money(net, services),
            "wall": time.monotonic() - began,
        }
    finally:
        if operator is not None:
            operator.stop()
        gate.stop()
        net.stop()
        cp.stop()


def report(args: argparse.Namespace, result: dict[str, Any], command: str) -> str:
    chaos: Chaos = result["chaos"]
    restarts = chaos.restart_seconds
    lines = [
        START,
        f"### Latest soak: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        "",
        f"Command: `{command}`",
        "",
        f"- Duration {args.duration:.0f} s of chaos (wall {result['wall']:.0f} s with set-up, "
        f"convergence and deletion); {len(result['services'])} services x {args.replicas} "
        f"replicas, budget {BUDGET} GLM each.",
        f"- kill -9 of the operator: **{chaos.kills}** at random moments "
        f"({chaos.kills_during_outage} during the outage); restart to healthy took "
        f"{min(restarts, default=0):.1f}-{max(restarts, default=0):.1f} s.",
        f"- Golem daemon outage: **{chaos.outage_seconds:.0f} s**; the operator's connection "
        f"attempts meanwhile: {chaos.outage_refused_attempts} "
        f"({chaos.outage_refused_attempts / max(chaos.outage_seconds, 1):.1f}/s, with backoff).",
        f"- Provider churn: **{chaos.crashes}** activities crashed by their provider "
        f"(rate {args.churn_rate}/s for {args.churn_for:.0f} s).",
        f"- Daemon faults: 503 to {args.daemon_fault_rate:.0%} of debit-note and invoice fetches, "
        f"agreement terminations and activity deletions: **{chaos.daemon_fault_answers}** "
        f"failed answers; providers with invoices 20 s late: {', '.join(chaos.late_invoicers)}.",
        f"- Converged after the chaos: **{result['converged']}**; deletion completed: "
        f"**{result['deleted']}**.",
        "",
        "| service | all replicas Running | Degraded (samples by reason) | agreements | paid GLM |"
        " duplicates |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, tally in result["tallies"].items():
        fraction = tally.all_running / max(tally.samples, 1)
        degraded = ", ".join(f"{r} {n}" for r, n in sorted(tally.degraded.items())) or "-"
        paid = result["money"][name]["paid"]
        lines.append(
            f"| {name} | {fraction:.1%} of {tally.samples} samples | {degraded} | "
            f"{result['money'][name]['agreements']} | {paid.normalize()} | "
            f"{len(tally.duplicates)} |"
        )
    after_chaos = result["leaks_after_chaos"] or ["none"]
    after_delete = result["leaks_after_delete"] or ["none"]
    lines += [
        "",
        "Leaks after the chaos (open agreements unknown to status, ended agreements not paid "
        "exactly once, live sandboxes of ended activities, over budget): " + "; ".join(after_chaos),
        "",
        "Left after deleting every service (demands, open agreements, sandboxes, unreleased "
        "allocations, unpaid invoices): " + "; ".join(after_delete),
        END,
    ]
    return "\n".join(lines)


def write_doc(section: str) -> None:
    text = DOC.read_text() if DOC.exists() else f"# Reliability\n\n{START}\n{END}\n"
    if START not in text:
        text += f"\n{START}\n{END}\n"
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    DOC.write_text(head + section + tail)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=480, help="seconds of chaos")
    parser.add_argument("--kills", type=int, default=30, help="kill -9s at random moments")
    parser.add_argument("--outage", type=float, default=60, help="daemon outage seconds")
    parser.add_argument("--churn-rate", type=float, default=0.1, help="provider crashes per s")
    parser.add_argument("--churn-for", type=float, default=120, help="seconds of churn")
    parser.add_argument(
        "--daemon-fault-rate", type=float, default=0.1, help="share of money calls answered 503"
    )
    parser.add_argument(
        "--late-invoices", type=int, default=4, help="providers whose invoices come 20 s late"
    )
    parser.add_argument("--services", type=int, default=3)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--settle", type=float, default=120, help="seconds to converge after")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-write", action="store_true", help="do not update the doc")
    args = parser.parse_args()
    if args.duration < args.outage + 30:
        parser.error("--duration must exceed --outage by at least 30 s")
    command = "python scripts/soak.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    result = soak(args)
    section = report(args, result, command.strip())
    print(section)
    if not args.no_write:
        write_doc(section)
    clean = not result["leaks_after_chaos"] and not result["leaks_after_delete"]
    return 0 if clean and result["converged"] and result["deleted"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
