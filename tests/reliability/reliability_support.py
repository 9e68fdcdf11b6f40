"""Helpers of the reliability suite and the soak: a daemon gate, operators, the money ledger.

Used by tests/reliability/* and scripts/soak.py. `DaemonGate` is a TCP relay between the
operator and the local Golem network that can cut the operator off (a daemon outage) while
the network and its providers keep their state. `ledger_problems` reads the local network's
audit view and says what is wrong with a service's agreements, invoices and sandboxes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from golem_operator.devenv.controlplane import ControlPlane, free_port
from golem_operator.devenv.stack import LocalNetProcess, OperatorProcess, service_view

HERE = Path(__file__).resolve().parent
PROVIDERS = HERE / "providers.yaml"
#: Every operator log the suite produced, and every app key it used: the secrets scan reads
#: them (tests/reliability/test_z_money_and_secrets.py runs last).
OPERATOR_LOGS: list[Path] = []
APP_KEYS_USED: set[str] = set()
#: Content of every Secret the suite uploaded: it must appear in no status, Event or log.
UPLOADED_SECRETS: set[str] = set()


class DaemonGate:
    """A loopback TCP relay in front of the Golem daemon; `cut()` makes the daemon unreachable.

    While cut, every open connection is reset and every new one is accepted and reset at once
    (counted in `attempts`, so tests can see the operator's retry rate). For the operator this
    is the daemon being down; behind the gate the local network keeps its agreements,
    activities and sandboxes, as a restarted yagna keeps its database and remote providers keep
    running. (The local network holds its state in memory and its sandboxes die with it, so
    a real SIGTERM would lose what a yagna restart keeps.)
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.is_cut = False
        self.attempts: list[float] = []  # monotonic times of connections refused while cut
        self._loop = asyncio.new_event_loop()
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> DaemonGate:
        self._thread.start()
        self._call(self._listen())
        return self

    def stop(self) -> None:
        self._call(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def cut(self) -> None:
        self._call(self._cut())

    def restore(self) -> None:
        self._call(self._restore())

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._cut()

    async def _cut(self) -> None:
        self.is_cut = True
        for writer in list(self._writers):
            _reset(writer)
        self._writers.clear()

    async def _restore(self) -> None:
        self.is_cut = False

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.is_cut:
            self.attempts.append(time.monotonic())
            _reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            _reset(writer)
            return
        self._writers.update((writer, up_writer))
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )
        self._writers.difference_update((writer, up_writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                if self.is_cut:
                    break
                writer.write(data)
                await writer.drain()
        finally:
            if self.is_cut:
                _reset(writer)
            else:
                with contextlib.suppress(OSError, RuntimeError):
                    writer.close()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0), as a dead peer's kernel would answer."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def start_operator(
    workdir: Path,
    cp: ControlPlane,
    gate: DaemonGate,
    net: LocalNetProcess,
    namespaces: list[str],
    crash_at: str | None = None,
    extra_env: dict[str, str] | None = None,
) -> OperatorProcess:
    """`golem-operator run` for these namespaces, reaching the daemon through the gate."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = {"GOLEM_OPERATOR_LOG_LEVEL": "INFO", **(extra_env or {})}
    if crash_at:
        env["GOLEM_OPERATOR_CRASH_AT"] = crash_at
    # The image registry is the local network itself, not behind the gate: an outage of the
    # daemon is not one of the registry.
    proc = OperatorProcess(
        workdir,
        cp.kubeconfig,
        gate.url,
        net.key_file,
        namespaces=namespaces,
        extra_env=env,
        image_registry=net.url,
    )
    OPERATOR_LOGS.append(proc.log)
    APP_KEYS_USED.add(net.app_key)
    return proc.start()


def restart_operator(proc: OperatorProcess, crash_at: str | None = None) -> OperatorProcess:
    """Start the same operator again (after it died), with or without a crash point."""
    proc.extra_env.pop("GOLEM_OPERATOR_CRASH_AT", None)
    if crash_at:
        proc.extra_env["GOLEM_OPERATOR_CRASH_AT"] = crash_at
    proc.proc = None
    return proc.start()


def wait_exit(proc: OperatorProcess, timeout: float) -> int | None:
    """The operator's exit code once it exits by itself, or None if it is still running."""
    assert proc.proc is not None
    try:
        return proc.proc.wait(timeout=timeout)
    except Exception:
        return None


def node_name(namespace: str, name: str) -> str:
    """The requestor node name the operator publishes for a service (audit: demandNodeName)."""
    return f"golem-operator/{namespace}/{name}"


def gsvc_status(cp: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    """The service's status, with `instances` built from its GolemServiceInstance objects."""
    status: dict[str, Any] = service_view(cp, namespace, name).get("status", {})
    return status


@dataclass
class Ledger:
    """One service's agreements in the audit view, and what status knows of them."""

    agreements: list[dict[str, Any]]
    invoices: dict[str, list[dict[str, Any]]]
    payments: list[dict[str, Any]]
    activities: list[dict[str, Any]]
    known: set[str] = field(default_factory=set)

    @property
    def paid(self) -> Decimal:
        return sum((Decimal(p["amount"]) for p in self.payments), Decimal(0))

    def approved(self) -> list[str]:
        return [a["agreementId"] for a in self.agreements if a["state"] == "Approved"]


def ledger(audit: dict[str, Any], namespace: str, name: str, status: dict[str, Any]) -> Ledger:
    node = node_name(namespace, name)
    mine = [a for a in audit["agreements"] if a.get("demandNodeName") == node]
    ids = {a["agreementId"] for a in mine}
    invoices: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
    for invoice in audit["invoices"]:
        if invoice["agreementId"] in ids:
            invoices[invoice["agreementId"]].append(invoice)
    known = {
        i["agreementId"]
        for i in status.get("instances", [])
        if i.get("agreementId") and i["state"] != "Terminated"
    }
    return Ledger(
        agreements=mine,
        invoices=invoices,
        payments=[p for p in audit["payments"] if p["agreementId"] in ids],
        activities=[a for a in audit["activities"] if a["agreementId"] in ids],
        known=known,
    )


def ledger_problems(book: Ledger, budget: Decimal | None = None) -> list[str]:
    """What is wrong with a service's money and Golem objects (empty: nothing).

    - an approved (open) agreement that status does not list among its live instances;
    - two live instances on one agreement (a duplicate);
    - an ended agreement whose invoice is missing, not accepted, or issued twice;
    - a live sandbox of an ended activity or agreement;
    - more paid than the budget.
    """
    problems = []
    for agreement_id in book.approved():
        if agreement_id not in book.known:
            problems.append(f"open agreement {agreement_id[:12]} unknown to status")
    for agreement in book.agreements:
        if agreement["state"] != "Terminated":
            continue
        invoices = book.invoices.get(agreement["agreementId"], [])
        accepted = [i for i in invoices if i["status"] == "ACCEPTED"]
        if len(invoices) != 1 or len(accepted) != 1:
            states = [i["status"] for i in invoices]
            problems.append(f"ended agreement {agreement['agreementId'][:12]} invoices {states}")
    ended = {a["agreementId"] for a in book.agreements if a["state"] != "Approved"}
    for activity in book.activities:
        if activity["sandboxAlive"] and (
            activity["agreementId"] in ended or activity["state"] == "Terminated"
        ):
            problems.append(f"live sandbox of ended activity {activity['activityId'][:12]}")
    if budget is not None and book.paid > budget:
        problems.append(f"paid {book.paid} GLM > budget {budget}")
    return problems


def duplicate_agreements(status: dict[str, Any]) -> list[str]:
    """Agreement ids that two live instances of one status share."""
    seen: dict[str, str] = {}
    duplicates = []
    for instance in status.get("instances", []):
        agreement = instance.get("agreementId")
        if not agreement or instance["state"] == "Terminated":
            continue
        if agreement in seen:
            duplicates.append(f"{agreement[:12]} in {seen[agreement]} and {instance['name']}")
        seen[agreement] = instance["name"]
    return duplicates


def delete_all(cp: ControlPlane, namespace: str, timeout: float) -> None:
    """Delete every GolemService of a namespace and wait until the operator let them go."""
    cp.kubectl_run("delete", "gsvc", "--all", "-n", namespace, "--wait=false")
    deadline = time.monotonic() + timeout
    left: list[str] = []
    while time.monotonic() < deadline:
        out = cp.kubectl_run("get", "gsvc", "-n", namespace, "-o", "json")
        left = [i["metadata"]["name"] for i in json.loads(out.stdout)["items"]]
        if not left:
            return
        time.sleep(0.5)
    raise AssertionError(f"still not deleted after {timeout:.0f}s: {left}")


def wait_for(what: str, predicate: Callable[[], Any], timeout: float, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")
