"""The status writer against the real API server: cleared fields leave the object."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from kubernetes_asyncio import client as kube_client
from kubernetes_asyncio import config as kube_config

from golem_operator.devenv.controlplane import ControlPlane
from golem_operator.handlers.kube import Kube
from golem_operator.handlers.status import StatusWriter

pytestmark = pytest.mark.controlplane

SERVICE = {
    "apiVersion": "services.golem.network/v1alpha1",
    "kind": "GolemService",
    "metadata": {"name": "writer"},
    "spec": {
        "payload": {"image": {"tag": "golem/minimal:latest"}},
        "lifecycle": {"start": {"commands": [{"run": {"entrypoint": "/bin/true"}}]}},
        "budget": "1",
    },
}


def read_status(cp: ControlPlane, namespace: str) -> dict[str, Any]:
    out = cp.kubectl_run("get", "gsvc", "writer", "-n", namespace, "-o", "json")
    status: dict[str, Any] = json.loads(out.stdout)["status"]
    return status


async def test_fields_cleared_in_memory_are_removed_from_the_object(
    control_plane: ControlPlane, namespace: str
) -> None:
    control_plane.kubectl_run("create", "-n", namespace, "-f", "-", input=json.dumps(SERVICE))
    await kube_config.load_kube_config(config_file=str(control_plane.kubeconfig))
    kube = Kube(kube_client.ApiClient())
    status: dict[str, Any] = {
        "allocationId": "alloc-1",
        "demandId": "demand-1",
        "spent": "0.25",
        "avoidedProviders": {"0xaaa": "2026-12-03T10:00:00+00:00", "0xbbb": "2026-12-03T11:00:00"},
    }
    writer = StatusWriter(
        lambda: json.loads(json.dumps(status)),
        lambda body: kube.patch_status(namespace, "writer", body),
        interval=0.05,
    )
    writer.start()
    try:
        writer.changed()
        await asyncio.wait_for(writer.flush(), 30)
        assert read_status(control_plane, namespace)["allocationId"] == "alloc-1"

        # The allocation was released and one provider's avoidance expired.
        del status["allocationId"]
        del status["avoidedProviders"]["0xaaa"]
        writer.changed()
        await asyncio.wait_for(writer.flush(), 30)
        written = read_status(control_plane, namespace)
        assert "allocationId" not in written
        assert written["avoidedProviders"] == {"0xbbb": "2026-12-03T11:00:00"}
        assert written["demandId"] == "demand-1"
    finally:
        await writer.close()
        await kube.close()


async def test_a_restarted_writer_clears_what_the_object_held_before(
    control_plane: ControlPlane, namespace: str
) -> None:
    """The status read at start is the base: a field dropped since is removed on first write."""
    control_plane.kubectl_run("create", "-n", namespace, "-f", "-", input=json.dumps(SERVICE))
    await kube_config.load_kube_config(config_file=str(control_plane.kubeconfig))
    kube = Kube(kube_client.ApiClient())
    assert await kube.patch_status(namespace, "writer", {"demandId": "old", "spent": "1"})
    on_object = read_status(control_plane, namespace)
    status = {"spent": "1"}  # e.g. the old demand was withdrawn during adoption
    writer = StatusWriter(
        lambda: dict(status),
        lambda body: kube.patch_status(namespace, "writer", body),
        interval=0.05,
        written=on_object,
    )
    writer.start()
    try:
        status["spent"] = "2"
        writer.changed()
        await asyncio.wait_for(writer.flush(), 30)
        written = read_status(control_plane, namespace)
        assert "demandId" not in written
        assert written["spent"] == "2"
    finally:
        await writer.close()
        await kube.close()
