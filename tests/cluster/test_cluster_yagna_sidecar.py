"""The chart's default mode: real yagna in the operator's pod, offline.

yagna starts in the native sidecar, creates its app key and hands it over on the in-memory
volume; the operator connects with it. The node's network and relay are kept on the pod's
loopback (nothing on this machine serves Golem's relay), and the chain RPC is a stand-in inside
the cluster (golem_operator.realnet.fakechain, run from the project image as a pod behind a
Service, found by its DNS name), so the payment driver sees funds: the operator's allocation is
made and its demand published. That is as far as real yagna goes offline: with no relay and no
providers no offer arrives.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from cluster.clusterkit import CHART, create_namespace, helm_values, ready_pod, wait_for
from golem_operator.devenv.cluster import Cluster
from golem_operator.devenv.stack import LocalNetProcess
from support.operator_harness import simple_manifest

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(1200)]

RELEASE = "sidecar"
RELEASE_NS = "golem-sidecar"
WATCHED_NS = "svc-sidecar"
ROOT = Path(__file__).resolve().parents[2]
# The stand-in chain is part of the package, so the project's image runs it as it is.
FAKECHAIN_MAIN = (
    "from golem_operator.realnet.fakechain import FakeChain, make_app; from aiohttp import web; "
    "web.run_app(make_app(FakeChain()), host='0.0.0.0', port=8545, print=None)"
)
CHAIN_URL = f"http://fake-chain.{RELEASE_NS}.svc.cluster.local:8545"
# The documented offline values (relay and node network on the pod's loopback), plus every chain
# yagna knows pointed at the stand-in.
OFFLINE_VALUES = ROOT / "examples" / "cluster" / "offline-values.yaml"
CHAINS = (
    "MAINNET", "GOERLI", "HOLESKY", "MUMBAI", "POLYGON", "AMOY", "SEPOLIA", "HOODI", "RINKEBY",
)  # fmt: skip
CHAIN_ENV = [
    *({"name": f"{chain}_GETH_ADDR", "value": CHAIN_URL} for chain in CHAINS),
    *(
        {"name": f"{chain}_WRAPPER_CONTRACT_ADDRESS", "value": "0x" + "00" * 20}
        for chain in ("HOLESKY", "HOODI", "POLYGON", "AMOY")
    ),
]


def fake_chain(cluster: Cluster) -> list[dict[str, Any]]:
    labels = {"app": "fake-chain"}
    repository, tag = cluster.operator_image()
    return [
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "fake-chain", "namespace": RELEASE_NS, "labels": labels},
            "spec": {
                "containers": [
                    {
                        "name": "chain",
                        "image": f"{repository}:{tag}",
                        "imagePullPolicy": "Never",
                        "command": ["python3", "-c", FAKECHAIN_MAIN],
                        "readinessProbe": {"tcpSocket": {"port": 8545}, "periodSeconds": 1},
                    }
                ],
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "fake-chain", "namespace": RELEASE_NS},
            "spec": {"selector": labels, "ports": [{"port": 8545, "targetPort": 8545}]},
        },
    ]


@pytest.fixture(scope="module")
def sidecar_release(
    cluster: Cluster,
    localnet: tuple[LocalNetProcess, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Any]]:
    """The chart in sidecar mode; only image tags resolve through the local network."""
    _, registry = localnet
    for name in (RELEASE_NS, WATCHED_NS):
        create_namespace(cluster, name)
    manifests = {"apiVersion": "v1", "kind": "List", "items": fake_chain(cluster)}
    cluster.kubectl_run("apply", "-f", "-", input=json.dumps(manifests))
    cluster.kubectl_run(
        "wait", "-n", RELEASE_NS, "--for=condition=Ready", "pod/fake-chain", "--timeout=120s",
        timeout=150,
    )  # fmt: skip
    offline_env = yaml.safe_load(OFFLINE_VALUES.read_text())["yagna"]["sidecar"]["extraEnv"]
    values = helm_values(
        cluster,
        tmp_path_factory.mktemp("helm-sidecar"),
        {
            "operator": {
                "watchNamespaces": [WATCHED_NS],
                "extraEnv": [{"name": "GOLEM_OPERATOR_IMAGE_REGISTRY", "value": registry}],
            },
            "yagna": {"mode": "sidecar", "sidecar": {"extraEnv": offline_env + CHAIN_ENV}},
        },
    )
    cluster.helm_run("install", RELEASE, str(CHART), "-n", RELEASE_NS, "-f", str(values))
    pod = ready_pod(cluster, RELEASE_NS, timeout=300)
    yield pod
    cluster.helm_run("uninstall", RELEASE, "-n", RELEASE_NS, "--wait", check=False)


# Runs in the operator's container: GET /me on the sidecar's API with the handed-over key and
# with a wrong one; prints only the status codes.
ME_SCRIPT = r"""
import json, os, urllib.error, urllib.request
def me(token):
    request = urllib.request.Request(os.environ["GOLEM_URL"] + "/me",
                                     headers={"Authorization": "Bearer " + token})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
key = open(os.environ["GOLEM_APPKEY_FILE"]).read().strip()
print(json.dumps({"key_shape": len(key) == 32 and all(c in "0123456789abcdef" for c in key),
                  "with_key": me(key), "wrong_key": me("0" * 32)}))
"""


# Runs in the operator's container: GET each of PATHS on the sidecar's API with the key.
GET_SCRIPT = r"""
import json, os, urllib.request
key = open(os.environ["GOLEM_APPKEY_FILE"]).read().strip()
out = []
for path in json.loads(os.environ["PATHS"]):
    request = urllib.request.Request(os.environ["GOLEM_URL"] + path,
                                     headers={"Authorization": "Bearer " + key})
    with urllib.request.urlopen(request, timeout=10) as response:
        out.append(json.load(response))
print(json.dumps(out))
"""


def test_sidecar_yagna_hands_its_key_to_the_operator(
    cluster: Cluster, sidecar_release: dict[str, Any]
) -> None:
    pod = sidecar_release["metadata"]["name"]
    statuses = {s["name"]: s for s in sidecar_release["status"]["initContainerStatuses"]}
    assert statuses["yagna"]["ready"] and statuses["yagna"]["started"]
    sidecar_log = cluster.kubectl_run("logs", "-n", RELEASE_NS, pod, "-c", "yagna").stdout
    assert "created app key 'golem-operator'" in sidecar_log, sidecar_log[-3000:]
    seen = cluster.kubectl_run(
        "exec", "-n", RELEASE_NS, pod, "-c", "operator", "--", "python3", "-c", ME_SCRIPT
    ).stdout
    assert json.loads(seen) == {"key_shape": True, "with_key": 200, "wrong_key": 401}
    # yagna's data directory is on the PVC the cluster's provisioner bound.
    claim = cluster.kubectl_run(
        "get", "pvc", "-n", RELEASE_NS, "-o", "jsonpath={.items[0].status.phase}"
    ).stdout
    assert claim == "Bound"


def test_sidecar_yagna_allocates_and_publishes_a_demand(
    cluster: Cluster, sidecar_release: dict[str, Any]
) -> None:
    pod = sidecar_release["metadata"]["name"]
    manifest = simple_manifest(replicas=1)
    manifest["metadata"] = {"name": "offline"}
    cluster.kubectl_run("apply", "-n", WATCHED_NS, "-f", "-", input=json.dumps(manifest))

    def status() -> dict[str, Any] | None:
        out = cluster.kubectl_run("get", "gsvc", "-n", WATCHED_NS, "offline", "-o", "json")
        found: dict[str, Any] = json.loads(out.stdout).get("status", {})
        return found if found.get("allocationId") and found.get("demandId") else None

    try:
        found = wait_for("an allocation and a published demand", status, 240, 3)
    except AssertionError:
        log = cluster.kubectl_run("logs", "-n", RELEASE_NS, pod, "-c", "operator").stdout
        raise AssertionError(f"operator log:\n{log[-4000:]}") from None
    assert found["allocationId"] and found["demandId"]
    operator_log = cluster.kubectl_run("logs", "-n", RELEASE_NS, pod, "-c", "operator").stdout
    identity = cluster.kubectl_run(
        "exec", "-n", RELEASE_NS, pod, "-c", "yagna", "--", "yagna", "--json", "id", "show"
    ).stdout
    address = json.loads(identity)["Ok"]["nodeId"]
    assert f"connected to Golem daemon http://127.0.0.1:7465 as {address}" in operator_log
    # The allocation and the demand are yagna's own (on the stand-in chain's funds).
    paths = [f"/payment-api/v1/allocations/{found['allocationId']}", "/market-api/v1/demands"]
    seen = cluster.kubectl_run(
        "exec", "-n", RELEASE_NS, pod, "-c", "operator", "--",
        "env", f"PATHS={json.dumps(paths)}", "python3", "-c", GET_SCRIPT,
    ).stdout  # fmt: skip
    allocation, demands = json.loads(seen)
    assert allocation["allocationId"] == found["allocationId"], allocation
    assert found["demandId"] in [d["demandId"] for d in demands], demands
    # The key never reaches either container's log.
    sidecar_log = cluster.kubectl_run("logs", "-n", RELEASE_NS, pod, "-c", "yagna").stdout
    key = cluster.kubectl_run(
        "exec", "-n", RELEASE_NS, pod, "-c", "operator", "--",
        "cat", "/var/run/golem-operator/appkey",
    ).stdout.strip()  # fmt: skip
    assert key and key not in sidecar_log and key not in operator_log
    cluster.kubectl_run(
        "delete", "gsvc", "-n", WATCHED_NS, "offline", "--timeout=180s", timeout=200
    )
