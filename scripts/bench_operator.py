"""The operator at scale: convergence, scale-down, recovery, steady state, cost per instance.

Run from the repository root:  .venv/bin/python scripts/bench_operator.py [--quick]
Starts a real control plane (etcd + kube-apiserver), the local Golem network (no added
provider latency, the minimal image of examples/images/minimal, providers with room for every
agreement) and `golem-operator run` as processes, all on 127.0.0.1, and measures:

- convergence: N GolemServices x R replicas applied at once -> seconds until every instance
  is Running, for each --sizes entry (default 1x10, 10x10, 100x10);
- steady state: the largest size Running with its run script every 10 s for --steady-seconds
  -> the operator's CPU share (of one core) and peak RSS;
- recovery: the operator killed (SIGKILL) with every instance Running and restarted ->
  seconds until every instance ran its run script under the new process, and the number of
  agreements signed meanwhile (must be 0);
- scale-down: every service scaled to 0 -> seconds until every instance is Terminated and
  every agreement is terminated with its invoice accepted (the local network's audit view);
- cost per instance: Kubernetes API writes per instance state transition (status patches and
  Events, from the operator's metrics and the API server's), Golem API calls per instance
  start, and the shortest gap between two status writes of one service.

Each figure is the median of --runs runs (a fresh local network and operator per run, one
control plane). Writes docs/benchmarks/convergence.png (instances per state over time during
the largest convergence) and the `operator` section of docs/benchmarks.md (not with --quick
unless --write). Every wait is bounded; a phase that times out is reported as missed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bench_common as bc
import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from golem_operator.devenv.controlplane import ADMIN_TOKEN, ControlPlane
from golem_operator.devenv.stack import LocalNetProcess, OperatorProcess

GROUP_PATH = "/apis/services.golem.network/v1alpha1"
STATES = ("Pending", "Starting", "Running", "Stopping", "Terminated")
PLOT = bc.ROOT / "docs" / "benchmarks" / "convergence.png"
PRICE = {"start": "0.001", "per_cpu_hour": "0.1", "per_env_hour": "0.02"}


class PhaseTimeout(Exception):
    """A phase did not finish within its time limit."""


# --- the stack -----------------------------------------------------------------------------


def providers_yaml(
    work: Path, providers: int, instances: int, per_provider: int | None = None
) -> Path:
    """Providers with room for every instance (so capacity never limits) unless
    `per_provider` says how many agreements each takes at once; the minimal image."""
    if per_provider is None:
        per_provider = max(10, 2 * math.ceil(instances / providers), instances)
    config = {
        "subnet_tag": "public",
        "payment_platform": "erc20-holesky-tglm",
        "debit_note_interval_seconds": 120,
        "requestor": {"funds": "1000000"},
        "limits": {"command_timeout_seconds": 30},
        "images": [{"tag": bc.MINIMAL_TAG, "path": str(bc.MINIMAL_IMAGE)}],
        "providers": [
            {
                "count": providers,
                "name_prefix": "bench",
                "max_agreements": per_provider,
                "prices": PRICE,
            }
        ],
    }
    path = work / "providers.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def manifest(name: str, replicas: int) -> dict[str, Any]:
    """A GolemService on the minimal image whose scripts are trivial shell commands."""
    return {
        "apiVersion": "services.golem.network/v1alpha1",
        "kind": "GolemService",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "payload": {"image": {"tag": bc.MINIMAL_TAG}, "minMemGib": 0.5, "minStorageGib": 2.0},
            "lifecycle": {
                "start": {"commands": [{"run": {"entrypoint": "/golem/run/start.sh"}}]},
                "run": {
                    "intervalSeconds": 10,
                    "commands": [{"run": {"entrypoint": "/golem/run/run.sh"}}],
                },
                "stop": {"commands": [{"run": {"entrypoint": "/golem/run/stop.sh"}}]},
            },
            "agreementDuration": "1h",
            # Room for every replica's agreement (at most ~0.22 GLM each over the hour).
            "budget": str(max(10, math.ceil(replicas * 0.3))),
        },
    }


def metric_sum(
    text: str, name: str, where: Callable[[dict[str, str]], bool] | None = None
) -> float:
    """Sum of a Prometheus metric's samples (counters: the `_total` samples)."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and (where is None or where(sample.labels)):
                total += sample.value
    return total


def metric_by(text: str, name: str, label: str) -> Counter[str]:
    counts: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                counts[sample.labels.get(label, "")] += int(sample.value)
    return counts


class Kube:
    """The benchmark's own view of the API server (admin token, not the operator's client)."""

    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp
        self.http = httpx.Client(
            base_url=cp.server,
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            verify=False,  # noqa: S501 - the local API server's self-signed certificate
            timeout=60,
        )

    def list_services(self, namespace: str) -> list[dict[str, Any]]:
        response = self.http.get(f"{GROUP_PATH}/namespaces/{namespace}/golemservices")
        response.raise_for_status()
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    def events(self, namespace: str) -> int:
        response = self.http.get(f"/api/v1/namespaces/{namespace}/events")
        response.raise_for_status()
        return len(response.json()["items"])

    def apiserver_writes(self) -> Counter[str]:
        """Write requests served so far, keyed `VERB resource[/subresource]`."""
        text = self.http.get("/metrics").text
        counts: Counter[str] = Counter()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name != "apiserver_request_total":
                    continue
                labels = sample.labels
                if labels.get("verb") not in ("POST", "PATCH", "PUT", "DELETE", "APPLY"):
                    continue
                resource = labels.get("resource", "")
                if resource not in ("golemservices", "golemserviceinstances", "events"):
                    continue
                sub = labels.get("subresource", "")
                key = f"{labels['verb']} {resource}" + (f"/{sub}" if sub else "")
                counts[key] += int(sample.value)
        return counts

    def apply_all(self, namespace: str, docs: list[dict[str, Any]]) -> None:
        """Server-side apply of every document at once, as a GitOps tool would."""
        path = f"{GROUP_PATH}/namespaces/{namespace}/golemservices"

        def apply(doc: dict[str, Any]) -> None:
            response = self.http.patch(
                f"{path}/{doc['metadata']['name']}",
                params={"fieldManager": "bench", "force": "true"},
                content=json.dumps(doc),
                headers={"Content-Type": "application/apply-patch+yaml"},
            )
            response.raise_for_status()

        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(apply, docs))

    def scale_all(self, namespace: str, names: list[str], replicas: int) -> list[float]:
        """The named GolemServices scaled at once (the scale subresource); each call's seconds."""
        path = f"{GROUP_PATH}/namespaces/{namespace}/golemservices"

        def scale(name: str) -> float:
            began = time.monotonic()
            response = self.http.patch(
                f"{path}/{name}/scale",
                content=json.dumps({"spec": {"replicas": replicas}}),
                headers={"Content-Type": "application/merge-patch+json"},
            )
            response.raise_for_status()
            return time.monotonic() - began

        with ThreadPoolExecutor(max_workers=16) as pool:
            return sorted(pool.map(scale, names))

    def close(self) -> None:
        self.http.close()


class Watch:
    """Watches a namespace's GolemServices and GolemServiceInstances in threads: per-state
    counts over time (from the instance objects), status write gaps per service, and the
    latest status of each."""

    def __init__(self, kube: Kube, namespace: str) -> None:
        self.kube, self.namespace = kube, namespace
        self.objects: dict[str, dict[str, Any]] = {}
        #: Instance objects by name.
        self.instances: dict[str, dict[str, Any]] = {}
        self.last_change: dict[str, float] = {}
        self.gaps: list[float] = []  # seconds between two status changes of one service
        self.status_writes = 0
        self.timeline: list[tuple[float, dict[str, int]]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._watch, args=("golemservices",), daemon=True),
            threading.Thread(target=self._watch, args=("golemserviceinstances",), daemon=True),
            threading.Thread(target=self._sample, daemon=True),
        ]
        self.origin = time.monotonic()

    def start(self) -> Watch:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _watch(self, resource: str) -> None:
        path = f"{GROUP_PATH}/namespaces/{self.namespace}/{resource}"
        instances = resource == "golemserviceinstances"
        while not self._stop.is_set():
            try:
                listed = self.kube.http.get(path)
                listed.raise_for_status()
                body = listed.json()
                with self._lock:
                    for item in body["items"]:
                        if instances:
                            self.instances[item["metadata"]["name"]] = item
                        else:
                            self._record(item, time.monotonic(), initial=True)
                version = body["metadata"]["resourceVersion"]
                params = {"watch": "1", "resourceVersion": version, "timeoutSeconds": "600"}
                with self.kube.http.stream("GET", path, params=params, timeout=None) as stream:
                    for line in stream.iter_lines():
                        if self._stop.is_set():
                            return
                        if not line:
                            continue
                        event = json.loads(line)
                        with self._lock:
                            name = event["object"]["metadata"]["name"]
                            if instances:
                                if event["type"] == "DELETED":
                                    self.instances.pop(name, None)
                                elif event["type"] in ("ADDED", "MODIFIED"):
                                    self.instances[name] = event["object"]
                            elif event["type"] == "DELETED":
                                self.objects.pop(name, None)
                            elif event["type"] in ("ADDED", "MODIFIED"):
                                self._record(event["object"], time.monotonic())
            except (httpx.HTTPError, ValueError, KeyError):
                time.sleep(0.5)

    def _record(self, item: dict[str, Any], now: float, initial: bool = False) -> None:
        name = item["metadata"]["name"]
        old = self.objects.get(name)
        self.objects[name] = item
        status = item.get("status")
        if initial or not status or (old is not None and old.get("status") == status):
            return
        self.status_writes += 1
        if name in self.last_change:
            self.gaps.append(now - self.last_change[name])
        self.last_change[name] = now

    def _sample(self) -> None:
        while not self._stop.wait(0.5):
            counts = self.counts()
            self.timeline.append((time.monotonic() - self.origin, counts))

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATES, 0)
        with self._lock:
            for item in self.instances.values():
                state = (item.get("status") or {}).get("state", "Pending")
                counts[state] = counts.get(state, 0) + 1
        return counts

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.objects.values())

    def instance_statuses(self) -> list[dict[str, Any]]:
        """The status of every instance object (state defaults to Pending before its first
        status write)."""
        with self._lock:
            return [
                {"state": "Pending", **(item.get("status") or {})}
                for item in self.instances.values()
            ]

    def reset_gaps(self) -> None:
        with self._lock:
            self.gaps.clear()
            self.last_change.clear()
            self.status_writes = 0


def wait_for(what: str, predicate: Callable[[], Any], timeout: float, every: float = 0.25) -> float:
    """Seconds until predicate() is true; PhaseTimeout after `timeout`."""
    started = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise PhaseTimeout(f"{what}: not within {timeout:.0f}s")
        time.sleep(every)


# --- one run -------------------------------------------------------------------------------

Snapshot = dict[str, tuple[int, bc.CpuSample]]


def snapshot(pids: dict[str, int]) -> Snapshot:
    busy = bc.machine_cpu()[0]
    # The whole machine, in the same shape: "cpu" is busy seconds over all cores.
    taken: Snapshot = {"machine": (0, bc.CpuSample(time.monotonic(), busy))}
    for name, pid in pids.items():
        with contextlib.suppress(OSError):
            taken[name] = (pid, bc.sample_cpu(pid, children=name == "localnet"))
    return taken


def shares(before: Snapshot, after: Snapshot) -> dict[str, float]:
    """CPU of each process between two snapshots, in % of one core (a restarted process
    counts from its start)."""
    out: dict[str, float] = {}
    for name, (pid, sample) in after.items():
        old_pid, old = before.get(name, (0, None))
        wall = sample.wall - (old.wall if old is not None else sample.wall)
        if old is None or wall <= 0:
            continue
        used = sample.cpu - (old.cpu if old_pid == pid else 0.0)
        out[name] = 100 * used / wall
    return out


@dataclass
class Convergence:
    services: int
    replicas: int
    seconds: float | None = None
    error: str = ""
    operator_cpu: float = 0.0


@dataclass
class RunFigures:
    convergence: list[Convergence] = field(default_factory=list)
    steady_cpu: float | None = None
    steady_rss_peak: float | None = None
    peak_rss_overall: float | None = None
    recovery_process_up: float | None = None
    recovery_adopted: float | None = None
    recovery_all_ran: float | None = None
    recovery_new_agreements: int | None = None
    scale_down_terminated: float | None = None
    scale_down_paid: float | None = None
    patches_per_transition: float | None = None
    events_per_transition: float | None = None
    kube_writes_per_transition: float | None = None
    status_writes_per_transition: float | None = None
    apiserver_writes: dict[str, int] = field(default_factory=dict)
    golem_calls_per_start: float | None = None
    #: the same without the run script's periodic exec + result polls of Running instances
    golem_start_calls_per_start: float | None = None
    golem_calls_by_path: dict[str, float] = field(default_factory=dict)
    min_status_gap: float | None = None
    gaps_under_half_second: int = 0
    gaps: int = 0
    patch_rate_max: float | None = None  # status patches per second of the busiest service
    status_writes_per_service_s: float | None = None
    errors: list[str] = field(default_factory=list)
    #: phase -> process -> CPU in % of one core
    phase_cpu: dict[str, dict[str, float]] = field(default_factory=dict)
    timeline: list[tuple[float, dict[str, int]]] = field(default_factory=list)


class Run:
    def __init__(self, args: argparse.Namespace, cp: ControlPlane, kube: Kube, work: Path) -> None:
        self.args, self.cp, self.kube, self.work = args, cp, kube, work
        self.figures = RunFigures()
        biggest = max(n * r for n, r in args.sizes)
        config = providers_yaml(work, args.providers, biggest, args.agreements_per_provider)
        self.net = LocalNetProcess(work, config=config).start()
        self.operator = OperatorProcess(
            work,
            cp.kubeconfig,
            self.net.url,
            self.net.key_file,
            extra_env={
                "GOLEM_OPERATOR_LOG_LEVEL": args.log_level,
                # The product's default (the dev stack shortens it for tests).
                "GOLEM_OPERATOR_RUN_RESULT_INTERVAL": "15",
            },
        ).start()

    def close(self) -> None:
        self.operator.stop()
        self.net.stop()

    @property
    def pid(self) -> int:
        assert self.operator.proc is not None
        return self.operator.proc.pid

    def pids(self) -> dict[str, int]:
        """The processes whose CPU each phase reports (etcd and kube-apiserver by position)."""
        assert self.net.proc is not None
        found = {"operator": self.pid, "localnet": self.net.proc.pid}
        for name, proc in zip(("etcd", "kube-apiserver"), self.cp._procs, strict=False):
            found[name] = proc.pid
        found["benchmark"] = os.getpid()
        return found

    def measure(self, phase: str, before: Snapshot) -> None:
        self.figures.phase_cpu[phase] = shares(before, snapshot(self.pids()))

    def namespace(self) -> str:
        name = f"bench-{uuid.uuid4().hex[:8]}"
        self.cp.kubectl_run(
            "create",
            "-f",
            "-",
            input=json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
        )
        return name

    def apply(self, namespace: str, services: int, replicas: int) -> None:
        docs = [manifest(f"svc-{i:03d}", replicas) for i in range(services)]
        self.kube.apply_all(namespace, docs)

    def running(self, watch: Watch, total: int) -> bool:
        return watch.counts()["Running"] >= total

    def converge(self, services: int, replicas: int, keep: bool) -> tuple[str, Watch] | None:
        total = services * replicas
        namespace = self.namespace()
        watch = Watch(self.kube, namespace).start()
        result = Convergence(services, replicas)
        self.figures.convergence.append(result)
        limit = self.args.converge_limit
        before_metrics = self.operator.metrics() if keep else ""
        before_api = self.kube.apiserver_writes() if keep else Counter()
        cpu = bc.sample_cpu(self.pid)
        processes = snapshot(self.pids())
        if keep and self.args.profile:
            self.profile("convergence", limit)
        watch.origin = time.monotonic()
        started = time.monotonic()
        try:
            self.apply(namespace, services, replicas)
            print(f"  applied in {time.monotonic() - started:.1f}s", flush=True)
            wait_for(f"{total} Running", lambda: self.running(watch, total), limit, every=0.1)
            result.seconds = time.monotonic() - started
        except PhaseTimeout as error:
            result.error = f"{error} ({watch.counts()})"
            self.figures.errors.append(result.error)
        result.operator_cpu = bc.cpu_share(cpu, bc.sample_cpu(self.pid))
        self.measure(f"convergence {services}x{replicas}", processes)
        print(
            f"  convergence {services}x{replicas}: "
            + (f"{result.seconds:.1f}s" if result.seconds is not None else result.error)
            + f" (operator {100 * result.operator_cpu:.0f}% of a core)",
            flush=True,
        )
        if not keep:
            self.delete_all(namespace, watch)
            return None
        time.sleep(1.0)  # the last status writes and Events of the convergence
        self.cost(namespace, watch, before_metrics, before_api, total)
        self.figures.timeline = list(watch.timeline)
        return namespace, watch

    def cost(
        self,
        namespace: str,
        watch: Watch,
        before_metrics: str,
        before_api: Counter[str],
        total: int,
    ) -> None:
        after = self.operator.metrics()

        def delta(name: str) -> float:
            return metric_sum(after, name) - metric_sum(before_metrics, name)

        transitions = delta("golem_operator_instance_transitions_total")
        patches = delta("golem_operator_status_patches_total")
        events = self.kube.events(namespace)
        api = self.kube.apiserver_writes() - before_api
        calls_after = metric_by(
            after, "golem_operator_golem_api_request_duration_seconds_count", "path"
        )
        calls_before = metric_by(
            before_metrics, "golem_operator_golem_api_request_duration_seconds_count", "path"
        )
        calls = calls_after - calls_before
        figures = self.figures
        if transitions:
            figures.patches_per_transition = patches / transitions
            figures.events_per_transition = events / transitions
            kube_writes = sum(v for k, v in api.items() if k != "PATCH golemservices/scale")
            figures.kube_writes_per_transition = kube_writes / transitions
            # What records state: the summaries, and the instance objects (create + status).
            status_writes = sum(
                v
                for k, v in api.items()
                if k
                in (
                    "PATCH golemservices/status",
                    "POST golemserviceinstances",
                    "PATCH golemserviceinstances/status",
                )
            )
            figures.status_writes_per_transition = status_writes / transitions
        figures.apiserver_writes = dict(api)
        figures.golem_calls_per_start = sum(calls.values()) / total
        execs = sum(c for p, c in calls.items() if p.endswith("/exec"))
        probes = max(execs - total, 0)  # each start runs one batch, each probe one more
        figures.golem_start_calls_per_start = (sum(calls.values()) - 2 * probes) / total
        figures.golem_calls_by_path = {p: c / total for p, c in calls.most_common()}
        figures.min_status_gap = min(watch.gaps) if watch.gaps else None
        figures.gaps_under_half_second = sum(1 for g in watch.gaps if g < 0.45)
        figures.gaps = len(watch.gaps)
        seconds_converging = self.figures.convergence[-1].seconds or 1.0
        per_service = metric_by(after, "golem_operator_status_patches_total", "service")
        per_service_before = metric_by(
            before_metrics, "golem_operator_status_patches_total", "service"
        )
        busiest = max((per_service - per_service_before).values(), default=0)
        figures.patch_rate_max = busiest / seconds_converging
        seconds = max(t for t, _ in watch.timeline) if watch.timeline else 1.0
        services = max(1, len(watch.snapshot()))
        figures.status_writes_per_service_s = watch.status_writes / services / seconds
        top = ", ".join(
            f"{'/'.join(path.split('/')[-2:])} {count / total:.1f}"
            for path, count in calls.most_common(6)
        )
        print(f"  Golem calls per instance start by path: {top}", flush=True)
        print(
            f"  cost: {patches:.0f} status patches, {events} Events, {transitions:.0f} "
            f"transitions, {sum(calls.values())} Golem calls; min status gap "
            f"{figures.min_status_gap}",
            flush=True,
        )

    def steady(self, total: int) -> None:
        seconds = self.args.steady_seconds
        if self.args.profile:
            self.profile("steady", seconds)
        cpu = bc.sample_cpu(self.pid)
        processes = snapshot(self.pids())
        peak = 0.0
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            peak = max(peak, bc.rss_mib(self.pid)[0])
            time.sleep(0.5)
        self.figures.steady_cpu = bc.cpu_share(cpu, bc.sample_cpu(self.pid))
        self.measure("steady state", processes)
        self.figures.steady_rss_peak = peak
        self.figures.peak_rss_overall = bc.rss_mib(self.pid)[1]
        print(
            f"  steady state {seconds:.0f}s with {total} Running: operator "
            f"{100 * self.figures.steady_cpu:.1f}% of a core, peak RSS {peak:.0f} MiB "
            f"(since start {self.figures.peak_rss_overall:.0f} MiB)",
            flush=True,
        )

    def recovery(self, namespace: str, watch: Watch, total: int) -> None:
        agreements_before = len(self.net.audit()["agreements"])
        processes = snapshot(self.pids())
        self.operator.kill()
        killed = datetime.now(UTC)
        threshold = killed.replace(microsecond=0).timestamp() + 1  # surely after the kill
        started = time.monotonic()
        self.operator.start()
        self.figures.recovery_process_up = time.monotonic() - started
        limit = self.args.recovery_limit
        if self.args.profile:
            self.profile("recovery", 40)

        def adopted() -> bool:
            with contextlib.suppress(httpx.HTTPError):
                text = self.operator.metrics()
                running = metric_sum(
                    text, "golem_operator_instances", lambda labels: labels["state"] == "Running"
                )
                return running >= total
            return False

        progress: list[str] = []

        def all_ran() -> bool:
            ran = 0
            for instance in watch.instance_statuses():
                last = (instance.get("lastRun") or {}).get("time")
                if (
                    instance["state"] == "Running"
                    and last
                    and datetime.fromisoformat(last).timestamp() >= threshold
                ):
                    ran += 1
            elapsed = time.monotonic() - started
            if not progress or elapsed - float(progress[-1].split("s:")[0]) >= 2.0:
                progress.append(f"{elapsed:.0f}s:{ran}")
            return ran >= total

        try:
            # Scraping /metrics costs the operator CPU: once a second is enough.
            wait_for("re-adoption (metrics)", adopted, limit, every=1.0)
            self.figures.recovery_adopted = time.monotonic() - started
            wait_for("every instance's run script under the new operator", all_ran, limit)
            self.figures.recovery_all_ran = time.monotonic() - started
        except PhaseTimeout as error:
            self.figures.errors.append(f"recovery: {error}")
        self.measure("recovery", processes)
        print(f"  recovery progress (seconds: instances that ran): {' '.join(progress)}")
        self.figures.recovery_new_agreements = (
            len(self.net.audit()["agreements"]) - agreements_before
        )
        print(
            f"  recovery: process up {self.figures.recovery_process_up:.1f}, adopted "
            f"{self.figures.recovery_adopted}, every run script "
            f"{self.figures.recovery_all_ran}, new agreements "
            f"{self.figures.recovery_new_agreements}",
            flush=True,
        )

    def scale_down(self, namespace: str, watch: Watch) -> None:
        limit = self.args.scale_down_limit
        processes = snapshot(self.pids())
        if self.args.profile:
            self.profile("scale-down", 30)
        names = [item["metadata"]["name"] for item in watch.snapshot()]
        started = time.monotonic()
        calls = self.kube.scale_all(namespace, names, 0)
        print(
            f"  scaled in {time.monotonic() - started:.1f}s (each call: min {calls[0]:.2f}s, "
            f"median {bc.median(calls):.2f}s, max {calls[-1]:.2f}s)",
            flush=True,
        )

        def terminated() -> bool:
            items = watch.snapshot()
            for item in items:
                status = item.get("status") or {}
                if status.get("observedGeneration") != item["metadata"].get("generation"):
                    return False
            if any(i["state"] != "Terminated" for i in watch.instance_statuses()):
                return False
            return bool(items)

        def paid() -> bool:
            audit = self.net.audit()
            accepted = {i["agreementId"] for i in audit["invoices"] if i["status"] == "ACCEPTED"}
            return all(
                a["state"] == "Terminated" and a["agreementId"] in accepted
                for a in audit["agreements"]
            )

        try:
            wait_for("every instance Terminated", terminated, limit, every=0.1)
            self.figures.scale_down_terminated = time.monotonic() - started
            wait_for("every agreement terminated and paid", paid, limit, every=0.5)
            self.figures.scale_down_paid = time.monotonic() - started
        except PhaseTimeout as error:
            self.figures.errors.append(f"scale-down: {error}")
        self.measure("scale-down", processes)
        print(
            f"  scale-down: all Terminated {self.figures.scale_down_terminated}, all paid "
            f"{self.figures.scale_down_paid}",
            flush=True,
        )

    def delete_all(self, namespace: str, watch: Watch) -> None:
        self.cp.kubectl_run("delete", "-n", namespace, "gsvc", "--all", "--wait=false")
        try:
            wait_for("deletion", lambda: not self.kube.list_services(namespace), 180, every=1.0)
        except PhaseTimeout as error:
            self.figures.errors.append(f"cleanup: {error}")
        watch.stop()

    def profile(self, phase: str, seconds: float) -> None:
        """py-spy on the operator and the localnet for a phase (collapsed stacks, and SVGs)."""
        out = Path(self.args.profile)
        out.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%H%M%S")
        assert self.net.proc is not None
        jobs = [
            (self.pid, fmt, f"{phase}-{stamp}.{suffix}")
            for fmt, suffix in (("raw", "txt"), ("flamegraph", "svg"))
        ]
        jobs.append((self.net.proc.pid, "raw", f"{phase}-{stamp}-localnet.txt"))
        for pid, fmt, name in jobs:
            subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "py-spy"),
                    "record",
                    "--pid",
                    str(pid),
                    "--duration",
                    str(int(seconds)),
                    "--rate",
                    "50",
                    "--nonblocking",
                    "--format",
                    fmt,
                    "--output",
                    str(out / name),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

    def execute(self) -> RunFigures:
        sizes = self.args.sizes
        for index, (services, replicas) in enumerate(sizes):
            last = index == len(sizes) - 1
            kept = self.converge(services, replicas, keep=last)
            if kept is None:
                continue
            namespace, watch = kept
            total = services * replicas
            if self.figures.convergence[-1].seconds is None:
                self.delete_all(namespace, watch)
                break
            self.steady(total)
            self.recovery(namespace, watch, total)
            self.scale_down(namespace, watch)
            self.delete_all(namespace, watch)
        return self.figures


# --- report --------------------------------------------------------------------------------


def plot(timeline: list[tuple[float, dict[str, int]]], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=110)
    times = [t for t, _ in timeline]
    for state, color in zip(
        STATES, ("#999999", "#f0a030", "#2a9d4b", "#c04040", "#3060c0"), strict=True
    ):
        ax.plot(times, [c.get(state, 0) for _, c in timeline], label=state, color=color)
    ax.set_xlabel("seconds since the apply (server-side apply of every manifest at once)")
    ax.set_ylabel("instances")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="center right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def values(runs: list[RunFigures], pick: Callable[[RunFigures], float | None]) -> list[float]:
    return [v for v in (pick(r) for r in runs) if v is not None]


def verdict(measured: list[float], target: float, lower_is_better: bool = True) -> str:
    if not measured:
        return "not measured"
    value = bc.median(measured)
    ok = value <= target if lower_is_better else value >= target
    if ok:
        return "met"
    return f"missed by {value - target:.1f} ({100 * (value / target - 1):.0f} %)"


def report(args: argparse.Namespace, runs: list[RunFigures]) -> str:
    rows: list[list[str]] = []
    for index, (services, replicas) in enumerate(args.sizes):

        def seconds(r: RunFigures, i: int = index) -> float | None:
            return r.convergence[i].seconds if i < len(r.convergence) else None

        def cpu(r: RunFigures, i: int = index) -> float | None:
            return 100 * r.convergence[i].operator_cpu if i < len(r.convergence) else None

        total = services * replicas
        measured = values(runs, seconds)
        target = "60 s" if total >= 1000 else ""
        rows.append(
            [
                f"convergence {services}x{replicas} ({total} instances) -> all Running, s",
                bc.spread(measured),
                target + (f": {verdict(measured, 60.0)}" if target else ""),
                f"operator CPU {bc.spread(values(runs, cpu), 0)} % of a core",
            ]
        )
    big = args.sizes[-1][0] * args.sizes[-1][1]
    big_target = big >= 1000

    def row(
        label: str,
        pick: Callable[[RunFigures], float | None],
        target: float | None,
        unit: str,
        digits: int = 1,
        note: str = "",
    ) -> None:
        measured = values(runs, pick)
        goal = f"{target:g} {unit}: {verdict(measured, target)}" if target and big_target else ""
        rows.append([label, bc.spread(measured, digits), goal, note])

    row(f"scale-down {big} -> 0: all Terminated, s", lambda r: r.scale_down_terminated, None, "s")
    row(
        f"scale-down {big} -> 0: + every agreement terminated and paid, s",
        lambda r: r.scale_down_paid,
        30.0,
        "s",
    )
    row(
        "recovery after kill -9: all re-adopted (operator's gauges), s",
        lambda r: r.recovery_adopted,
        None,
        "s",
    )
    row(
        "recovery: every instance's run script ran under the new process, s",
        lambda r: r.recovery_all_ran,
        15.0,
        "s",
    )
    row("recovery: new agreements", lambda r: r.recovery_new_agreements, None, "", 0, "must be 0")
    row(
        f"steady state ({big} Running, run script every 10 s): operator CPU, % of one core",
        lambda r: None if r.steady_cpu is None else 100 * r.steady_cpu,
        30.0,
        "%",
    )
    row(
        "steady state: operator peak RSS, MiB",
        lambda r: r.steady_rss_peak,
        250.0,
        "MiB",
        0,
        "sampled every 0.5 s",
    )
    row(
        "operator peak RSS since its start (VmHWM), MiB",
        lambda r: r.peak_rss_overall,
        None,
        "MiB",
        0,
    )
    row(
        "service status patches per instance state transition",
        lambda r: r.patches_per_transition,
        None,
        "",
        2,
    )
    row(
        "API writes recording state per transition (API server's count)",
        lambda r: r.status_writes_per_transition,
        1.5,
        "",
        2,
        "service status patches + instance object creations + instance status patches",
    )
    row("Events per instance state transition", lambda r: r.events_per_transition, None, "", 2)
    row(
        "Kubernetes API writes (all, API server's count) per transition",
        lambda r: r.kube_writes_per_transition,
        None,
        "",
        2,
        "state writes + Events + kopf's finalizer/annotation patches + instance removals",
    )
    row(
        "Golem API calls per instance start, all calls during the convergence",
        lambda r: r.golem_calls_per_start,
        None,
        "",
        1,
        "includes the run script of instances already Running (1 exec + 1 result per run)",
    )
    row(
        "Golem API calls per instance start, without those run scripts",
        lambda r: r.golem_start_calls_per_start,
        None,
        "",
        1,
        "market, agreement, activity, start script, demand and payment polls",
    )
    row(
        "status patches per second of the busiest service during the convergence",
        lambda r: r.patch_rate_max,
        None,
        "",
        2,
        "target: <= 2 (one per 0.5 s)",
    )
    row(
        "status changes of one service seen less than 0.45 s apart on the watch",
        lambda r: r.gaps_under_half_second,
        None,
        "",
        0,
        "watch delivery jitter under load; the writer waits 0.5 s after each patch",
    )
    row(
        "shortest gap between two status writes of one service, s",
        lambda r: r.min_status_gap,
        None,
        "",
        2,
        "target: >= 0.5 s",
    )
    row(
        "status writes per service per second during convergence",
        lambda r: r.status_writes_per_service_s,
        None,
        "",
        2,
        "target: <= 2",
    )
    return bc.table(["figure", "median (min-max)", "target", "notes"], rows)


def cpu_table(runs: list[RunFigures]) -> str:
    """Median CPU of each process per phase: shows what limits each figure."""
    names = ("operator", "localnet", "kube-apiserver", "etcd", "benchmark", "machine")
    phases: list[str] = []
    for run in runs:
        phases += [p for p in run.phase_cpu if p not in phases]
    rows = []
    for phase in phases:
        cells = []
        for name in names:
            measured = [
                r.phase_cpu[phase][name] for r in runs if name in r.phase_cpu.get(phase, {})
            ]
            cells.append(f"{bc.median(measured):.0f}" if measured else "-")
        ours = sum(float(c) for c in cells[:-1] if c != "-")
        others = float(cells[-1]) - ours if cells[-1] != "-" else float("nan")
        rows.append([phase, *cells[:-1], f"{ours:.0f}", f"{others:.0f}"])
    header = ["phase", *names[:-1], "these together", "other processes"]
    return bc.table(header, rows)


def parse_sizes(text: str) -> list[tuple[int, int]]:
    sizes = []
    for part in text.split(","):
        services, replicas = part.lower().split("x")
        sizes.append((int(services), int(replicas)))
    return sizes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run (small sizes)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sizes", type=parse_sizes, default=parse_sizes("1x10,10x10,100x10"))
    parser.add_argument("--providers", type=int, default=20)
    parser.add_argument(
        "--agreements-per-provider",
        type=int,
        default=None,
        help="agreements each provider takes at once (default: room for every instance; "
        "1 with --providers above the instances is the real network's one VM per provider)",
    )
    parser.add_argument("--steady-seconds", type=float, default=60.0)
    parser.add_argument("--converge-limit", type=float, default=240.0)
    parser.add_argument("--recovery-limit", type=float, default=120.0)
    parser.add_argument("--scale-down-limit", type=float, default=180.0)
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--profile", metavar="DIR", help="py-spy the operator into DIR")
    parser.add_argument("--logs", metavar="DIR", help="keep the operator's and localnet's logs")
    parser.add_argument("--write", action="store_true", help="write docs even with --quick")
    parser.add_argument("--no-write", action="store_true", help="do not write docs or the plot")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.sizes, args.steady_seconds = 1, parse_sizes("1x5,4x5"), 15.0
    started, machine = bc.today(), bc.machine()
    print(f"machine: {machine}", flush=True)
    runs: list[RunFigures] = []
    with ControlPlane() as cp:
        cp.kubectl_run("apply", "--server-side", "-f", str(bc.ROOT / "crds"))
        cp.kubectl_run(
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/golemservices.services.golem.network",
        )
        kube = Kube(cp)
        # Established is not served yet: wait until a list answers (else the operator's
        # first watch gets 429 "storage is (re)initializing" and retries a second later).
        wait_for(
            "the CRD served",
            lambda: kube.http.get(f"{GROUP_PATH}/golemservices").status_code == 200,
            60,
        )
        for index in range(args.runs):
            print(f"run {index + 1}/{args.runs}", flush=True)
            with tempfile.TemporaryDirectory(prefix="bench-operator-") as tmp:
                run = Run(args, cp, kube, Path(tmp))
                try:
                    runs.append(run.execute())
                finally:
                    run.close()
                    if args.logs:
                        logs = Path(args.logs) / f"run-{index + 1}"
                        logs.mkdir(parents=True, exist_ok=True)
                        for name in ("operator.log", "localnet.log"):
                            if (Path(tmp) / name).exists():
                                shutil.copy(Path(tmp) / name, logs / name)
        kube.close()
    text = report(args, runs)
    processes = cpu_table(runs)
    errors = [e for r in runs for e in r.errors]
    print(text)
    print(processes)
    for error in errors:
        print(f"error: {error}")
    write = (not args.quick or args.write) and not args.no_write
    services, replicas = args.sizes[-1]
    timeline = min(
        (r for r in runs if r.timeline),
        key=lambda r: abs(
            (r.convergence[-1].seconds or 1e9)
            - bc.median(values(runs, lambda x: x.convergence[-1].seconds))
        ),
        default=None,
    )
    if write and timeline is not None:
        plot(
            timeline.timeline,
            f"{services} GolemServices x {replicas} replicas applied at once "
            f"(median run of {len(runs)})",
            PLOT,
        )
        print(f"wrote {PLOT.relative_to(bc.ROOT)}")
    if write:
        body = (
            "## The operator at scale\n\n"
            f"Measured {started} on {machine}.\n\n"
            f"```sh\n{bc.command_line()}\n```\n\n{text}\n\n"
            "CPU of each process during each phase, % of one core (medians; the machine has "
            "two cores, so 200 is everything; *other processes* is the rest of the machine's "
            f"busy time, from /proc/stat):\n\n{processes}\n\n"
            + (f"Phases that failed: {'; '.join(errors)}\n\n" if errors else "")
            + f"![instances per state during the {services}x{replicas} convergence]"
            "(benchmarks/convergence.png)\n"
        )
        bc.write_section("operator", body)
        print(f"wrote the operator section of {bc.DOCS.relative_to(bc.ROOT)}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
