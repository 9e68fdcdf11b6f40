"""core.exposure: the Service and EndpointSlice that serve spec.ports."""

from __future__ import annotations

import pytest

from golem_operator.api.spec import ServicePort
from golem_operator.core.exposure import (
    SLICE_MANAGER,
    Listener,
    endpoint_address_type,
    endpoint_slice_manifest,
    listeners_of,
    owned_by_service,
    service_manifest,
    service_name_problem,
    slice_name,
)

UID = "0c5f6a0e-0000-4000-8000-000000000001"
PORTS = [ServicePort(name="http", port=80), ServicePort(name="metrics", port=9100)]


def test_the_service_is_selectorless_owned_and_offers_each_port() -> None:
    body = service_manifest("team", "web", UID, PORTS)
    assert body["kind"] == "Service" and body["metadata"]["name"] == "web"
    assert "selector" not in body["spec"] and body["spec"]["type"] == "ClusterIP"
    assert body["spec"]["ports"] == [
        {"name": "http", "port": 80, "protocol": "TCP"},
        {"name": "metrics", "port": 9100, "protocol": "TCP"},
    ]
    (owner,) = body["metadata"]["ownerReferences"]
    assert owner["kind"] == "GolemService" and owner["uid"] == UID and owner["controller"]
    assert owned_by_service(body, "web")
    assert not owned_by_service(body, "other")
    assert not owned_by_service({"metadata": {}}, "web")


def test_the_slice_names_the_operator_and_each_listener() -> None:
    listeners = [Listener("http", 80, 41000), Listener("metrics", 9100, 41001)]
    body = endpoint_slice_manifest("team", "web", UID, listeners, "10.244.0.7", ready=True)
    assert body["metadata"]["name"] == slice_name("web") == "web-golem-proxy"
    labels = body["metadata"]["labels"]
    assert labels["kubernetes.io/service-name"] == "web"
    assert labels["endpointslice.kubernetes.io/managed-by"] == SLICE_MANAGER
    assert body["addressType"] == "IPv4"
    assert body["endpoints"] == [
        {
            "addresses": ["10.244.0.7"],
            "conditions": {"ready": True, "serving": True, "terminating": False},
        }
    ]
    assert body["ports"] == [
        {"name": "http", "port": 41000, "protocol": "TCP"},
        {"name": "metrics", "port": 41001, "protocol": "TCP"},
    ]
    assert owned_by_service(body, "web")


def test_no_instance_to_take_connections_makes_the_endpoint_not_ready() -> None:
    body = endpoint_slice_manifest("t", "web", UID, [Listener("http", 80, 1)], "fd00::7", False)
    assert body["addressType"] == "IPv6"
    assert body["endpoints"][0]["conditions"]["ready"] is False


@pytest.mark.parametrize("address", ["127.0.0.1", "127.3.0.1", "::1", "0.0.0.0", "169.254.1.1"])
def test_an_address_the_api_server_refuses_leaves_the_slice_without_endpoints(
    address: str,
) -> None:
    assert endpoint_address_type(address) is None
    body = endpoint_slice_manifest("t", "web", UID, [Listener("http", 80, 1)], address, True)
    assert body["endpoints"] == [] and body["ports"][0]["port"] == 1


@pytest.mark.parametrize("name", ["web", "a", "web-2", "x" * 63])
def test_names_a_service_can_take(name: str) -> None:
    assert service_name_problem(name) is None


@pytest.mark.parametrize("name", ["2web", "web.example", "x" * 64, "web-"])
def test_names_a_service_cannot_take_are_reported_naming_the_field(name: str) -> None:
    problem = service_name_problem(name)
    assert problem is not None and problem.startswith("spec.ports:") and name in problem


def test_listeners_join_ports_and_listener_ports() -> None:
    assert listeners_of(PORTS, {"http": 5000}) == [Listener("http", 80, 5000)]
