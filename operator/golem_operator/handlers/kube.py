"""Kubernetes I/O outside kopf's handlers: status patches, instance objects, Events, Secrets,
and the Service and EndpointSlice of a GolemService's spec.ports.

Used by the service workers. One shared kubernetes_asyncio ApiClient. Status is written with a
JSON merge patch on the status subresource only; the operator never writes a GolemService's
spec. GolemServiceInstances are created, status-patched and removed here. Services and
EndpointSlices are written by server-side apply (field manager golem-operator).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from datetime import UTC, datetime
from typing import Any

from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from golem_operator import constants

log = logging.getLogger(__name__)


class Kube:
    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.discovery = client.DiscoveryV1Api(api)
        self.writes = 0  # API writes, for the benchmarks' cost-per-instance figures
        self._background: set[asyncio.Task[None]] = set()

    @classmethod
    async def connect(cls) -> Kube:
        try:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
        except config.ConfigException:
            await config.load_kube_config()
        api = client.ApiClient()
        # kubernetes_asyncio's session trusts the environment: a proxy lookup (in a thread)
        # and a ~/.netrc read on every call, a tenth of a busy operator's CPU. kopf's own
        # session does not either (settings.networking.trust_env defaults to False).
        api.rest_client.pool_manager._trust_env = False
        return cls(api)

    async def close(self) -> None:
        await self.api.close()

    async def patch_status(
        self, namespace: str, name: str, status: dict[str, Any], uid: str = ""
    ) -> bool:
        """Merge-patch the status; False when the object is gone.

        With `uid`, the patch is refused (Conflict) when the name now belongs to another
        object: a gone object's worker never writes into its successor's status.
        """
        return await self._patch_status(constants.PLURAL, namespace, name, status, uid)

    async def _patch_status(
        self, plural: str, namespace: str, name: str, status: dict[str, Any], uid: str
    ) -> bool:
        """Merge-patch an object's status subresource; False when it (with `uid`, that very
        object) is gone."""
        body: dict[str, Any] = {"status": status}
        if uid:
            body["metadata"] = {"uid": uid}
        self.writes += 1
        try:
            # The answer is the whole object: read, never parsed (its JSON decoding was the
            # largest cost of a status write).
            response = await self.custom.patch_namespaced_custom_object_status(
                constants.GROUP,
                constants.VERSION,
                namespace,
                plural,
                name,
                body,
                _content_type="application/merge-patch+json",  # type: ignore[call-arg]
                _preload_content=False,
            )
            async with response:
                await response.read()
                if not 200 <= response.status <= 299:
                    raise ApiException(status=response.status, reason=response.reason)
        except ApiException as error:
            if error.status == 404 or (uid and error.status == 409):
                return False
            raise
        return True

    async def create_instance(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create a GolemServiceInstance; the created object (raises ApiException 409 when
        one of that name exists)."""
        self.writes += 1
        created = await self.custom.create_namespaced_custom_object(
            constants.GROUP, constants.VERSION, namespace, constants.INSTANCE_PLURAL, body
        )
        return dict(created)

    async def get_instance(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            found = await self.custom.get_namespaced_custom_object(
                constants.GROUP, constants.VERSION, namespace, constants.INSTANCE_PLURAL, name
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return dict(found)

    async def list_instances(self, namespace: str, service: str) -> list[dict[str, Any]]:
        """The GolemServiceInstances labelled with a service's name."""
        found = await self.custom.list_namespaced_custom_object(
            constants.GROUP,
            constants.VERSION,
            namespace,
            constants.INSTANCE_PLURAL,
            label_selector=f"{constants.SERVICE_LABEL}={service}",
        )
        return [dict(item) for item in found.get("items", [])]

    async def patch_instance_status(
        self, namespace: str, name: str, status: dict[str, Any], uid: str
    ) -> bool:
        """Merge-patch an instance's status; False when that object (uid) is gone."""
        return await self._patch_status(constants.INSTANCE_PLURAL, namespace, name, status, uid)

    async def remove_instance(self, namespace: str, name: str, uid: str) -> None:
        """Release an instance object (drop the operator's finalizer) and delete it; done when
        that object (uid) is gone."""
        object_ = await self.get_instance(namespace, name)
        if object_ is None or object_["metadata"].get("uid") != uid:
            return
        finalizers = list(object_["metadata"].get("finalizers") or [])
        if constants.INSTANCE_FINALIZER in finalizers:
            finalizers.remove(constants.INSTANCE_FINALIZER)
            self.writes += 1
            try:
                await self.custom.patch_namespaced_custom_object(
                    constants.GROUP,
                    constants.VERSION,
                    namespace,
                    constants.INSTANCE_PLURAL,
                    name,
                    {
                        "metadata": {
                            "uid": uid,
                            "resourceVersion": object_["metadata"]["resourceVersion"],
                            "finalizers": finalizers or None,
                        }
                    },
                    _content_type="application/merge-patch+json",  # type: ignore[call-arg]
                )
            except ApiException as error:
                if error.status == 404:
                    return
                raise  # 409: changed meanwhile; the caller retries
        if object_["metadata"].get("deletionTimestamp"):
            return
        self.writes += 1
        try:
            await self.custom.delete_namespaced_custom_object(
                constants.GROUP,
                constants.VERSION,
                namespace,
                constants.INSTANCE_PLURAL,
                name,
                body=client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=uid)),
            )
        except ApiException as error:
            if error.status not in (404, 409):
                raise

    async def event(
        self,
        ref: dict[str, str],
        reason: str,
        message: str,
        warning: bool = False,
    ) -> None:
        """Post a core/v1 Event about a GolemService, or a GolemServiceInstance when ref
        names that kind (kubectl describe shows the story)."""
        now = datetime.now(UTC)
        body = {
            "metadata": {"generateName": f"{ref['name']}.", "namespace": ref["namespace"]},
            "involvedObject": {
                "apiVersion": constants.API_VERSION,
                "kind": ref.get("kind", constants.KIND),
                "name": ref["name"],
                "namespace": ref["namespace"],
                "uid": ref["uid"],
            },
            "reason": reason,
            "message": message[:1024],
            "type": "Warning" if warning else "Normal",
            "source": {"component": "golem-operator"},
            "reportingComponent": "golem-operator",
            "reportingInstance": "golem-operator",
            "firstTimestamp": now.isoformat(),
            "lastTimestamp": now.isoformat(),
            "count": 1,
        }
        self.writes += 1
        try:
            await self.core.create_namespaced_event(ref["namespace"], body)  # type: ignore[arg-type]
        except ApiException as error:
            log.warning("event %s not posted: %s", reason, error.reason)

    def event_soon(
        self, ref: dict[str, str], reason: str, message: str, warning: bool = False
    ) -> None:
        """Post an Event in the background (callers never wait for Events)."""
        task = asyncio.create_task(self.event(ref, reason, message, warning))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def get_service(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The GolemService as the API server has it now, or None once it is gone."""
        try:
            found = await self.custom.get_namespaced_custom_object(
                constants.GROUP, constants.VERSION, namespace, constants.PLURAL, name
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return dict(found)

    async def peering_status(self, name: str, namespace: str | None) -> dict[str, Any] | None:
        """The peers recorded in a kopf peering object (None when it does not exist)."""
        try:
            if namespace is None:
                found = await self.custom.get_cluster_custom_object(
                    "kopf.dev", "v1", "clusterkopfpeerings", name
                )
            else:
                found = await self.custom.get_namespaced_custom_object(
                    "kopf.dev", "v1", namespace, "kopfpeerings", name
                )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return dict(found.get("status") or {})

    async def read_secret_key(self, namespace: str, name: str, key: str) -> bytes:
        secret = await self.core.read_namespaced_secret(name, namespace)
        data = secret.data or {}
        if key not in data:
            raise KeyError(f"Secret {namespace}/{name} has no key {key!r}")
        return base64.b64decode(data[key])

    async def read_secret(
        self, namespace: str, name: str
    ) -> tuple[dict[str, str], dict[str, bytes]]:
        """A Secret's labels and decoded data."""
        secret = await self.core.read_namespaced_secret(name, namespace)
        labels = dict(secret.metadata.labels or {}) if secret.metadata else {}
        data = {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}
        return labels, data

    async def read_config_map_key(self, namespace: str, name: str, key: str) -> bytes:
        cm = await self.core.read_namespaced_config_map(name, namespace)
        if cm.data and key in cm.data:
            return str(cm.data[key]).encode()
        if cm.binary_data and key in cm.binary_data:
            return base64.b64decode(cm.binary_data[key])
        raise KeyError(f"ConfigMap {namespace}/{name} has no key {key!r}")

    # --- the Service and EndpointSlice of spec.ports ---------------------------------------

    async def get_kube_service(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A core/v1 Service as a plain dict, or None."""
        return await _read_raw(self.core.read_namespaced_service(name, namespace, **_RAW))

    async def get_endpoint_slice(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await _read_raw(
            self.discovery.read_namespaced_endpoint_slice(name, namespace, **_RAW)
        )

    async def apply_kube_service(self, body: dict[str, Any]) -> None:
        """Create or update a Service to `body` (server-side apply)."""
        meta = body["metadata"]
        self.writes += 1
        await _read_raw(
            self.core.patch_namespaced_service(meta["name"], meta["namespace"], body, **_APPLY)
        )

    async def apply_endpoint_slice(self, body: dict[str, Any]) -> None:
        """Create or update an EndpointSlice to `body` (server-side apply)."""
        meta = body["metadata"]
        self.writes += 1
        await _read_raw(
            self.discovery.patch_namespaced_endpoint_slice(
                meta["name"], meta["namespace"], body, **_APPLY
            )
        )

    async def delete_kube_service(self, namespace: str, name: str) -> None:
        """Delete a Service; done when it is gone."""
        self.writes += 1
        try:
            await self.core.delete_namespaced_service(name, namespace)
        except ApiException as error:
            if error.status != 404:
                raise

    async def delete_endpoint_slice(self, namespace: str, name: str) -> None:
        self.writes += 1
        try:
            await self.discovery.delete_namespaced_endpoint_slice(name, namespace)
        except ApiException as error:
            if error.status != 404:
                raise


#: Keyword arguments of a call whose answer is read raw (a plain dict, not a model).
_RAW: dict[str, Any] = {"_preload_content": False}
_APPLY: dict[str, Any] = {
    "field_manager": constants.FIELD_MANAGER,
    "force": True,
    "_content_type": "application/apply-patch+yaml",
    "_preload_content": False,
}


async def _read_raw(call: Any) -> dict[str, Any] | None:
    """The JSON body of a call made with _preload_content=False; None for 404."""
    try:
        response = await call
    except ApiException as error:
        if error.status == 404:
            return None
        raise
    async with response:
        text = await response.read()
        if response.status == 404:
            return None
        if not 200 <= response.status <= 299:
            raise ApiException(status=response.status, reason=response.reason)
    found: dict[str, Any] = json.loads(text)
    return found
