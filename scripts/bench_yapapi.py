"""The operator side by side with the official Python SDK, yapapi 0.13.1, on one local network.

Run from the repository root:  .venv/bin/python scripts/bench_yapapi.py [--rounds 3]
The seed's simple service (examples/simple-service.yaml: the simple-service image, its start,
run and stop scripts) with 100 instances, run alternately by the operator (one GolemService
with `replicas: 100`) and by a yapapi requestor script equivalent to the seed's SimpleService
(`Golem.run_service(SimpleService, num_instances=100)`), in one run, against the same local
network configuration: the same providers file (100 providers with one agreement each, as on
the real network), a fresh local network for each side. Everything listens on 127.0.0.1.

- yapapi 0.13.1 is installed into its own virtualenv, cached outside the work tree in
  ~/.cache/golem-operator/yapapi-0.13.1-venv (it pins certifi < 2021 and ya-aioclient 0.6.4,
  so never into the project's .venv); `setuptools<81` because it imports pkg_resources.
- What yapapi needs from its surroundings is provided here: a `gftp` stand-in on its PATH
  (yapapi starts `gftp server` at start-up though nothing is transferred; the stand-in answers
  the JSON-RPC calls `version`, `close` and `shutdown`), the image registry is the local
  network's (`GET /v1/image/info?hash=`), and the image hash is the one the network knows.
- Operator: a real etcd + kube-apiserver (started once), `golem-operator run` as a process
  (started per round, before the clock starts: an operator is already running when a user
  applies a manifest); timed from the server-side apply request until a watch on the
  GolemService shows `status.readyReplicas` == replicas.
- yapapi: timed from the launch of its process until the script sees every instance in
  ServiceState.running (it prints milestones with the system-wide monotonic clock).
- Both: the local network's audit view (`GET /_localnet/audit`) is sampled every 0.5 s, a
  timeline of agreements signed and activities alive that is the same for either side.

Prints the medians and the ratio (operator / yapapi) and writes the `yapapi` section of
docs/benchmarks.md (not with --quick unless --write). Every wait is bounded.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bench_common as bc
import httpx
import yaml
from bench_operator import GROUP_PATH, Kube, PhaseTimeout, Watch, metric_by, wait_for
from prometheus_client.parser import text_string_to_metric_families

from golem_operator.devenv.controlplane import ControlPlane
from golem_operator.devenv.stack import LocalNetProcess, OperatorProcess

YAPAPI_VERSION = "0.13.1"
VENV = Path.home() / ".cache" / "golem-operator" / f"yapapi-{YAPAPI_VERSION}-venv"
SIMPLE_IMAGE = bc.ROOT / "examples" / "images" / "simple-service"
SIMPLE_TAG = "golem/simple-service:latest"
SIMPLE_MANIFEST = bc.ROOT / "examples" / "simple-service.yaml"

#: Hand-written analysis inside the generated section, kept when the figures are rewritten.
FINDINGS = ("<!-- bench:yapapi:findings:start -->", "<!-- bench:yapapi:findings:end -->")


# --- yapapi's surroundings -----------------------------------------------------------------


def ensure_venv() -> Path:
    """yapapi in its own cached virtualenv (keyed by version); its python."""
    python = VENV / "bin" / "python"
    done = VENV / ".installed"
    if done.exists() and python.exists():
        return python
    print(f"installing yapapi {YAPAPI_VERSION} into {VENV}", flush=True)
    shutil.rmtree(VENV, ignore_errors=True)
    VENV.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["python3.11", "-m", "venv", str(VENV)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", f"yapapi=={YAPAPI_VERSION}", "setuptools<81"],
        check=True,
    )
    subprocess.run([str(python), "-c", "import yapapi, pkg_resources"], check=True)
    done.write_text(f"yapapi=={YAPAPI_VERSION}\n")
    return python


# A `gftp server` stand-in: yapapi starts one at start-up and asks its version; this benchmark
# transfers nothing, so `version`, `close` and `shutdown` are all it has to answer.
GFTP_STANDIN = """\
import json
import sys

if sys.argv[1:] != ["server"]:
    sys.exit("only `gftp server` is provided")
for line in sys.stdin:
    request = json.loads(line)
    method = request.get("method")
    if method == "version":
        result = "0.7.3 (local stand-in)"
    elif method in ("close",):
        result = []
    elif method == "shutdown":
        result = "Ok"
    else:
        error = {"code": -32601, "message": f"{method} is not provided by the stand-in"}
        print(json.dumps({"jsonrpc": "2.0", "id": request.get("id"), "error": error}), flush=True)
        continue
    print(json.dumps({"jsonrpc": "2.0", "id": request.get("id"), "result": result}), flush=True)
    if method == "shutdown":
        break
"""

# The seed's SimpleService (golem-service-model.txt), with the scripts of
# examples/simple-service.yaml; prints JSON milestones on stdout (time.monotonic(), the same
# clock as the benchmark's) and stops the cluster when its stdin says so.
REQUESTOR = """\
import asyncio
import json
import sys
import time
from datetime import datetime, timedelta, timezone

STARTED = time.monotonic()


def mark(event, **extra):
    print(json.dumps({"event": event, "t": time.monotonic(), **extra}), flush=True)


mark("interpreter")

from yapapi import Golem  # noqa: E402
from yapapi.payload import vm  # noqa: E402
from yapapi.services import Service, ServiceState  # noqa: E402

mark("imported")

IMAGE_HASH, REGISTRY, INSTANCES, BUDGET = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]


class SimpleService(Service):
    @staticmethod
    async def get_payload():
        return await vm.repo(
            image_hash=IMAGE_HASH,
            min_mem_gib=0.5,
            min_storage_gib=2.0,
            repository_url=REGISTRY,
        )

    async def start(self):
        async for script in super().start():
            yield script
        script = self._ctx.new_script()
        script.run("/golem/run/simulate_observations_ctl.py", "--start")
        yield script

    async def run(self):
        while True:
            await asyncio.sleep(10)
            script = self._ctx.new_script()
            stats_result = script.run("/golem/run/simple_service.py", "--stats")
            yield script
            (await stats_result).stdout.strip()

    async def shutdown(self):
        script = self._ctx.new_script()
        script.run("/golem/run/simulate_observations_ctl.py", "--stop")
        yield script


async def main():
    async with Golem(budget=float(BUDGET), subnet_tag="public") as golem:
        mark("golem_ready")
        cluster = await golem.run_service(
            SimpleService,
            num_instances=INSTANCES,
            expiration=datetime.now(timezone.utc) + timedelta(minutes=15),
        )
        mark("run_service")
        seen = {}
        while True:
            counts = {}
            for index, instance in enumerate(cluster.instances):
                state = instance.state.value
                counts[state] = counts.get(state, 0) + 1
                if seen.get(index) != state:
                    seen[index] = state
                    mark("instance", index=index, state=state)
            if counts.get("running", 0) >= INSTANCES:
                mark("all_running", counts=counts)
                break
            await asyncio.sleep(0.02)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        mark("stopping")
        cluster.stop()
        while any(i.state != ServiceState.terminated for i in cluster.instances):
            await asyncio.sleep(0.1)
        mark("terminated")
    mark("exited")


asyncio.run(main())
"""


# --- the stack -----------------------------------------------------------------------------


def providers_yaml(work: Path, providers: int) -> Path:
    """examples/localnet/providers.yaml's healthy providers, `providers` of them, one agreement
    each (the default, as a real provider): the same file for both sides."""
    config = {
        "subnet_tag": "public",
        "payment_platform": "erc20-holesky-tglm",
        "debit_note_interval_seconds": 30,
        "requestor": {"funds": "100"},
        "limits": {"command_timeout_seconds": 30, "output_cap_bytes": 65536},
        "images": [{"tag": SIMPLE_TAG, "path": str(SIMPLE_IMAGE)}],
        "providers": [
            {
                "count": providers,
                "name_prefix": "provider",
                "resources": {"mem_gib": 4, "storage_gib": 20, "cpu_threads": 2},
                "prices": {"start": "0.001", "per_cpu_hour": "0.1", "per_env_hour": "0.02"},
            }
        ],
    }
    path = work / "providers.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def budget(replicas: int) -> str:
    """GLM for both sides: the example's 1.0 covers 17 instances of 15 minutes at these prices
    (0.056 GLM each at most), so 0.1 per instance."""
    return str(max(1, round(0.1 * replicas, 1)))


def simple_service(replicas: int) -> dict[str, Any]:
    """examples/simple-service.yaml with `replicas` and a budget that covers them."""
    doc: dict[str, Any] = yaml.safe_load(SIMPLE_MANIFEST.read_text())
    doc["spec"]["replicas"] = replicas
    doc["spec"]["budget"] = budget(replicas)
    return doc


def apiserver_latency(kube: Kube) -> dict[str, tuple[float, float]]:
    """The API server's own request time so far: `VERB resource[/sub]` -> (count, seconds)."""
    text = kube.http.get("/metrics").text
    found: dict[str, tuple[float, float]] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "apiserver_request_duration_seconds":
            continue
        for sample in family.samples:
            labels = sample.labels
            if labels.get("resource") not in ("golemservices", "golemserviceinstances", "events"):
                continue
            if sample.name.endswith("_count") or sample.name.endswith("_sum"):
                sub = labels.get("subresource", "")
                key = f"{labels['verb']} {labels['resource']}" + (f"/{sub}" if sub else "")
                count, total = found.get(key, (0.0, 0.0))
                if sample.name.endswith("_count"):
                    count += sample.value
                else:
                    total += sample.value
                found[key] = (count, total)
    return found


class AuditSampler:
    """The local network's view, every 0.5 s: agreements and activities by state."""

    def __init__(self, net: LocalNetProcess, origin: float) -> None:
        self.net, self.origin = net, origin
        self.timeline: list[tuple[float, dict[str, int]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> AuditSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        with self.net.client() as http:
            while not self._stop.is_set():
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    audit = http.get("/_localnet/audit").json()
                    counts: Counter[str] = Counter()
                    for agreement in audit["agreements"]:
                        counts[f"agreement {agreement['state']}"] += 1
                    for activity in audit["activities"]:
                        counts[f"activity {activity['state']}"] += 1
                    self.timeline.append((time.monotonic() - self.origin, dict(counts)))
                self._stop.wait(0.5)

    def first(self, key: str, at_least: int) -> float | None:
        """Seconds until the audit first showed `at_least` of `key` (sampled every 0.5 s)."""
        for t, counts in self.timeline:
            if counts.get(key, 0) >= at_least:
                return t
        return None


class ReadyWatch(Watch):
    """The GolemService watch, noting when status.readyReplicas first reached the target."""

    def __init__(self, kube: Kube, namespace: str, target: int) -> None:
        super().__init__(kube, namespace)
        self.target = target
        self.ready_at: float | None = None
        self.ready_seen: list[tuple[float, int]] = []
        self.writes: list[float] = []  # arrival of each status change on the watch

    def _record(self, item: dict[str, Any], now: float, initial: bool = False) -> None:
        old = self.objects.get(item["metadata"]["name"])
        if not initial and item.get("status") and (old or {}).get("status") != item["status"]:
            self.writes.append(now)
        super()._record(item, now, initial)
        ready = int((item.get("status") or {}).get("readyReplicas") or 0)
        if not self.ready_seen or self.ready_seen[-1][1] != ready:
            self.ready_seen.append((now, ready))
        if self.ready_at is None and ready >= self.target:
            self.ready_at = now


@dataclass
class Side:
    name: str
    round: int
    seconds: float | None = None
    error: str = ""
    #: milestone -> seconds since launch/apply
    milestones: dict[str, float] = field(default_factory=dict)
    #: seconds since launch/apply -> instances Running (the side's own view)
    running: list[tuple[float, int]] = field(default_factory=list)
    audit: list[tuple[float, dict[str, int]]] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)  # process -> % of one core
    golem_calls: dict[str, float] = field(default_factory=dict)
    stop_seconds: float | None = None
    #: operator: seconds since the apply of each status change seen on the watch
    status_writes: list[float] = field(default_factory=list)
    #: operator: `VERB resource` -> (requests, mean ms in the API server) until all Running
    apiserver: dict[str, tuple[float, float]] = field(default_factory=dict)


def network_milestones(side: Side, sampler: AuditSampler, total: int) -> None:
    for label, key in (
        ("first agreement (audit)", "agreement Approved"),
        ("first activity (audit)", "activity Ready"),
    ):
        t = sampler.first(key, 1)
        if t is not None:
            side.milestones[label] = t
    for label, key in (
        ("all agreements (audit)", "agreement Approved"),
        ("all activities Ready (audit)", "activity Ready"),
    ):
        t = sampler.first(key, total)
        if t is not None:
            side.milestones[label] = t
    side.audit = list(sampler.timeline)


def process_cpu(pids: dict[str, int]) -> dict[str, bc.CpuSample]:
    taken = {"machine": bc.CpuSample(time.monotonic(), bc.machine_cpu()[0])}
    for name, pid in pids.items():
        with contextlib.suppress(OSError):
            taken[name] = bc.sample_cpu(pid, children=name == "localnet")
    return taken


def cpu_shares(before: dict[str, bc.CpuSample], after: dict[str, bc.CpuSample]) -> dict[str, float]:
    return {
        name: 100 * bc.cpu_share(before[name], sample)
        for name, sample in after.items()
        if name in before
    }


def py_spy(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    out.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [
            str(Path(sys.executable).parent / "py-spy"),
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(int(seconds)),
            "--rate",
            "100",
            "--nonblocking",
            "--format",
            "raw",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


class Bench:
    def __init__(self, args: argparse.Namespace, cp: ControlPlane, kube: Kube, python: Path):
        self.args, self.cp, self.kube, self.python = args, cp, kube, python

    def keep_logs(self, work: Path, side: Side, names: tuple[str, ...]) -> None:
        if not self.args.logs:
            return
        target = Path(self.args.logs) / f"round-{side.round}-{side.name}"
        target.mkdir(parents=True, exist_ok=True)
        for name in names:
            if (work / name).exists():
                shutil.copy(work / name, target / name)
        (target / "side.json").write_text(json.dumps(side.__dict__, indent=1, default=str))

    # -- the operator -------------------------------------------------------------------------

    def operator(self, round_: int) -> Side:
        side = Side("operator", round_)
        replicas, limit = self.args.replicas, self.args.limit
        with tempfile.TemporaryDirectory(prefix="bench-yapapi-op-") as tmp:
            work = Path(tmp)
            net = LocalNetProcess(work, config=providers_yaml(work, self.args.providers)).start()
            env = {"GOLEM_OPERATOR_LOG_LEVEL": self.args.log_level}
            if self.args.status_interval is not None:
                env["GOLEM_OPERATOR_STATUS_INTERVAL"] = str(self.args.status_interval)
            operator = OperatorProcess(
                work, self.cp.kubeconfig, net.url, net.key_file, extra_env=env
            ).start()
            try:
                self._operator_side(side, net, operator, replicas, limit)
            finally:
                operator.stop()
                net.stop()
                self.keep_logs(work, side, ("operator.log", "localnet.log"))
        return side

    def _operator_side(
        self,
        side: Side,
        net: LocalNetProcess,
        operator: OperatorProcess,
        replicas: int,
        limit: float,
    ) -> None:
        namespace = f"bench-{uuid.uuid4().hex[:8]}"
        self.cp.kubectl_run(
            "create",
            "-f",
            "-",
            input=json.dumps(
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
            ),
        )
        watch = ReadyWatch(self.kube, namespace, replicas).start()
        time.sleep(0.5)  # the watch is listening before the apply
        assert operator.proc is not None and net.proc is not None
        pids = {"operator": operator.proc.pid, "localnet": net.proc.pid}
        pids.update(zip(("etcd", "kube-apiserver"), (p.pid for p in self.cp._procs), strict=False))
        metrics_before = operator.metrics()
        latency_before = apiserver_latency(self.kube)
        cpu_before = process_cpu(pids)
        if self.args.profile:
            out = Path(self.args.profile) / f"round-{side.round}-operator.txt"
            py_spy(operator.proc.pid, min(limit, self.args.profile_seconds), out)
            py_spy(net.proc.pid, min(limit, self.args.profile_seconds), out.with_suffix(".net"))
        started = time.monotonic()
        watch.origin = started
        sampler = AuditSampler(net, started).start()
        try:
            self.kube.apply_all(namespace, [simple_service(replicas)])
            side.milestones["apply answered"] = time.monotonic() - started
            wait_for(
                f"readyReplicas {replicas}", lambda: watch.ready_at is not None, limit, every=0.05
            )
            assert watch.ready_at is not None
            side.seconds = watch.ready_at - started
        except PhaseTimeout as error:
            side.error = str(error)
        except Exception as error:
            side.error = f"{type(error).__name__}: {error}"
        side.cpu = cpu_shares(cpu_before, process_cpu(pids))
        with contextlib.suppress(httpx.HTTPError):
            for key, (count, total) in apiserver_latency(self.kube).items():
                count0, total0 = latency_before.get(key, (0.0, 0.0))
                if count > count0:
                    side.apiserver[key] = (
                        count - count0,
                        1000 * (total - total0) / (count - count0),
                    )
        sampler.stop()
        network_milestones(side, sampler, replicas)
        side.running = [(t - started, n) for t, n in watch.ready_seen if t >= started]
        side.status_writes = [t - started for t in watch.writes if t >= started]
        if side.seconds is not None:
            writes = [t for t in side.status_writes if t <= side.seconds + 0.01]
            side.milestones["status writes seen until all Running (count)"] = float(len(writes))
        for t, n in side.running:
            if n >= 1 and "first Running" not in side.milestones:
                side.milestones["first Running"] = t
        with contextlib.suppress(httpx.HTTPError):
            after = operator.metrics()
            name = "golem_operator_golem_api_request_duration_seconds_count"
            calls = metric_by(after, name, "path") - metric_by(metrics_before, name, "path")
            side.golem_calls = {p: c / replicas for p, c in calls.most_common(12)}
        # Delete and settle: the GolemService's finalizer ends every agreement.
        began = time.monotonic()
        self.cp.kubectl_run("delete", "-n", namespace, "gsvc", "--all", "--wait=false")
        with contextlib.suppress(PhaseTimeout):
            wait_for(
                "deletion",
                lambda: not self.kube.list_services(namespace),
                self.args.stop_limit,
                every=0.25,
            )
            side.stop_seconds = time.monotonic() - began
        watch.stop()

    # -- yapapi -------------------------------------------------------------------------------

    def yapapi(self, round_: int) -> Side:
        side = Side("yapapi", round_)
        replicas, limit = self.args.replicas, self.args.limit
        with tempfile.TemporaryDirectory(prefix="bench-yapapi-sdk-") as tmp:
            work = Path(tmp)
            net = LocalNetProcess(work, config=providers_yaml(work, self.args.providers)).start()
            try:
                self._yapapi_side(side, work, net, replicas, limit)
            finally:
                net.stop()
                self.keep_logs(work, side, ("yapapi.log", "localnet.log"))
        return side

    def _yapapi_side(
        self, side: Side, work: Path, net: LocalNetProcess, replicas: int, limit: float
    ) -> None:
        bin_dir = work / "bin"
        bin_dir.mkdir()
        gftp = bin_dir / "gftp"
        gftp.write_text(f"#!{sys.executable}\n{GFTP_STANDIN}")
        gftp.chmod(0o755)
        requestor = work / "simple_service_yapapi.py"
        requestor.write_text(REQUESTOR)
        image = next(i for i in net.images() if SIMPLE_TAG in i["tags"])
        env = {
            **os.environ,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "YAGNA_APPKEY": net.app_key,
            "YAGNA_API_URL": net.url,
            "PYTHONUNBUFFERED": "1",
        }
        for variable in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"):
            env.pop(variable, None)
        assert net.proc is not None
        log = (work / "yapapi.log").open("wb")
        cpu_before = process_cpu({"localnet": net.proc.pid})
        started = time.monotonic()
        proc = subprocess.Popen(
            [
                str(self.python),
                str(requestor),
                image["hash"],
                net.url,
                str(replicas),
                budget(replicas),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            env=env,
            cwd=work,
            start_new_session=True,
        )
        pids = {"yapapi": proc.pid, "localnet": net.proc.pid}
        cpu_before["yapapi"] = bc.CpuSample(started, 0.0)
        if self.args.profile:
            out = Path(self.args.profile) / f"round-{side.round}-yapapi.txt"
            py_spy(proc.pid, min(limit, self.args.profile_seconds), out)
        sampler = AuditSampler(net, started).start()
        events: list[dict[str, Any]] = []
        done = threading.Event()

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                with contextlib.suppress(ValueError):
                    events.append(json.loads(line))
                    if events[-1]["event"] in ("all_running", "exited"):
                        done.set()
            done.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            if not done.wait(limit):
                raise PhaseTimeout(f"all running: not within {limit:.0f}s")
            finished = [e for e in events if e["event"] == "all_running"]
            if not finished:
                raise RuntimeError(f"yapapi exited {proc.poll()}: see yapapi.log")
            side.seconds = finished[0]["t"] - started
        except (PhaseTimeout, RuntimeError) as error:
            side.error = str(error)
        side.cpu = cpu_shares(cpu_before, process_cpu(pids))
        sampler.stop()
        network_milestones(side, sampler, replicas)
        running = 0
        for event in events:
            t = event["t"] - started
            if event["event"] in ("interpreter", "imported", "golem_ready", "run_service"):
                side.milestones[event["event"]] = t
            elif event["event"] == "instance" and event["state"] == "running":
                running += 1
                side.running.append((t, running))
                side.milestones.setdefault("first Running", t)
        # Stop the cluster (shutdown scripts, agreements ended, invoices paid), bounded.
        began = time.monotonic()
        with contextlib.suppress(OSError, ValueError):
            assert proc.stdin is not None
            proc.stdin.write(b"stop\n")
            proc.stdin.close()
        try:
            proc.wait(timeout=self.args.stop_limit)
            side.stop_seconds = time.monotonic() - began
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
            proc.wait()
        reader.join(timeout=5)
        log.close()


# --- report --------------------------------------------------------------------------------


def seconds_of(sides: list[Side]) -> list[float]:
    return [s.seconds for s in sides if s.seconds is not None]


def milestone_table(sides: dict[str, list[Side]]) -> str:
    labels: list[str] = []
    for name in ("operator", "yapapi"):
        for side in sides[name]:
            labels += [m for m in side.milestones if m not in labels]
    order = {
        "interpreter": 0,
        "imported": 1,
        "golem_ready": 2,
        "apply answered": 2,
        "run_service": 3,
        "first agreement (audit)": 4,
        "first activity (audit)": 5,
        "first Running": 6,
        "all agreements (audit)": 7,
        "all activities Ready (audit)": 8,
    }
    labels.sort(key=lambda m: order.get(m, 99))
    rows = []
    for label in labels:
        cells = [label]
        for name in ("operator", "yapapi"):
            measured = [s.milestones[label] for s in sides[name] if label in s.milestones]
            cells.append(bc.spread(measured) if measured else "-")
        rows.append(cells)
    rows.append(["all Running"] + [bc.spread(seconds_of(sides[n])) for n in ("operator", "yapapi")])
    return bc.table(["milestone, s from apply / launch", "operator", "yapapi"], rows)


def cpu_table(sides: dict[str, list[Side]]) -> str:
    rows = []
    for name in ("operator", "yapapi"):
        processes: list[str] = []
        for side in sides[name]:
            processes += [p for p in side.cpu if p not in processes]
        cells = [
            f"{p} {bc.median([s.cpu[p] for s in sides[name] if p in s.cpu]):.0f}" for p in processes
        ]
        rows.append([name, ", ".join(cells)])
    return bc.table(["side", "CPU until all Running, % of one core (median)"], rows)


def kept_findings() -> str:
    """The analysis already in the section (between the findings markers), or a placeholder."""
    text = bc.DOCS.read_text() if bc.DOCS.exists() else ""
    start, end = text.find(FINDINGS[0]), text.find(FINDINGS[1])
    if start < 0 or end < start:
        return "(no analysis written yet)"
    return text[start + len(FINDINGS[0]) : end].strip("\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--replicas", type=int, default=100)
    parser.add_argument("--providers", type=int, help="default: one per replica")
    parser.add_argument("--limit", type=float, default=180.0, help="seconds to all Running")
    parser.add_argument("--stop-limit", type=float, default=120.0)
    parser.add_argument("--only", choices=("operator", "yapapi"), help="run one side only")
    parser.add_argument("--status-interval", type=float, help="GOLEM_OPERATOR_STATUS_INTERVAL")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--profile", metavar="DIR", help="py-spy each side into DIR")
    parser.add_argument("--profile-seconds", type=float, default=30.0)
    parser.add_argument("--logs", metavar="DIR", help="keep each side's logs in DIR")
    parser.add_argument("--quick", action="store_true", help="1 round, 20 replicas")
    parser.add_argument("--write", action="store_true", help="write docs even with --quick")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.replicas = 1, 20
    args.providers = args.providers or args.replicas
    python = ensure_venv()
    started, machine = bc.today(), bc.machine()
    print(f"machine: {machine}", flush=True)
    sides: dict[str, list[Side]] = {"operator": [], "yapapi": []}
    with ControlPlane() as cp:
        cp.kubectl_run("apply", "--server-side", "-f", str(bc.ROOT / "crds"))
        kinds = [p.stem for p in sorted((bc.ROOT / "crds").glob("*.yaml"))]
        cp.kubectl_run(
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            *(f"crd/{kind}.services.golem.network" for kind in kinds),
        )
        kube = Kube(cp)
        for kind in kinds:
            wait_for(
                f"the CRD {kind} served",
                lambda kind=kind: kube.http.get(f"{GROUP_PATH}/{kind}").status_code == 200,
                60,
            )
        bench = Bench(args, cp, kube, python)
        for index in range(args.rounds):
            order = ["operator", "yapapi"] if index % 2 == 0 else ["yapapi", "operator"]
            if args.only:
                order = [args.only]
            for name in order:
                print(f"round {index + 1}/{args.rounds}: {name}", flush=True)
                side = bench.operator(index + 1) if name == "operator" else bench.yapapi(index + 1)
                sides[name].append(side)
                text = f"{side.seconds:.1f}s" if side.seconds is not None else side.error
                marks = ", ".join(f"{k} {v:.1f}" for k, v in side.milestones.items())
                print(f"  {name}: all Running {text}; {marks}", flush=True)
                print(f"  CPU %: {side.cpu}; stop {side.stop_seconds}", flush=True)
                if side.apiserver:
                    print(f"  API server (requests, mean ms): {side.apiserver}", flush=True)
                if side.status_writes:
                    writes = " ".join(f"{t:.1f}" for t in side.status_writes)
                    print(f"  status changes seen at (s): {writes}", flush=True)
                if side.golem_calls:
                    calls = ", ".join(
                        f"{'/'.join(p.split('/')[-2:])} {c:.1f}"
                        for p, c in side.golem_calls.items()
                    )
                    print(f"  Golem calls per instance: {calls}", flush=True)
        kube.close()
    operator_s, yapapi_s = seconds_of(sides["operator"]), seconds_of(sides["yapapi"])
    ratio = bc.median(operator_s) / bc.median(yapapi_s) if operator_s and yapapi_s else None
    per_round = [
        o.seconds / y.seconds
        for o, y in zip(sides["operator"], sides["yapapi"], strict=False)
        if o.seconds and y.seconds
    ]
    errors = [f"round {s.round} {s.name}: {s.error}" for n in sides for s in sides[n] if s.error]
    summary = bc.table(
        ["figure", "median (min-max)"],
        [
            [
                f"operator: {args.replicas} replicas, apply -> readyReplicas {args.replicas}, s",
                bc.spread(operator_s),
            ],
            [f"yapapi {YAPAPI_VERSION}: launch -> {args.replicas} running, s", bc.spread(yapapi_s)],
            [
                "ratio operator / yapapi (of the medians; target <= 1.0, goal 0.5)",
                f"{ratio:.2f}" if ratio is not None else "n/a",
            ],
            ["ratio per round", ", ".join(f"{r:.2f}" for r in per_round) or "n/a"],
        ],
    )
    milestones = milestone_table(sides)
    cpu = cpu_table(sides)
    print(summary)
    print(milestones)
    print(cpu)
    for error in errors:
        print(f"error: {error}")
    if (not args.quick or args.write) and not args.no_write and not args.only:
        findings = kept_findings()
        body = (
            "## Side by side with yapapi\n\n"
            f"Measured {started} on {machine}.\n\n"
            f"```sh\n{bc.command_line()}\n```\n\n"
            f"The seed's simple service (examples/simple-service.yaml) with {args.replicas} "
            f"instances on {args.providers} providers with one agreement each (a fresh local "
            f"network per side, the same providers file), {args.rounds} rounds, alternating "
            "which side goes first. The operator (already running) is timed from the "
            f"server-side apply until a watch shows `status.readyReplicas` = {args.replicas}; "
            f"yapapi {YAPAPI_VERSION} from the launch of its process until every instance is "
            "`running`.\n\n"
            f"{summary}\n\n{milestones}\n\n{cpu}\n\n"
            + (f"Failed: {'; '.join(errors)}\n\n" if errors else "")
            + f"{FINDINGS[0]}\n{findings}\n{FINDINGS[1]}\n"
        )
        bc.write_section("yapapi", body)
        print(f"wrote the yapapi section of {bc.DOCS.relative_to(bc.ROOT)}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
