"""The local Golem network's own ceiling on this machine, driven by the project's Golem client.

Run from the repository root:  .venv/bin/python scripts/bench_localnet.py [--quick]
Starts `golem-operator local-network` as a process (fresh per run) with the minimal image and
providers that never run out of capacity, then measures, through `golem_operator.golem`:
agreements per second (subscribe, counter, draft, agreement, confirm, approval), concurrent
activities (create + deploy + start, all alive at once), exec round-trips per second (a
`/golem/run/run.sh` batch sent and its result long-polled), and settlement (destroy,
terminate, invoice). Every phase is bounded in time. Prints the figures and writes the
`localnet` section of docs/benchmarks.md (not with --quick unless --write). Called by
`make bench` and by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import bench_common as bc
import httpx
import yaml

from golem_operator.devenv.stack import LocalNetProcess
from golem_operator.golem import GolemClient, GolemConfig, GolemTimeout, ProposalEvent

PLATFORM = "erc20-holesky-tglm"
CONSTRAINTS = (
    "(&(golem.inf.mem.gib>=0.5)(golem.inf.storage.gib>=2.0)(golem.runtime.name=vm)"
    "(golem.node.debug.subnet=localnet)"
    f"(golem.com.payment.platform.{PLATFORM}.address=*)(golem.com.pricing.model=linear))"
)
RUN = {"run": {"entry_point": "/golem/run/run.sh", "args": []}}
T = TypeVar("T")


@dataclass
class Figures:
    """One run's measurements."""

    agreements: int = 0
    agreements_per_s: float = 0.0
    activities: int = 0
    activities_per_s: float = 0.0
    activities_alive: int = 0
    localnet_rss_mib: float = 0.0
    exec_per_s: float = 0.0
    exec_concurrency: int = 0
    exec_latency_ms: list[float] = field(default_factory=list)
    serial_latency_ms: float = 0.0
    settle_per_s: float = 0.0
    invoices: int = 0
    localnet_cpu: dict[str, float] = field(default_factory=dict)
    client_cpu: dict[str, float] = field(default_factory=dict)
    other_cpu: dict[str, float] = field(default_factory=dict)  # the rest of the machine


def providers_yaml(work: Path, providers: int) -> Path:
    """Providers that never refuse for capacity, and the minimal image."""
    config = {
        "subnet_tag": "localnet",
        "payment_platform": PLATFORM,
        "debit_note_interval_seconds": 120,
        "requestor": {"funds": "100000"},
        "limits": {"command_timeout_seconds": 30},
        "images": [{"tag": bc.MINIMAL_TAG, "path": str(bc.MINIMAL_IMAGE)}],
        "providers": [{"count": providers, "name_prefix": "bench", "max_agreements": 100000}],
    }
    path = work / "providers.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


async def bounded(
    items: list[T], concurrency: int, act: Callable[[T], Awaitable[Any]]
) -> list[Any]:
    semaphore = asyncio.Semaphore(concurrency)

    async def one(item: T) -> Any:
        async with semaphore:
            return await act(item)

    return await asyncio.gather(*(one(item) for item in items))


class Bench:
    def __init__(self, net: LocalNetProcess, client: GolemClient, concurrency: int) -> None:
        self.net, self.client, self.concurrency = net, client, concurrency
        self.pid = net.proc.pid if net.proc else 0
        self.figures = Figures()

    def cpu_phase(self, name: str, before: tuple[bc.CpuSample, ...]) -> None:
        after = self.cpu_now()
        net, client, machine = (bc.cpu_share(b, a) for b, a in zip(before, after, strict=True))
        self.figures.localnet_cpu[name] = net
        self.figures.client_cpu[name] = client
        self.figures.other_cpu[name] = machine - net - client

    def cpu_now(self) -> tuple[bc.CpuSample, ...]:
        return (
            bc.sample_cpu(self.pid, children=True),
            bc.sample_cpu(os.getpid()),
            bc.CpuSample(time.monotonic(), bc.machine_cpu()[0]),
        )

    async def demand_properties(self) -> dict[str, Any]:
        me = await self.client.identity.me()
        async with httpx.AsyncClient(base_url=self.net.url, timeout=10) as http:
            images = (
                await http.get(
                    "/_localnet/images", headers={"Authorization": f"Bearer {self.net.app_key}"}
                )
            ).json()
        package = next(i["taskPackage"] for i in images if i["tag"] == bc.MINIMAL_TAG)
        expiration = datetime.now(UTC) + timedelta(hours=1)
        return {
            "golem.node.debug.subnet": "localnet",
            "golem.srv.comp.expiration": int(expiration.timestamp() * 1000),
            "golem.srv.comp.task_package": package,
            "golem.srv.comp.vm.package_format": "gvmkit-squash",
            "golem.com.payment.chosen-platform": PLATFORM,
            f"golem.com.payment.platform.{PLATFORM}.address": me.identity,
            "golem.com.payment.debit-notes.accept-timeout?": 240,
        }

    async def agreements(self, demands: int, providers: int) -> list[str]:
        """Every provider's offer on every demand taken to an approved agreement."""
        market = self.client.market
        properties = await self.demand_properties()
        valid_to = datetime.now(UTC) + timedelta(hours=1)
        started = time.monotonic()
        cpu = self.cpu_now()

        async def one_demand(_: int) -> list[str]:
            demand = await market.subscribe_demand(properties, CONSTRAINTS)
            offers: list[str] = []
            while len(offers) < providers:
                for event in await market.collect_demand_events(demand, timeout=2, max_events=100):
                    if isinstance(event, ProposalEvent) and event.proposal.state == "Initial":
                        offers.append(event.proposal.proposal_id)
            counters = set(
                await asyncio.gather(
                    *(market.counter_proposal(demand, o, properties, CONSTRAINTS) for o in offers)
                )
            )
            drafts: list[str] = []
            while len(drafts) < len(counters):
                for event in await market.collect_demand_events(demand, timeout=2, max_events=100):
                    proposal = getattr(event, "proposal", None)
                    if proposal is not None and proposal.prev_proposal_id in counters:
                        drafts.append(proposal.proposal_id)

            async def sign(draft: str) -> str:
                agreement = await market.create_agreement(draft, valid_to)
                await market.confirm_agreement(agreement)
                await market.wait_for_approval(agreement, timeout=30)
                return agreement

            signed = await asyncio.gather(*(sign(d) for d in drafts))
            await market.unsubscribe_demand(demand)
            return list(signed)

        # Each demand negotiates with every provider at once: keep the client's connection
        # pool (100) from being the limit by running demands in parallel up to it.
        per_demand = max(1, self.concurrency // providers)
        nested = await bounded(list(range(demands)), per_demand, one_demand)
        agreements = [a for group in nested for a in group]
        elapsed = time.monotonic() - started
        self.cpu_phase("agreements", cpu)
        self.figures.agreements = len(agreements)
        self.figures.agreements_per_s = len(agreements) / elapsed
        return agreements

    async def activities(self, agreements: list[str]) -> list[str]:
        """An activity per agreement, deployed and started: all alive at once."""
        activity = self.client.activity
        started = time.monotonic()
        cpu = self.cpu_now()

        async def ready(agreement: str) -> str:
            activity_id = await activity.create_activity(agreement, timeout=30)
            await self.run_batch(activity_id, [{"deploy": {}}, {"start": {}}])
            return activity_id

        activity_ids = await bounded(agreements, self.concurrency, ready)
        elapsed = time.monotonic() - started
        self.cpu_phase("activities", cpu)
        audit = self.net.audit()
        self.figures.activities = len(activity_ids)
        self.figures.activities_per_s = len(activity_ids) / elapsed
        self.figures.activities_alive = int(audit["sandboxesAlive"])
        self.figures.localnet_rss_mib = bc.rss_mib(self.pid)[0]
        return list(activity_ids)

    async def run_batch(self, activity_id: str, commands: list[dict[str, Any]]) -> None:
        batch = await self.client.activity.exec(activity_id, commands)
        while True:
            try:
                results = await self.client.activity.get_exec_batch_results(
                    activity_id, batch, timeout=10
                )
            except GolemTimeout:
                continue
            if any(r.result != "Ok" for r in results):
                raise RuntimeError(f"batch failed: {results}")
            if len(results) == len(commands):
                return

    async def exec_round_trips(self, activity_ids: list[str], seconds: float) -> None:
        """As many run batches as the network takes, `concurrency` in flight at once."""
        # Serial latency first: one batch at a time on an otherwise idle network.
        serial: list[float] = []
        for activity_id in activity_ids[:20]:
            began = time.monotonic()
            await self.run_batch(activity_id, [RUN])
            serial.append((time.monotonic() - began) * 1000)
        self.figures.serial_latency_ms = bc.median(serial)
        latencies: list[float] = []
        deadline = time.monotonic() + seconds
        cpu = self.cpu_now()
        workers = min(self.concurrency, len(activity_ids))

        async def worker(index: int) -> None:
            mine = activity_ids[index::workers]
            turn = 0
            while time.monotonic() < deadline:
                began = time.monotonic()
                await self.run_batch(mine[turn % len(mine)], [RUN])
                latencies.append((time.monotonic() - began) * 1000)
                turn += 1

        started = time.monotonic()
        await asyncio.gather(*(worker(i) for i in range(workers)))
        elapsed = time.monotonic() - started
        self.cpu_phase("exec", cpu)
        self.figures.exec_per_s = len(latencies) / elapsed
        self.figures.exec_concurrency = workers
        self.figures.exec_latency_ms = sorted(latencies)

    async def settle(self, agreements: list[str], activity_ids: list[str]) -> None:
        """Destroy every activity, terminate every agreement, accept every invoice."""
        started = time.monotonic()
        cpu = self.cpu_now()
        await bounded(
            activity_ids, self.concurrency, lambda a: self.client.activity.destroy_activity(a)
        )
        await bounded(
            agreements,
            self.concurrency,
            lambda a: self.client.market.terminate_agreement(
                a, {"message": "benchmark done", "golem.requestor.code": "Success"}
            ),
        )
        self.cpu_phase("settle", cpu)
        self.figures.settle_per_s = len(agreements) / (time.monotonic() - started)
        audit = self.net.audit()
        self.figures.invoices = len(audit["invoices"])
        if self.figures.invoices != len(agreements):
            raise RuntimeError(f"{len(agreements)} agreements but {self.figures.invoices} invoices")
        if audit["sandboxesAlive"]:
            raise RuntimeError(f"{audit['sandboxesAlive']} sandboxes still alive")


async def one_run(args: argparse.Namespace, work: Path) -> Figures:
    net = LocalNetProcess(work, config=providers_yaml(work, args.providers)).start()
    try:
        config = GolemConfig(url=net.url, app_key=net.app_key, request_timeout=60)
        async with GolemClient(config) as client:
            bench = Bench(net, client, args.concurrency)
            async with asyncio.timeout(args.time_limit):
                demands = max(1, args.agreements // args.providers)
                agreements = await bench.agreements(demands, args.providers)
                activity_ids = await bench.activities(agreements[: args.activities])
                await bench.exec_round_trips(activity_ids, args.exec_seconds)
                await bench.settle(agreements, activity_ids)
            return bench.figures
    finally:
        net.stop()


def percentile(values: list[float], fraction: float) -> float:
    return values[min(len(values) - 1, int(len(values) * fraction))] if values else float("nan")


def report(args: argparse.Namespace, runs: list[Figures]) -> str:
    def pick(attribute: str) -> list[float]:
        return [float(getattr(r, attribute)) for r in runs]

    def cpu(phase: str) -> str:
        net = bc.median([100 * r.localnet_cpu.get(phase, 0.0) for r in runs])
        client = bc.median([100 * r.client_cpu.get(phase, 0.0) for r in runs])
        others = bc.median([100 * r.other_cpu.get(phase, 0.0) for r in runs])
        return f"{net:.0f} / {client:.0f} / {others:.0f}"

    p50 = bc.median([percentile(r.exec_latency_ms, 0.5) for r in runs])
    p95 = bc.median([percentile(r.exec_latency_ms, 0.95) for r in runs])
    first = runs[0]
    rows = [
        [
            f"agreements/s ({first.agreements} agreements, {args.providers} providers)",
            bc.spread(pick("agreements_per_s")),
            cpu("agreements"),
        ],
        [
            f"activities created + deployed + started per s ({first.activities})",
            bc.spread(pick("activities_per_s")),
            cpu("activities"),
        ],
        [
            "concurrent activities alive (sandboxes)",
            bc.spread(pick("activities_alive"), 0),
            f"localnet RSS {bc.spread(pick('localnet_rss_mib'), 0)} MiB",
        ],
        [
            f"exec round-trips/s ({first.exec_concurrency} in flight, one `run` each)",
            bc.spread(pick("exec_per_s")),
            cpu("exec"),
        ],
        ["exec round-trip p50 / p95 under that load (ms)", f"{p50:.0f} / {p95:.0f}", ""],
        ["exec round-trip, one at a time (ms)", bc.spread(pick("serial_latency_ms")), ""],
        [
            "settled per s (destroy + terminate -> invoice)",
            bc.spread(pick("settle_per_s")),
            cpu("settle"),
        ],
    ]
    return bc.table(
        [
            "figure",
            "value: median (min-max)",
            "CPU, % of one core: localnet (+ its commands) / client / other processes",
        ],
        rows,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--providers", type=int, default=20)
    parser.add_argument("--agreements", type=int, default=1000)
    parser.add_argument("--activities", type=int, default=1000)
    parser.add_argument("--exec-seconds", type=float, default=15.0)
    parser.add_argument("--concurrency", type=int, default=100, help="requests in flight")
    parser.add_argument("--time-limit", type=float, default=300.0, help="seconds per run")
    parser.add_argument("--write", action="store_true", help="write docs even with --quick")
    parser.add_argument("--no-write", action="store_true", help="do not write docs")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.agreements, args.activities, args.exec_seconds = 1, 100, 100, 5.0
        args.providers = min(args.providers, 10)
        args.time_limit = min(args.time_limit, 120.0)
    started = bc.today()
    machine = bc.machine()
    print(f"machine: {machine}", flush=True)
    runs: list[Figures] = []
    for index in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="bench-localnet-") as tmp:
            began = time.monotonic()
            figures = asyncio.run(one_run(args, Path(tmp)))
            print(
                f"run {index + 1}/{args.runs} ({time.monotonic() - began:.0f}s): "
                f"{figures.agreements_per_s:.1f} agreements/s, "
                f"{figures.activities_per_s:.1f} activities/s, "
                f"{figures.activities_alive} alive, {figures.exec_per_s:.1f} exec/s, "
                f"{figures.settle_per_s:.1f} settled/s",
                flush=True,
            )
            runs.append(figures)
    text = report(args, runs)
    print(text)
    if (not args.quick or args.write) and not args.no_write:
        body = (
            "## The local Golem network's ceiling\n\n"
            f"Measured {started} on {machine}.\n\n"
            f"```sh\n{bc.command_line()}\n```\n\n{text}\n"
        )
        bc.write_section("localnet", body)
        print(f"wrote the localnet section of {bc.DOCS.relative_to(bc.ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
