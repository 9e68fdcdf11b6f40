"""Helpers of the operator's integration tests: a GolemService under test, manifests."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from golem_operator.devenv.controlplane import ControlPlane
from golem_operator.devenv.stack import LocalNetProcess, service_view

ROOT = Path(__file__).resolve().parents[2]
FAULTY = ["fails-start", "crashes", "terminates", "fails-run", "pricey", "shy-1", "shy-2", "shy-3"]


class Service:
    """A GolemService under test and the ways to look at it."""

    def __init__(self, cp: ControlPlane, net: LocalNetProcess, namespace: str, name: str) -> None:
        self.cp, self.net, self.namespace, self.name = cp, net, namespace, name
        #: Every agreement and activity id status ever showed (they outlive the object).
        self.seen_agreements: set[str] = set()
        self.seen_activities: set[str] = set()
        self._seen: dict[str, set[str]] = {"allocationId": set(), "demandId": set()}

    def apply(self, manifest: dict[str, Any]) -> None:
        manifest = {**manifest, "metadata": {**manifest.get("metadata", {}), "name": self.name}}
        self.cp.kubectl_run("apply", "-n", self.namespace, "-f", "-", input=json.dumps(manifest))

    def get(self) -> dict[str, Any]:
        """The GolemService, its status listing its GolemServiceInstance objects."""
        return service_view(self.cp, self.namespace, self.name)

    @property
    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = self.get().get("status", {})
        for key, seen in self._seen.items():
            if status.get(key):
                seen.add(status[key])
        for instance in status.get("instances", []):
            if instance.get("agreementId"):
                self.seen_agreements.add(instance["agreementId"])
            if instance.get("activityId"):
                self.seen_activities.add(instance["activityId"])
        return status

    def instances(self, state: str | None = None) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.status.get("instances", [])
        return [i for i in found if state is None or i["state"] == state]

    def condition(self, kind: str) -> dict[str, Any]:
        for condition in self.status.get("conditions", []):
            if condition["type"] == kind:
                return dict(condition)
        return {}

    def wait(self, what: str, predicate: Callable[[], Any], timeout: float = 60.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.5)
        raise AssertionError(
            f"timed out waiting for {what}; status: {json.dumps(self.status, indent=1)[:6000]}"
        )

    def wait_running(self, count: int, timeout: float = 60.0) -> list[dict[str, Any]]:
        return list(
            self.wait(
                f"{count} Running",
                lambda: (r := self.instances("Running")) and len(r) == count and r,
                timeout,
            )
        )

    def events(self) -> list[dict[str, Any]]:
        """Events about the service and about its instance objects."""
        out = self.cp.kubectl_run("get", "events", "-n", self.namespace, "-o", "json")
        items: list[dict[str, Any]] = json.loads(out.stdout)["items"]
        return [e for e in items if self._about_me(e["involvedObject"])]

    def _about_me(self, involved: dict[str, Any]) -> bool:
        if involved.get("kind") == "GolemServiceInstance":
            prefix, _, sequence = str(involved.get("name", "")).rpartition("-")
            return prefix == self.name and sequence.isdigit()
        return bool(involved.get("name") == self.name)

    def delete(self, wait: bool = True, timeout: float = 90.0) -> None:
        self.cp.kubectl_run(
            "delete",
            "-n",
            self.namespace,
            "gsvc",
            self.name,
            "--wait=false",
            "--ignore-not-found",
        )
        if wait:
            self.wait("deletion", lambda: not self.get(), timeout)

    def agreements(self) -> list[dict[str, Any]]:
        """The audit view's records of every agreement this service's demands ever signed."""
        node = f"golem-operator/{self.namespace}/{self.name}"
        return [a for a in self.net.audit()["agreements"] if a.get("demandNodeName") == node]

    def seen(self, key: str) -> set[str]:
        """Every allocationId or demandId that status ever showed."""
        return self._seen[key]

    def assert_settled(self) -> None:
        """Every agreement terminated, its invoice accepted once, nothing paid twice."""
        audit = self.net.audit()
        mine = self.agreements()
        assert mine, "no agreements recorded"
        assert self.seen_agreements <= {a["agreementId"] for a in mine}
        for agreement in mine:
            assert agreement["state"] == "Terminated", agreement
            invoices = [
                i for i in audit["invoices"] if i["agreementId"] == agreement["agreementId"]
            ]
            assert len(invoices) == 1, (agreement, invoices)
            assert invoices[0]["status"] == "ACCEPTED", invoices
        for activity in audit["activities"]:
            if activity["agreementId"] in {a["agreementId"] for a in mine}:
                assert not activity["sandboxAlive"], activity

    def events_by_reason(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for event in self.events():
            found.setdefault(event["reason"], []).append(event["message"])
        return found


def simple_manifest(**spec: Any) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "simple-service.yaml").read_text())
    doc["spec"]["lifecycle"]["run"]["intervalSeconds"] = 2
    doc["spec"]["market"] = {
        "providers": {"deny": list(FAULTY)},
        "debitNoteIntervalSeconds": 10,
    }
    for key, value in spec.items():
        doc["spec"][key] = value
    return doc
