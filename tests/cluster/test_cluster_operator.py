"""The operator as its users run it: the Dockerfile's image, installed with Helm, as a pod.

The chart is installed in external mode against the local Golem network on the host (reached
from the pod through the relay on the cluster's bridge; its activities run in bubblewrap
sandboxes, which need namespaces a pod would have to be privileged for). The operator in the
pod takes examples/simple-service.yaml to Running, scales it and deletes it, and every agreement
ends terminated and paid; a pod reaches examples/http-service.yaml through its Kubernetes
Service (kube-proxy, the operator's EndpointSlice and listener, the VPN tunnel). The pod's
probes, securityContext and RBAC are the real ones.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from cluster.clusterkit import (
    CHART,
    create_namespace,
    exec_in,
    helm_values,
    operator_pods,
    ready_pod,
    wait_for,
)
from golem_operator.devenv.cluster import NODE_NAME, POD_CIDR, Cluster
from golem_operator.devenv.stack import LocalNetProcess
from support.operator_harness import ROOT, Service, simple_manifest

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(1200)]

RELEASE = "ext"
RELEASE_NS = "golem-ext"
WATCHED_NS = "svc-ext"

# Runs in a pod: what the pod's network and storage look like from inside.
PROBE_POD_SCRIPT = r"""
import json, os, socket
routes = []
with open("/proc/net/route") as table:
    for line in table.readlines()[1:]:
        fields = line.split()
        routes.append(fields[1])
resolved = socket.gethostbyname("kubernetes.default.svc.cluster.local")
with socket.create_connection((resolved, 443), timeout=5):
    pass
with open("/data/written", "w") as out:
    out.write("ok")
print(json.dumps({"routes": routes, "resolved": resolved, "uid": os.getuid(),
                  "data_gid": os.stat("/data").st_gid}))
"""


def test_node_runs_pods_on_a_confined_network_with_dns_and_volumes(cluster: Cluster) -> None:
    nodes = json.loads(cluster.kubectl_run("get", "nodes", "-o", "json").stdout)["items"]
    assert [n["metadata"]["name"] for n in nodes] == [NODE_NAME]
    info = nodes[0]["status"]["nodeInfo"]
    assert info["kubeletVersion"] == "v1.36.3"
    assert info["containerRuntimeVersion"].startswith("containerd://")
    create_namespace(cluster, "probe")
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "probe-data", "namespace": "probe"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "16Mi"}}},
    }
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "probe", "namespace": "probe"},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {"runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000},
            "containers": [
                {
                    "name": "probe",
                    "image": cluster.python_image,
                    "imagePullPolicy": "Never",
                    "command": ["python3", "-c", PROBE_POD_SCRIPT],
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                }
            ],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "probe-data"}}],
        },
    }
    cluster.kubectl_run(
        "apply",
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [claim, pod]}),
    )

    def finished() -> str | None:
        phase = cluster.kubectl_run(
            "get", "pod", "-n", "probe", "probe", "-o", "jsonpath={.status.phase}"
        ).stdout
        return phase if phase in ("Succeeded", "Failed") else None

    phase = wait_for("the probe pod to finish", finished, 180, 1)
    logs = cluster.kubectl_run("logs", "-n", "probe", "probe").stdout
    assert phase == "Succeeded", logs
    seen = json.loads(logs.strip().splitlines()[-1])
    # No default route (destination 00000000): nothing a pod sends leaves the machine.
    assert "00000000" not in seen["routes"], seen
    assert seen["resolved"] == "10.96.0.1"  # CoreDNS answered for the kubernetes Service
    assert seen["uid"] == 1000 and seen["data_gid"] == 1000  # the volume honours fsGroup
    pod_ip = cluster.kubectl_run(
        "get", "pod", "-n", "probe", "probe", "-o", "jsonpath={.status.podIP}"
    ).stdout
    assert pod_ip.startswith(POD_CIDR.split(".0.0/")[0] + "."), pod_ip
    phase_of_claim = cluster.kubectl_run(
        "get", "pvc", "-n", "probe", "probe-data", "-o", "jsonpath={.status.phase}"
    ).stdout
    assert phase_of_claim == "Bound"
    cluster.kubectl_run("delete", "namespace", "probe", "--wait=true", "--timeout=120s")


@pytest.fixture(scope="module")
def release(
    cluster: Cluster,
    localnet: tuple[LocalNetProcess, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Any]]:
    """The chart in external mode, watching WATCHED_NS, against the local network."""
    net, url = localnet
    for name in (RELEASE_NS, WATCHED_NS):
        create_namespace(cluster, name)
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "localnet-appkey", "namespace": RELEASE_NS},
        "stringData": {"appkey": net.app_key},
    }
    cluster.kubectl_run("apply", "-f", "-", input=json.dumps(secret))
    values = helm_values(
        cluster,
        tmp_path_factory.mktemp("helm"),
        {
            "yagna": {
                "mode": "external",
                "external": {"url": url, "appKeySecret": {"name": "localnet-appkey"}},
            },
            "operator": {
                "watchNamespaces": [WATCHED_NS],
                # Image tags resolve through the local network's registry endpoint.
                "extraEnv": [{"name": "GOLEM_OPERATOR_IMAGE_REGISTRY", "value": url}],
            },
        },
    )
    started = time.monotonic()
    cluster.helm_run("install", RELEASE, str(CHART), "-n", RELEASE_NS, "-f", str(values))
    pod = ready_pod(cluster, RELEASE_NS)
    print(f"\n[cluster] operator pod Ready {time.monotonic() - started:.0f}s after helm install")
    yield {"values": values, "pod": pod}
    cluster.helm_run("uninstall", RELEASE, "-n", RELEASE_NS, "--wait", check=False)


def test_operator_pod_is_the_dockerfile_image_ready_and_confined(
    cluster: Cluster, release: dict[str, Any]
) -> None:
    pod = ready_pod(cluster, RELEASE_NS)
    name = pod["metadata"]["name"]
    repository, tag = cluster.operator_image()
    (container,) = pod["spec"]["containers"]
    assert container["image"] == f"{repository}:{tag}"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    statuses = {s["name"]: s for s in pod["status"]["containerStatuses"]}
    assert statuses["operator"]["ready"] and statuses["operator"]["restartCount"] == 0
    # The securityContext is enforced by the runtime, not just written down.
    assert exec_in(cluster, RELEASE_NS, name, "id", "-u").stdout.strip() == "65532"
    written = exec_in(cluster, RELEASE_NS, name, "touch", "/opt/x", check=False)
    assert written.returncode != 0 and "Read-only file system" in written.stderr
    status = exec_in(cluster, RELEASE_NS, name, "cat", "/proc/1/status").stdout
    assert re.search(r"^CapEff:\s+0+$", status, re.M), status
    assert re.search(r"^NoNewPrivs:\s+1$", status, re.M), status
    assert re.search(r"^Seccomp:\s+2$", status, re.M), status


# Runs in the operator's container with its mounted ServiceAccount token.
RBAC_SCRIPT = r"""
import json, os, ssl, urllib.error, urllib.request
sa = "/var/run/secrets/kubernetes.io/serviceaccount"
token = open(sa + "/token").read()
ctx = ssl.create_default_context(cafile=sa + "/ca.crt")
host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
base = f"https://{host}:{port}"
out = {}
for name, path in json.loads(os.environ["PATHS"]).items():
    request = urllib.request.Request(base + path, headers={"Authorization": "Bearer " + token})
    try:
        with urllib.request.urlopen(request, context=ctx, timeout=10) as response:
            out[name] = response.status
    except urllib.error.HTTPError as error:
        out[name] = error.code
print(json.dumps(out))
"""


def test_operator_rbac_with_its_service_account_token(
    cluster: Cluster, release: dict[str, Any]
) -> None:
    pod = ready_pod(cluster, RELEASE_NS)["metadata"]["name"]
    group = "/apis/services.golem.network/v1alpha1/namespaces"
    paths = {
        "golemservices": f"{group}/{WATCHED_NS}/golemservices",
        "secret_list": f"/api/v1/namespaces/{WATCHED_NS}/secrets",
        "pods": f"/api/v1/namespaces/{WATCHED_NS}/pods",
        "other_namespace": f"{group}/{RELEASE_NS}/golemservices",
    }
    result = exec_in(
        cluster, RELEASE_NS, pod, "env", f"PATHS={json.dumps(paths)}", "python3", "-c", RBAC_SCRIPT
    )
    assert json.loads(result.stdout) == {
        "golemservices": 200,
        "secret_list": 403,
        "pods": 403,
        "other_namespace": 403,
    }


def test_simple_service_runs_scales_deletes_and_settles(
    cluster: Cluster, localnet: tuple[LocalNetProcess, str], release: dict[str, Any]
) -> None:
    net, _ = localnet
    service = Service(cluster, net, WATCHED_NS, "simple-service")  # type: ignore[arg-type]
    service.apply(simple_manifest())
    service.wait_running(2, timeout=240)
    service.apply(simple_manifest(replicas=3))
    service.wait_running(3, timeout=180)
    service.apply(simple_manifest(replicas=1))
    service.wait_running(1, timeout=180)

    def scaled_down() -> bool:
        rest = [i for i in service.instances() if i["state"] != "Running"]
        done = all(i["state"] == "Terminated" and i["settled"] for i in rest)
        return len(rest) >= 2 and done and len(service.instances("Running")) == 1

    service.wait("two instances terminated and settled", scaled_down, 180)
    service.delete(timeout=240)
    service.assert_settled()
    assert len(service.seen_agreements) >= 3


def test_helm_upgrade_keeps_crds_and_running_instances(
    cluster: Cluster, localnet: tuple[LocalNetProcess, str], release: dict[str, Any]
) -> None:
    net, _ = localnet
    service = Service(cluster, net, WATCHED_NS, "kept")  # type: ignore[arg-type]
    service.apply(simple_manifest(replicas=1))
    (before,) = service.wait_running(1, timeout=240)
    old_pod = ready_pod(cluster, RELEASE_NS)["metadata"]["name"]
    cluster.helm_run(
        "upgrade", RELEASE, str(CHART), "-n", RELEASE_NS, "-f", str(release["values"]),
        "--set", "operator.logLevel=DEBUG",
    )  # fmt: skip
    wait_for(
        "the upgraded operator pod",
        lambda: ready_pod(cluster, RELEASE_NS)["metadata"]["name"] != old_pod,
        300,
        2,
    )
    assert cluster.kubectl_run("get", "crd", "golemservices.services.golem.network").returncode == 0
    # The new operator adopts the instance: the same agreement keeps running for a while.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        running = service.instances("Running")
        assert [i["agreementId"] for i in running] == [before["agreementId"]], running
        time.sleep(3)
    service.delete(timeout=240)
    service.assert_settled()


def test_logs_exec_and_port_forward_reach_the_operator(
    cluster: Cluster, release: dict[str, Any]
) -> None:
    pod = ready_pod(cluster, RELEASE_NS)["metadata"]["name"]
    logs = cluster.kubectl_run("logs", "-n", RELEASE_NS, pod, "-c", "operator").stdout
    # The upgraded pod adopted the `kept` service: it connected to the local network.
    assert "connected to Golem daemon http://10.88.0.1:" in logs, logs[-3000:]
    echoed = exec_in(cluster, RELEASE_NS, pod, "cat", input="through stdin\n")
    assert echoed.stdout == "through stdin\n"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    forward = subprocess.Popen(
        [
            str(cluster.kubectl), f"--kubeconfig={cluster.kubeconfig}", "port-forward", "-n",
            RELEASE_NS, f"pod/{pod}", f"{port}:9090", "--address=127.0.0.1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:

        def metrics() -> str | None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    return r.read().decode()
            except OSError:
                return None

        body = wait_for("metrics through port-forward", metrics, 60, 1)
        # The operator's own registry: the services it reconciled in this pod's life.
        assert 'golem_operator_reconciles_total{namespace="svc-ext",service="kept"}' in body
    finally:
        forward.terminate()
        forward.wait(timeout=10)


# Runs in a client pod: fetches the URL (argument 1) until six pages came, or a minute passed.
CLIENT_SCRIPT = r"""
import json, sys, time, urllib.request
pages, errors = [], []
deadline = time.time() + 60
while len(pages) < 6 and time.time() < deadline:
    try:
        with urllib.request.urlopen(sys.argv[1], timeout=5) as response:
            pages.append(response.read().decode().strip())
    except OSError as error:
        errors.append(repr(error))
        time.sleep(1)
print(json.dumps({"pages": pages, "errors": errors[-3:]}))
"""
PAGE = re.compile(r"^hello from (\S+) \((\d+\.\d+\.\d+\.\d+)\) on Golem$")


def test_http_service_is_reached_from_a_pod_through_its_kubernetes_service(
    cluster: Cluster, localnet: tuple[LocalNetProcess, str], release: dict[str, Any]
) -> None:
    """kube-proxy sends the Service's ClusterIP to the operator pod's listener (the
    EndpointSlice the operator wrote), which carries it into a Golem activity."""
    net, _ = localnet
    manifest = yaml.safe_load((ROOT / "examples" / "http-service.yaml").read_text())
    service = Service(cluster, net, WATCHED_NS, manifest["metadata"]["name"])  # type: ignore[arg-type]
    service.apply(manifest)
    running = service.wait_running(2, timeout=240)
    operator_ip = ready_pod(cluster, RELEASE_NS)["status"]["podIP"]

    def endpoint_ready() -> dict[str, Any] | None:
        found = json.loads(
            cluster.kubectl_run(
                "get", "endpointslice", "-n", WATCHED_NS, "http-service-golem-proxy", "-o", "json"
            ).stdout
        )
        endpoints = found.get("endpoints") or []
        ready = endpoints and endpoints[0]["conditions"]["ready"]
        return found if ready else None

    endpoint_slice = wait_for("the EndpointSlice ready", endpoint_ready, 60, 1)
    assert endpoint_slice["endpoints"][0]["addresses"] == [operator_ip]
    (port,) = service.status["proxy"]["ports"]
    assert endpoint_slice["ports"] == [
        {"name": "http", "port": port["listenerPort"], "protocol": "TCP"}
    ]
    client = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "http-client", "namespace": WATCHED_NS},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {"runAsUser": 1000, "runAsGroup": 1000},
            "containers": [
                {
                    "name": "client",
                    "image": cluster.python_image,
                    "imagePullPolicy": "Never",
                    "command": [
                        "python3",
                        "-c",
                        CLIENT_SCRIPT,
                        f"http://http-service.{WATCHED_NS}.svc.cluster.local:8080/",
                    ],
                }
            ],
        },
    }
    cluster.kubectl_run("apply", "-f", "-", input=json.dumps(client))

    def finished() -> str | None:
        phase = cluster.kubectl_run(
            "get", "pod", "-n", WATCHED_NS, "http-client", "-o", "jsonpath={.status.phase}"
        ).stdout
        return phase if phase in ("Succeeded", "Failed") else None

    assert wait_for("the client pod to finish", finished, 180, 1) == "Succeeded"
    result = json.loads(
        cluster.kubectl_run("logs", "-n", WATCHED_NS, "http-client").stdout.strip().splitlines()[-1]
    )
    assert len(result["pages"]) == 6, result
    hosts = {i["hostname"]: i["vpnAddress"] for i in running}
    for page in result["pages"]:
        matched = PAGE.match(page)
        assert matched is not None, page
        assert hosts[matched.group(1)] == matched.group(2), (page, hosts)
    cluster.kubectl_run("delete", "pod", "-n", WATCHED_NS, "http-client", "--wait=false")
    service.delete(timeout=240)
    service.assert_settled()
    gone = cluster.kubectl_run("get", "service", "-n", WATCHED_NS, "http-service", check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr


def test_z_helm_uninstall_leaves_no_workload(cluster: Cluster, release: dict[str, Any]) -> None:
    cluster.helm_run("uninstall", RELEASE, "-n", RELEASE_NS, "--wait", "--timeout", "180s")
    wait_for("operator pods gone", lambda: not operator_pods(cluster, RELEASE_NS), 180, 2)
    left = cluster.kubectl_run(
        "get", "deploy,rs,pods,svc,sa,role,rolebinding,secret", "-n", RELEASE_NS, "-o", "name"
    ).stdout.split()
    # Only what the test made itself (the app key Secret) and the namespace's own defaults.
    assert sorted(left) == ["secret/localnet-appkey", "serviceaccount/default"], left
    cluster_wide = cluster.kubectl_run(
        "get", "clusterrole,clusterrolebinding", "-o", "name"
    ).stdout.split()
    assert not [n for n in cluster_wide if "golem" in n], cluster_wide
    # CRDs live in the chart's crds/: Helm keeps them (and so every GolemService).
    assert cluster.kubectl_run("get", "crd", "golemservices.services.golem.network").returncode == 0
