"""spec.ports: a Kubernetes Service whose connections reach Running instances over the VPN.

The operator (a process) serves examples/http-service.yaml: its instances join the service's
VPN and each runs an HTTP server in its sandbox. The operator manages the Service and its
EndpointSlice in the API server and listens on loopback (status.proxy); every HTTP request
sent there is answered by a Running instance through the local network's TCP tunnel, also
while one of the two instances is deleted and replaced.
"""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from golem_operator.devenv.stack import OperatorProcess
from support.operator_harness import FAULTY, Service

ROOT = Path(__file__).resolve().parents[3]
PAGE = re.compile(r"^hello from (\S+) \((\d+\.\d+\.\d+\.\d+)\) on Golem$")


def http_manifest(**spec: Any) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "http-service.yaml").read_text())
    doc["spec"]["lifecycle"]["run"]["intervalSeconds"] = 2
    doc["spec"]["market"] = {"providers": {"deny": list(FAULTY)}, "debitNoteIntervalSeconds": 10}
    doc["spec"].update(spec)
    return doc


def kubectl_json(service: Service, *args: str) -> Any:
    out = service.cp.kubectl_run(*args, "-n", service.namespace, "-o", "json", check=False)
    return json.loads(out.stdout) if out.returncode == 0 else None


def listener(service: Service) -> str:
    """The URL of the operator's listener for port http (status.proxy)."""
    proxy = service.wait(
        "status.proxy with the http listener",
        lambda: (p := service.status.get("proxy")) and p.get("ports") and p,
        30,
    )
    (port,) = proxy["ports"]
    assert (port["name"], port["port"]) == ("http", 8080)
    return f"http://{proxy['address']}:{port['listenerPort']}/"


def get_page(url: str) -> str:
    response = httpx.get(url, headers={"Connection": "close"}, timeout=10)
    assert response.status_code == 200, response
    return response.text.strip()


def test_http_through_the_service_reaches_running_instances_also_while_one_is_replaced(
    service: Service, operator: OperatorProcess
) -> None:
    service.apply(http_manifest())
    running = service.wait_running(2, 90)
    url = listener(service)
    service.wait("2 backends", lambda: service.status["proxy"]["backends"] == 2, 15)

    # The Service and its EndpointSlice, owned by the GolemService.
    owner_uid = service.get()["metadata"]["uid"]
    svc = kubectl_json(service, "get", "service", service.name)
    assert svc["spec"]["type"] == "ClusterIP" and "selector" not in svc["spec"]
    assert [(p["name"], p["port"], p["protocol"]) for p in svc["spec"]["ports"]] == [
        ("http", 8080, "TCP")
    ]
    assert svc["spec"]["clusterIP"]  # the API server allocated one
    (ref,) = svc["metadata"]["ownerReferences"]
    assert (ref["kind"], ref["name"], ref["uid"]) == ("GolemService", service.name, owner_uid)
    endpoint_slice = kubectl_json(service, "get", "endpointslice", f"{service.name}-golem-proxy")
    labels = endpoint_slice["metadata"]["labels"]
    assert labels["kubernetes.io/service-name"] == service.name
    listener_port = int(url.rsplit(":", 1)[1].strip("/"))
    assert [(p["name"], p["port"]) for p in endpoint_slice["ports"]] == [("http", listener_port)]
    # The operator runs outside a pod here: its address (loopback) is no endpoint.
    assert endpoint_slice.get("endpoints") in (None, [])

    # Answered from inside the activities: each page names the instance's VPN host and address.
    by_host = {i["hostname"]: i for i in running}
    seen = set()
    for _ in range(8):
        page = PAGE.match(get_page(url))
        assert page is not None
        host, address = page.groups()
        assert by_host[host]["vpnAddress"] == address
        seen.add(host)
    assert seen == set(by_host), f"connections spread over both instances: {seen}"

    # Replacing one instance: requests in a loop go on being answered.
    answers: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    def ask_in_a_loop() -> None:
        while not stop.is_set():
            try:
                answers.append(get_page(url))
            except Exception as error:  # collected, asserted below
                failures.append(repr(error))
            time.sleep(0.05)

    asker = threading.Thread(target=ask_in_a_loop, daemon=True)
    asker.start()
    try:
        victim = running[0]
        service.cp.kubectl_run(
            "delete", "gsi", "-n", service.namespace, victim["name"], "--wait=false"
        )
        service.wait(
            "a replacement Running",
            lambda: (
                len(r := service.instances("Running")) == 2
                and victim["name"] not in {i["name"] for i in r}
            ),
            90,
        )
        service.wait("2 backends again", lambda: service.status["proxy"]["backends"] == 2, 15)
        time.sleep(2)
    finally:
        stop.set()
        asker.join(15)
    assert not failures, failures[:5]
    assert len(answers) > 20, len(answers)
    now_running = {i["hostname"]: i for i in service.instances("Running")}
    recent = {PAGE.match(a).groups()[0] for a in answers[-10:]}  # type: ignore[union-attr]
    assert recent <= set(now_running), (recent, set(now_running))

    metrics = operator.metrics()
    labels = f'namespace="{service.namespace}",port="http",service="{service.name}"'
    opened = re.search(rf"golem_operator_proxy_connections_total\{{{labels}\}} (\S+)", metrics)
    assert opened is not None and float(opened.group(1)) >= 8 + len(answers)
    received = re.search(
        rf'golem_operator_proxy_bytes_total\{{direction="out",{labels}\}} (\S+)', metrics
    )
    assert received is not None and float(received.group(1)) > 0

    # Deleting the service removes the Service and its EndpointSlice, and the listener.
    service.delete(wait=True, timeout=120)
    assert kubectl_json(service, "get", "service", service.name) is None
    assert kubectl_json(service, "get", "endpointslice", f"{service.name}-golem-proxy") is None
    try:
        httpx.get(url, timeout=5)
    except httpx.TransportError:
        pass
    else:
        raise AssertionError("the listener still answers after the service was deleted")


def test_a_service_name_taken_by_another_service_is_left_alone_and_reported(
    service: Service,
) -> None:
    foreign = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": service.name},
        "spec": {"ports": [{"name": "web", "port": 80}]},
    }
    service.cp.kubectl_run("create", "-n", service.namespace, "-f", "-", input=json.dumps(foreign))
    service.apply(http_manifest(replicas=0))
    degraded = service.wait(
        "Degraded PortsNotServed",
        lambda: (c := service.condition("Degraded")).get("reason") == "PortsNotServed" and c,
        30,
    )
    assert f"a Service {service.name} exists" in degraded["message"]
    svc = kubectl_json(service, "get", "service", service.name)
    assert [p["name"] for p in svc["spec"]["ports"]] == ["web"]
    assert not svc["metadata"].get("ownerReferences")

    # Ports removed: nothing to serve, nothing reported; the foreign Service stays.
    service.apply(http_manifest(replicas=0, ports=[]))
    service.wait(
        "Degraded cleared",
        lambda: (
            service.condition("Degraded").get("status") == "False" and "proxy" not in service.status
        ),
        30,
    )
    assert kubectl_json(service, "get", "service", service.name) is not None
