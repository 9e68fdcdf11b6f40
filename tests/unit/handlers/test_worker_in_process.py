"""The engine and a service worker in-process: the local Golem network (in-process, real
commands) and a fake Kubernetes boundary (tests/unit/handlers/fake_kube.py).

What these pin down: instances are written as their own objects and the service's status is
a summary; an instance object's deletion stops that instance and the service replaces it; a
restarted engine adopts the objects without new agreements; instances recorded in an old
status.instances are adopted; status writes that keep failing make the service Degraded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from fake_kube import FakeKube
from pydantic import SecretStr

from golem_operator.config import OperatorConfig
from golem_operator.handlers import service as service_module
from golem_operator.handlers.engine import Engine
from golem_operator.localnet import LocalNetwork
from localnet_fixture import localnet_config

ROOT = Path(__file__).resolve().parents[3]
NS = "default"


@pytest_asyncio.fixture
async def localnet() -> AsyncIterator[LocalNetwork]:
    config = localnet_config(
        subnet_tag="public",
        providers=[{"count": 4, "name_prefix": "prov"}],
        images=[{"tag": "minimal:latest", "path": str(ROOT / "examples/images/minimal")}],
    )
    network = LocalNetwork(config)
    await network.start()
    try:
        yield network
    finally:
        await network.stop()


def make_engine(net: LocalNetwork, kube: FakeKube) -> Engine:
    assert net.url is not None
    config = OperatorConfig(
        golem_url=net.url,
        golem_app_key=SecretStr(net.app_key),
        status_interval=0.1,
        invoice_wait=10.0,
        image_registry=net.url,
    )
    engine = Engine(config, kube)  # type: ignore[arg-type]
    engine.start()
    return engine


def spec(replicas: int) -> dict[str, Any]:
    return {
        "replicas": replicas,
        "payload": {"image": {"tag": "minimal:latest"}},
        "budget": "5",
        "lifecycle": {
            "start": {"commands": [{"run": {"entrypoint": "/golem/run/start.sh"}}]},
            "run": {
                "intervalSeconds": 1,
                "commands": [{"run": {"entrypoint": "/golem/run/run.sh"}}],
            },
            "stop": {"commands": [{"run": {"entrypoint": "/golem/run/stop.sh"}}]},
        },
    }


async def until(what: str, predicate: Callable[[], Any], within: float = 30.0) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def states(kube: FakeKube, service: str) -> dict[str, str]:
    return {
        body["metadata"]["name"]: (body.get("status") or {}).get("state", "")
        for body in kube.instance_list(NS, service)
    }


def running(kube: FakeKube, service: str) -> list[dict[str, Any]]:
    return [
        b
        for b in kube.instance_list(NS, service)
        if (b.get("status") or {}).get("state") == "Running"
    ]


def approved_agreements(net: LocalNetwork) -> set[str]:
    return {a.id for a in net.network.agreements.values() if a.state == "Approved"}


async def test_instances_are_objects_and_the_service_status_a_summary(
    localnet: LocalNetwork,
) -> None:
    kube = FakeKube()
    engine = make_engine(localnet, kube)
    try:
        engine.sync(kube.add_service(NS, "web", spec(3)))
        await until("3 Running", lambda: len(running(kube, "web")) == 3)
        summary = await until("summary", lambda: kube.services[(NS, "web")].get("status") or {})
        await until(
            "readyReplicas 3",
            lambda: kube.services[(NS, "web")]["status"].get("readyReplicas") == 3,
        )
        summary = kube.services[(NS, "web")]["status"]
        assert "instances" not in summary
        assert summary["instanceCounts"]["running"] == 3
        uid = kube.services[(NS, "web")]["metadata"]["uid"]
        for body in kube.instance_list(NS, "web"):
            assert body["metadata"]["ownerReferences"][0]["uid"] == uid
            assert body["status"]["agreementId"] in approved_agreements(localnet)
        # Instance Events are about the instance objects.
        kinds = {e.get("kind") for e in kube.events if e["reason"] == "Started"}
        assert kinds == {"GolemServiceInstance"}
    finally:
        await engine.close()


async def test_deleting_an_instance_object_stops_it_and_the_service_replaces_it(
    localnet: LocalNetwork,
) -> None:
    kube = FakeKube()
    engine = make_engine(localnet, kube)
    try:
        engine.sync(kube.add_service(NS, "web", spec(2)))
        await until("2 Running", lambda: len(running(kube, "web")) == 2)
        victim = running(kube, "web")[0]
        name, agreement = victim["metadata"]["name"], victim["status"]["agreementId"]
        engine.instance_event("MODIFIED", kube.mark_instance_deleted(NS, name))
        await until("its object removed", lambda: name not in states(kube, "web"))
        assert localnet.network.agreements[agreement].state == "Terminated"
        await until(
            "a replacement Running",
            lambda: len(running(kube, "web")) == 2 and name not in states(kube, "web"),
        )
    finally:
        await engine.close()


async def test_a_restarted_engine_adopts_the_objects_without_new_agreements(
    localnet: LocalNetwork,
) -> None:
    kube = FakeKube()
    engine = make_engine(localnet, kube)
    engine.sync(kube.add_service(NS, "web", spec(2)))
    await until("2 Running", lambda: len(running(kube, "web")) == 2)
    before = approved_agreements(localnet)
    await engine.close()
    engine = make_engine(localnet, kube)
    try:
        engine.sync(await kube.get_service(NS, "web") or {})
        worker = engine.workers[(NS, "web")]
        await until("loaded", lambda: worker.loaded)
        assert {i.agreement_id for i in worker.status.instances} == before
        await asyncio.sleep(2.0)
        assert approved_agreements(localnet) == before
        assert len(running(kube, "web")) == 2
    finally:
        await engine.close()


async def test_instances_of_an_old_status_list_get_objects(localnet: LocalNetwork) -> None:
    kube = FakeKube()
    engine = make_engine(localnet, kube)
    engine.sync(kube.add_service(NS, "web", spec(2)))
    await until("2 Running", lambda: len(running(kube, "web")) == 2)
    await engine.close()
    before = approved_agreements(localnet)
    # What an older version wrote: the instances in the service's status, no objects.
    legacy = [
        {"name": body["metadata"]["name"], **body["status"]}
        for body in kube.instance_list(NS, "web")
    ]
    kube.instances.clear()
    kube.services[(NS, "web")]["status"]["instances"] = legacy
    engine = make_engine(localnet, kube)
    try:
        engine.sync(await kube.get_service(NS, "web") or {})
        await until("objects again", lambda: len(running(kube, "web")) == 2)
        await until(
            "the list cleared", lambda: "instances" not in kube.services[(NS, "web")]["status"]
        )
        assert {b["status"]["agreementId"] for b in running(kube, "web")} == before
        assert approved_agreements(localnet) == before
    finally:
        await engine.close()


async def test_failing_status_writes_make_the_service_degraded(
    localnet: LocalNetwork, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service_module, "WRITE_FAILURE_GRACE", 0.5)
    kube = FakeKube()
    engine = make_engine(localnet, kube)
    try:
        engine.sync(kube.add_service(NS, "web", spec(1)))
        await until("Running", lambda: len(running(kube, "web")) == 1)
        kube.fail_instance_writes = 503
        # A change the instance object cannot take: the run script's next result.
        worker = engine.workers[(NS, "web")]

        def degraded() -> str:
            for condition in kube.services[(NS, "web")]["status"].get("conditions", []):
                if condition["type"] == "Degraded" and condition["status"] == "True":
                    return str(condition["reason"])
            return ""

        await until("Degraded", lambda: degraded() == "StatusWriteFailing", 20)
        assert worker.status.ready_replicas == 1  # the service went on running
        kube.fail_instance_writes = None
        await until("recovered", lambda: degraded() == "", 20)
    finally:
        await engine.close()
