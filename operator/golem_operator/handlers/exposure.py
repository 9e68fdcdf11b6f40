"""spec.ports of one GolemService: the proxy's listeners, and the Kubernetes Service and
EndpointSlice that send the cluster's connections to them.

Owned by the service worker, which calls `sync` on every reconcile pass and `close` when it
stops. The objects are built by `core.exposure` and applied when what they say changes (and
every RESYNC seconds, so that one deleted by hand comes back). A Service of the same name
that the GolemService does not own is left alone and reported. The objects are deleted when
spec.ports empties or the GolemService is being deleted; a pause or a shutdown only closes
the listeners (the operator in charge next points the EndpointSlice at itself).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from golem_operator.api.spec import ServicePort
from golem_operator.api.status import ProxyPort, ProxyStatus
from golem_operator.core import exposure
from golem_operator.handlers.kube import Kube
from golem_operator.handlers.proxy import ProxyHost, ProxySettings, ServiceProxy

#: Seconds after which the objects are read and applied again even if unchanged.
RESYNC = 60.0

Problem = tuple[str, str]


class Exposure:
    def __init__(
        self,
        host: ProxyHost,
        kube: Kube,
        settings: ProxySettings,
        log: logging.LoggerAdapter[logging.Logger],
        exposed: bool,
    ) -> None:
        self.host = host
        self.kube = kube
        self.settings = settings
        self.log = log
        self.proxy = ServiceProxy(host, settings, log)
        #: Whether the objects may exist (status.proxy was recorded, or they were applied).
        self.exposed = exposed
        self._applied: tuple[dict[str, Any], dict[str, Any]] | None = None
        self._applied_at = 0.0

    async def close(self) -> None:
        """Stop listening (pause, shutdown): the objects stay as they are."""
        await self.proxy.close()
        self._applied = None

    async def sync(
        self, ports: Sequence[ServicePort], uid: str, *, withdraw: bool, write: bool = True
    ) -> tuple[ProxyStatus | None, Problem | None]:
        """Serve `ports`, or nothing with `withdraw` (deletion); with `write` False (the
        object is gone) nothing is written to the API server. Returns status.proxy and the
        problem that keeps the ports from being served, if any."""
        if withdraw or not ports or not write:
            await self.proxy.close()
            self._applied = None
            if self.exposed and write:
                try:
                    await self._delete()
                except Exception as error:
                    return None, _failed("deleting", self.host.name, error)
            return None, None
        name = self.host.name
        unnamed = exposure.service_name_problem(name)
        if unnamed is not None:
            await self.proxy.close()
            return None, ("PortsNotServed", unnamed)
        listener_ports = await self.proxy.serve(ports)
        backends = self.host.backends()
        listeners = exposure.listeners_of(ports, listener_ports)
        bodies = (
            exposure.service_manifest(self.host.namespace, name, uid, ports),
            exposure.endpoint_slice_manifest(
                self.host.namespace,
                name,
                uid,
                listeners,
                self.settings.address,
                ready=bool(backends),
            ),
        )
        status = ProxyStatus(
            service_name=name,
            address=self.settings.address,
            ports=[
                ProxyPort(name=x.name, port=x.port, listener_port=x.listener_port)
                for x in listeners
            ],
            backends=len(backends),
        )
        due = time.monotonic() - self._applied_at > RESYNC
        if bodies == self._applied and not due:
            return status, None
        try:
            problem = await self._apply(*bodies)
        except Exception as error:
            self._applied = None
            return status, _failed("writing", name, error)
        if problem is not None:
            self._applied = None
            return status, problem
        self._applied = bodies
        self._applied_at = time.monotonic()
        return status, None

    async def _apply(self, service: dict[str, Any], slice_: dict[str, Any]) -> Problem | None:
        namespace, name = self.host.namespace, self.host.name
        for found, what in (
            (await self.kube.get_kube_service(namespace, name), f"Service {name}"),
            (
                await self.kube.get_endpoint_slice(namespace, exposure.slice_name(name)),
                f"EndpointSlice {exposure.slice_name(name)}",
            ),
        ):
            if found is not None and not exposure.owned_by_service(found, name):
                return (
                    "PortsNotServed",
                    f"spec.ports: a {what} exists in {namespace} that this GolemService does "
                    "not own; it is left alone and the ports are not served through it",
                )
        self.exposed = True
        await self.kube.apply_kube_service(service)
        await self.kube.apply_endpoint_slice(slice_)
        self.log.info(
            "Service %s: ports %s at %s",
            name,
            ", ".join(f"{p['name']}->{p['port']}" for p in slice_["ports"]),
            self.settings.address,
        )
        return None

    async def _delete(self) -> None:
        """Delete the objects this GolemService owns (a Service it does not own stays)."""
        namespace, name = self.host.namespace, self.host.name
        found = await self.kube.get_endpoint_slice(namespace, exposure.slice_name(name))
        if found is not None and exposure.owned_by_service(found, name):
            await self.kube.delete_endpoint_slice(namespace, exposure.slice_name(name))
        found = await self.kube.get_kube_service(namespace, name)
        if found is not None and exposure.owned_by_service(found, name):
            await self.kube.delete_kube_service(namespace, name)
        self.exposed = False
        self.log.info("Service %s and its EndpointSlice deleted (no ports served)", name)


def _failed(doing: str, name: str, error: Exception) -> Problem:
    """The problem of a failed API call (its status and reason only: never a body)."""
    reason = getattr(error, "reason", None) or type(error).__name__
    code = getattr(error, "status", None) or ""
    return (
        "PortsNotServed",
        f"spec.ports: {doing} the Service {name} or its EndpointSlice failed: {code} {reason}",
    )
