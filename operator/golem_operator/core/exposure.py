"""The Kubernetes Service and EndpointSlice that serve a GolemService's spec.ports. Pure.

Called by the service worker (handlers/service.py), which applies what these build. The
Service has no selector: its one EndpointSlice, written by the operator, names the operator
itself (its pod IP) and, per port, the operator's listener that forwards connections to the
instances through the Golem VPN. Both are owned by the GolemService (garbage-collected with
it) and recognised as the operator's by that owner reference.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from golem_operator import constants
from golem_operator.api.spec import ServicePort

#: endpointslice.kubernetes.io/managed-by of the operator's slices: the endpoint-slice
#: controllers leave slices managed by another party alone.
SLICE_MANAGER = f"golem-operator.{constants.GROUP}"
#: A Service name (DNS-1035 label).
_SERVICE_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


@dataclass(frozen=True)
class Listener:
    """A served port: its name, the port inside the instances, the operator's listener."""

    name: str
    port: int
    listener_port: int


def service_name_problem(name: str) -> str | None:
    """Why a GolemService's name cannot name its Kubernetes Service, or None."""
    if len(name) <= 63 and _SERVICE_NAME.match(name):
        return None
    return (
        f'spec.ports: the GolemService name "{name}" cannot name a Kubernetes Service (a '
        "DNS-1035 label: at most 63 lowercase letters, digits and '-', starting with a letter)"
    )


def slice_name(service: str) -> str:
    return f"{service}-golem-proxy"


def endpoint_address_type(address: str) -> str | None:
    """The EndpointSlice addressType of the operator's address, or None when the API server
    refuses it as an endpoint (loopback, unspecified, link-local: the operator runs outside a
    pod, and no cluster network reaches it)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if ip.is_loopback or ip.is_unspecified or ip.is_link_local:
        return None
    return "IPv4" if ip.version == 4 else "IPv6"


def _owner(name: str, uid: str) -> dict[str, Any]:
    return {
        "apiVersion": constants.API_VERSION,
        "kind": constants.KIND,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _labels(name: str) -> dict[str, str]:
    return {constants.SERVICE_LABEL: name, "app.kubernetes.io/managed-by": "golem-operator"}


def owned_by_service(body: Mapping[str, Any], name: str) -> bool:
    """Whether a Service or EndpointSlice belongs to the GolemService of that name (any uid:
    the one a deleted GolemService of the same name left is taken over)."""
    for ref in (body.get("metadata") or {}).get("ownerReferences") or []:
        if (
            ref.get("kind") == constants.KIND
            and str(ref.get("apiVersion", "")).split("/")[0] == constants.GROUP
            and ref.get("name") == name
        ):
            return True
    return False


def service_manifest(
    namespace: str, name: str, uid: str, ports: Sequence[ServicePort]
) -> dict[str, Any]:
    """The selector-less ClusterIP Service: one port per spec.ports entry, same number."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": _labels(name),
            "ownerReferences": [_owner(name, uid)],
        },
        "spec": {
            "type": "ClusterIP",
            "ports": [
                {"name": p.name, "port": p.port, "protocol": p.protocol.value} for p in ports
            ],
        },
    }


def endpoint_slice_manifest(
    namespace: str,
    name: str,
    uid: str,
    listeners: Sequence[Listener],
    address: str,
    ready: bool,
) -> dict[str, Any]:
    """The Service's EndpointSlice: the operator's address, with each port's listener.

    `ready` says whether any instance takes connections: without one, kube-proxy refuses
    connections at once instead of sending them to a listener that would close them. An
    address the API server refuses as an endpoint (outside a pod) leaves the slice without
    endpoints; the listeners are then reached at status.proxy directly.
    """
    kind = endpoint_address_type(address)
    endpoints: list[dict[str, Any]] = []
    if kind is not None:
        endpoints.append(
            {
                "addresses": [address],
                "conditions": {"ready": ready, "serving": ready, "terminating": False},
            }
        )
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": slice_name(name),
            "namespace": namespace,
            "labels": {
                **_labels(name),
                "kubernetes.io/service-name": name,
                "endpointslice.kubernetes.io/managed-by": SLICE_MANAGER,
            },
            "ownerReferences": [_owner(name, uid)],
        },
        "addressType": kind or "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": x.name, "port": x.listener_port, "protocol": "TCP"} for x in listeners],
    }


def listeners_of(ports: Sequence[ServicePort], listener_ports: Mapping[str, int]) -> list[Listener]:
    """spec.ports joined with the listener serving each (ports without one are left out)."""
    return [
        Listener(p.name, p.port, listener_ports[p.name]) for p in ports if p.name in listener_ports
    ]
