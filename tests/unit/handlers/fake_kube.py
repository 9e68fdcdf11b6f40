"""An in-memory Kubernetes boundary for running the engine and its workers in-process.

Implements the members of ``handlers.kube.Kube`` that the engine and the workers call, with
the API server's rules that matter to them: merge patches of status, uids and 404/409 on a
gone or replaced object, finalizers holding a deleted object, creation conflicts.
"""

from __future__ import annotations

import asyncio
import copy
import uuid
from datetime import UTC, datetime
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException

from golem_operator import constants


def merge(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7386 merge patch."""
    out = dict(target)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


class FakeKube:
    def __init__(self) -> None:
        self.services: dict[tuple[str, str], dict[str, Any]] = {}
        self.instances: dict[tuple[str, str], dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.writes = 0
        #: While set, instance status writes fail with this HTTP status.
        self.fail_instance_writes: int | None = None
        self.changed = asyncio.Event()

    # --- test side ------------------------------------------------------------------------

    def add_service(self, namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        body = {
            "apiVersion": constants.API_VERSION,
            "kind": constants.KIND,
            "metadata": {
                "namespace": namespace,
                "name": name,
                "uid": str(uuid.uuid4()),
                "generation": 1,
            },
            "spec": spec,
        }
        self.services[(namespace, name)] = body
        return copy.deepcopy(body)

    def instance_list(self, namespace: str, service: str) -> list[dict[str, Any]]:
        return [
            copy.deepcopy(body)
            for (ns, _), body in sorted(self.instances.items())
            if ns == namespace
            and body["metadata"]["labels"].get(constants.SERVICE_LABEL) == service
        ]

    def mark_instance_deleted(self, namespace: str, name: str) -> dict[str, Any]:
        body = self.instances[(namespace, name)]
        body["metadata"]["deletionTimestamp"] = datetime.now(UTC).isoformat()
        return copy.deepcopy(body)

    def _bump(self) -> None:
        self.writes += 1
        self.changed.set()

    # --- the Kube interface ---------------------------------------------------------------

    async def close(self) -> None:
        return None

    async def patch_status(
        self, namespace: str, name: str, status: dict[str, Any], uid: str = ""
    ) -> bool:
        body = self.services.get((namespace, name))
        if body is None or (uid and body["metadata"]["uid"] != uid):
            return False
        body["status"] = merge(body.get("status") or {}, status)
        self._bump()
        return True

    async def get_service(self, namespace: str, name: str) -> dict[str, Any] | None:
        body = self.services.get((namespace, name))
        return copy.deepcopy(body) if body else None

    async def create_instance(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        key = (namespace, body["metadata"]["name"])
        if key in self.instances:
            raise ApiException(status=409, reason="AlreadyExists")
        created = copy.deepcopy(body)
        created.pop("status", None)  # the status subresource: ignored on create
        created["metadata"]["uid"] = str(uuid.uuid4())
        created["metadata"]["resourceVersion"] = "1"
        created["metadata"]["creationTimestamp"] = datetime.now(UTC).isoformat()
        self.instances[key] = created
        self._bump()
        return copy.deepcopy(created)

    async def get_instance(self, namespace: str, name: str) -> dict[str, Any] | None:
        body = self.instances.get((namespace, name))
        return copy.deepcopy(body) if body else None

    async def list_instances(self, namespace: str, service: str) -> list[dict[str, Any]]:
        return self.instance_list(namespace, service)

    async def patch_instance_status(
        self, namespace: str, name: str, status: dict[str, Any], uid: str
    ) -> bool:
        if self.fail_instance_writes is not None:
            raise ApiException(status=self.fail_instance_writes, reason="Unavailable")
        body = self.instances.get((namespace, name))
        if body is None or body["metadata"]["uid"] != uid:
            return False
        body["status"] = merge(body.get("status") or {}, status)
        self._bump()
        return True

    async def remove_instance(self, namespace: str, name: str, uid: str) -> None:
        body = self.instances.get((namespace, name))
        if body is None or body["metadata"]["uid"] != uid:
            return
        # The finalizer dropped and the object deleted: nothing else holds it.
        del self.instances[(namespace, name)]
        self._bump()

    async def event(
        self, ref: dict[str, str], reason: str, message: str, warning: bool = False
    ) -> None:
        self.events.append({**ref, "reason": reason, "message": message, "warning": warning})

    def event_soon(
        self, ref: dict[str, str], reason: str, message: str, warning: bool = False
    ) -> None:
        self.events.append({**ref, "reason": reason, "message": message, "warning": warning})

    async def peering_status(self, name: str, namespace: str | None) -> dict[str, Any] | None:
        return None

    async def read_secret_key(self, namespace: str, name: str, key: str) -> bytes:
        raise ApiException(status=404, reason="NotFound")

    async def read_secret(
        self, namespace: str, name: str
    ) -> tuple[dict[str, str], dict[str, bytes]]:
        raise ApiException(status=404, reason="NotFound")

    async def read_config_map_key(self, namespace: str, name: str, key: str) -> bytes:
        raise ApiException(status=404, reason="NotFound")
