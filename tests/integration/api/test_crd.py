"""The generated CRD against a real kube-apiserver: install, admission, explain, scale."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from golem_operator.devenv.controlplane import ControlPlane

ROOT = Path(__file__).resolve().parents[3]

VALID: dict[str, Any] = {
    "apiVersion": "services.golem.network/v1alpha1",
    "kind": "GolemService",
    "metadata": {"name": "valid"},
    "spec": {
        "payload": {"image": {"tag": "golem/simple-service:latest"}},
        "budget": "1.5",
        "lifecycle": {
            "run": {"commands": [{"run": {"entrypoint": "/golem/run/simple_service.py"}}]}
        },
        "market": {"maxStartPrice": "0.1"},
    },
}


def with_change(path: str, value: Any) -> dict[str, Any]:
    """VALID with the dotted path set to value (DELETE removes it)."""
    doc = copy.deepcopy(VALID)
    node: Any = doc["spec"]
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
    if value == "DELETE":
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return doc


def with_network(**spec: Any) -> dict[str, Any]:
    """VALID with a VPN (spec.network) and the given top-level spec fields."""
    doc = with_change("network", {"cidr": "192.168.0.0/24"})
    doc["spec"].update(spec)
    return doc


def apply_dry_run(cp: ControlPlane, namespace: str, doc: dict[str, Any]) -> Any:
    return cp.kubectl_run(
        "apply",
        "--server-side",
        "--dry-run=server",
        "--validate=strict",
        "-n",
        namespace,
        "-f",
        "-",
        input=json.dumps(doc),
        check=False,
    )


def test_crd_is_established(control_plane: ControlPlane) -> None:
    out = control_plane.kubectl_run(
        "get", "crd", "golemservices.services.golem.network", "-o", "json"
    )
    conditions = {c["type"]: c["status"] for c in json.loads(out.stdout)["status"]["conditions"]}
    assert conditions["Established"] == "True"
    assert conditions["NamesAccepted"] == "True"


def test_valid_manifest_is_accepted_and_defaulted(
    control_plane: ControlPlane, namespace: str
) -> None:
    result = control_plane.kubectl_run(
        "create",
        "--dry-run=server",
        "-n",
        namespace,
        "-o",
        "json",
        "-f",
        "-",
        input=json.dumps(VALID),
    )
    spec = json.loads(result.stdout)["spec"]
    assert spec["replicas"] == 1
    assert spec["payload"]["minMemGib"] == 0.5
    assert spec["lifecycle"]["run"]["intervalSeconds"] == 10
    assert spec["lifecycle"]["stop"]["timeoutSeconds"] == 60
    assert spec["market"]["payment"] == {"driver": "erc20", "network": "holesky"}
    assert spec["restartPolicy"] == "Always"
    assert spec["updateStrategy"] == {"type": "RollingUpdate"}
    assert (spec["minReadySeconds"], spec["progressDeadlineSeconds"]) == (0, 600)
    assert (spec["paused"], spec["revisionHistoryLimit"]) == (False, 10)


@pytest.mark.parametrize(
    "strategy",
    [
        {"rollingUpdate": {"maxSurge": 2, "maxUnavailable": "50%"}},
        {"rollingUpdate": {"maxSurge": "0%", "maxUnavailable": 1}},
        {"rollingUpdate": {"maxSurge": 0}},  # maxUnavailable defaults to 25%
        {"type": "Recreate"},
    ],
    ids=["counts-and-percent", "no-surge", "surge-0-default-unavailable", "recreate"],
)
def test_update_strategies_are_accepted(
    control_plane: ControlPlane, namespace: str, strategy: dict[str, Any]
) -> None:
    result = apply_dry_run(control_plane, namespace, with_change("updateStrategy", strategy))
    assert result.returncode == 0, result.stderr


def test_a_service_network_is_accepted(control_plane: ControlPlane, namespace: str) -> None:
    for cidr in ("192.168.0.0/24", "10.0.0.0/8", "10.1.2.4/30"):
        result = apply_dry_run(control_plane, namespace, with_change("network", {"cidr": cidr}))
        assert result.returncode == 0, (cidr, result.stderr)


def test_ports_with_a_network_are_accepted_and_default_to_tcp(
    control_plane: ControlPlane, namespace: str
) -> None:
    doc = with_network(ports=[{"name": "http", "port": 80}, {"name": "ssh", "port": 22}])
    result = control_plane.kubectl_run(
        "create",
        "--dry-run=server",
        "-n",
        namespace,
        "-o",
        "json",
        "-f",
        "-",
        input=json.dumps(doc),
    )
    ports = json.loads(result.stdout)["spec"]["ports"]
    assert ports == [
        {"name": "http", "port": 80, "protocol": "TCP"},
        {"name": "ssh", "port": 22, "protocol": "TCP"},
    ]


@pytest.mark.parametrize(
    "image",
    [
        {"tag": "golem/simple-service:latest"},
        {"tag": "golem/simple-service:latest", "registry": "http://127.0.0.1:7465"},
        {"hash": "sha3:" + "a" * 56},
        {"hash": "a" * 56, "url": "https://example.org/image.gvmi"},
    ],
    ids=["tag", "tag-registry", "hash", "hash-url"],
)
def test_the_image_forms_of_the_sdks_are_accepted(
    control_plane: ControlPlane, namespace: str, image: dict[str, str]
) -> None:
    result = apply_dry_run(control_plane, namespace, with_change("payload.image", image))
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_examples_pass_server_side_dry_run(
    control_plane: ControlPlane, namespace: str, path: Path
) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        result = apply_dry_run(control_plane, namespace, doc)
        assert result.returncode == 0, result.stderr


RUN = "lifecycle.run.commands"
INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("no image", with_change("payload.image", {}), "payload.image needs one of tag, hash or url"),
    ("no payload", with_change("payload", "DELETE"), "spec.payload"),
    (
        "tag and hash",
        with_change("payload.image", {"tag": "a/b:c", "hash": "a" * 56}),
        "payload.image.tag and payload.image.hash cannot both be set",
    ),
    (
        "url without hash",
        with_change("payload.image", {"tag": "a/b:c", "url": "https://x/y"}),
        "spec.payload.image.url: Invalid value: payload.image.url needs payload.image.hash",
    ),
    (
        "registry with a direct url",
        with_change(
            "payload.image",
            {"hash": "a" * 56, "url": "https://x/y", "registry": "https://r.example"},
        ),
        "spec.payload.image.registry",
    ),
    (
        "registry not a URL",
        with_change("payload.image", {"tag": "a/b:c", "registry": "registry.golem.network"}),
        "spec.payload.image.registry",
    ),
    ("negative replicas", with_change("replicas", -1), "spec.replicas"),
    ("replicas not a number", with_change("replicas", "three"), "spec.replicas"),
    ("malformed budget", with_change("budget", "1,5"), "spec.budget"),
    ("budget missing", with_change("budget", "DELETE"), "spec.budget"),
    ("malformed price", with_change("market.maxCpuPerHour", "-0.1"), "spec.market.maxCpuPerHour"),
    ("price as number", with_change("market.maxEnvPerHour", 0.1), "spec.market.maxEnvPerHour"),
    (
        "start price above budget",
        with_change("market.maxStartPrice", "2"),
        "spec.market.maxStartPrice",
    ),
    (
        "unknown command",
        with_change(RUN, [{"shell": {"cmd": "ls"}}]),
        "spec.lifecycle.run.commands[0]",
    ),
    (
        "two commands in one",
        with_change(RUN, [{"start": {}, "terminate": {}}]),
        "exactly one of deploy, start, run, upload, download, terminate",
    ),
    (
        "empty entrypoint",
        with_change(RUN, [{"run": {"entrypoint": ""}}]),
        "spec.lifecycle.run.commands[0].run.entrypoint",
    ),
    (
        "relative entrypoint",
        with_change(RUN, [{"run": {"entrypoint": "app.py"}}]),
        "spec.lifecycle.run.commands[0].run.entrypoint",
    ),
    (
        "interval 0",
        with_change("lifecycle.run.intervalSeconds", 0),
        "spec.lifecycle.run.intervalSeconds",
    ),
    (
        "failure threshold 0",
        with_change("lifecycle.run.failureThreshold", 0),
        "spec.lifecycle.run.failureThreshold",
    ),
    (
        "timeout 0",
        with_change("lifecycle.start.timeoutSeconds", 0),
        "spec.lifecycle.start.timeoutSeconds",
    ),
    (
        "deploy not first",
        with_change("lifecycle.start.commands", [{"start": {}}, {"deploy": {}}]),
        "spec.lifecycle.start.commands",
    ),
    (
        "upload with two sources",
        with_change(
            "lifecycle.start.commands",
            [
                {
                    "upload": {
                        "path": "/golem/work/a",
                        "source": {"inline": "x", "secretKeyRef": {"name": "s", "key": "k"}},
                    }
                }
            ],
        ),
        "exactly one of inline, configMapKeyRef or secretKeyRef",
    ),
    (
        "download maxBytes 0",
        with_change(RUN, [{"download": {"path": "/golem/work/a", "maxBytes": 0}}]),
        "spec.lifecycle.run.commands[0].download.maxBytes",
    ),
    ("bad restart policy", with_change("restartPolicy", "Sometimes"), "spec.restartPolicy"),
    (
        "bad agreement duration",
        with_change("agreementDuration", "15 minutes"),
        "spec.agreementDuration",
    ),
    ("agreement too short", with_change("agreementDuration", "0s"), "spec.agreementDuration"),
    (
        "agreement shorter than providers take",
        with_change("agreementDuration", "4m59s"),
        "agreementDuration must be at least 5m",
    ),
    (
        "renewal not before the end",
        with_change("renewBefore", "1h"),  # agreementDuration defaults to 1h
        "renewBefore must be shorter than agreementDuration",
    ),
    ("bad renewBefore", with_change("renewBefore", "soon"), "spec.renewBefore"),
    (
        "surge and unavailable both 0",
        with_change("updateStrategy", {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}}),
        "maxSurge and maxUnavailable cannot both be 0",
    ),
    (
        "surge not a percentage",
        with_change("updateStrategy", {"rollingUpdate": {"maxSurge": "half"}}),
        "spec.updateStrategy.rollingUpdate.maxSurge",
    ),
    (
        "negative unavailable",
        with_change("updateStrategy", {"rollingUpdate": {"maxUnavailable": -1}}),
        "spec.updateStrategy.rollingUpdate.maxUnavailable",
    ),
    (
        "rollingUpdate with Recreate",
        with_change("updateStrategy", {"type": "Recreate", "rollingUpdate": {"maxSurge": 1}}),
        "spec.updateStrategy.rollingUpdate",
    ),
    (
        "bad strategy type",
        with_change("updateStrategy.type", "BlueGreen"),
        "spec.updateStrategy.type",
    ),
    (
        "deadline not after minReady",
        with_change("minReadySeconds", 600),  # progressDeadlineSeconds defaults to 600
        "progressDeadlineSeconds must be greater than minReadySeconds",
    ),
    (
        "negative history",
        with_change("revisionHistoryLimit", -1),
        "spec.revisionHistoryLimit",
    ),
    ("bad runtime", with_change("payload.runtime", "wasm"), "spec.payload.runtime"),
    ("negative memory", with_change("payload.minMemGib", -1), "spec.payload.minMemGib"),
    ("zero cpu threads", with_change("payload.minCpuThreads", 0), "spec.payload.minCpuThreads"),
    (
        "provider allowed and denied",
        with_change("market.providers", {"allow": ["p1"], "deny": ["p1"]}),
        "a provider cannot be both allowed and denied",
    ),
    ("unknown field", with_change("replcas", 2), "replcas"),
    (
        "bad env name",
        with_change(RUN, [{"run": {"entrypoint": "/a", "env": [{"name": "1X"}]}}]),
        "spec.lifecycle.run.commands[0].run.env[0].name",
    ),
    (
        "golemRef without secret",
        with_change("golemRef", {"urlKey": "u"}),
        "spec.golemRef.secretName",
    ),
    (
        "manifest without a source",
        with_change("payload.manifest", {"signatureAlgorithm": "sha256"}),
        "exactly one of inline, configMapKeyRef or secretKeyRef",
    ),
    (
        "manifest signature without algorithm",
        with_change(
            "payload.manifest",
            {
                "configMapKeyRef": {"name": "m", "key": "manifest.json"},
                "signature": {"inline": "AAAA"},
                "certificate": {"inline": "C"},
            },
        ),
        "spec.payload.manifest.signatureAlgorithm: Invalid value: "
        "payload.manifest.signature needs signatureAlgorithm",
    ),
    (
        "manifest signature without certificate",
        with_change(
            "payload.manifest",
            {
                "configMapKeyRef": {"name": "m", "key": "manifest.json"},
                "signature": {"inline": "AAAA"},
                "signatureAlgorithm": "sha256",
            },
        ),
        "spec.payload.manifest.certificate",
    ),
    (
        "manifest signature with two sources",
        with_change(
            "payload.manifest",
            {
                "inline": "{}",
                "signature": {"inline": "AAAA", "configMapKeyRef": {"name": "s", "key": "k"}},
                "signatureAlgorithm": "sha256",
                "certificate": {"inline": "C"},
            },
        ),
        "spec.payload.manifest.signature",
    ),
    (
        "manifest signature algorithm",
        with_change(
            "payload.manifest",
            {
                "inline": "{}",
                "signature": {"inline": "AAAA"},
                "signatureAlgorithm": "SHA 256",
                "certificate": {"inline": "C"},
            },
        ),
        "spec.payload.manifest.signatureAlgorithm",
    ),
    (
        "network cidr with host bits",
        with_change("network", {"cidr": "192.168.0.1/24"}),
        "spec.network.cidr: Invalid value: network.cidr must be an IPv4 network address",
    ),
    (
        "network cidr not IPv4",
        with_change("network", {"cidr": "300.168.0.0/24"}),
        "spec.network.cidr",
    ),
    (
        "network too small for an instance",
        with_change("network", {"cidr": "10.0.0.0/31"}),
        "spec.network.cidr: Invalid value: network.cidr prefix must be /8 to /30",
    ),
    ("network without cidr", with_change("network", {}), "spec.network.cidr"),
    (
        "ports without a network",
        with_change("ports", [{"name": "http", "port": 80}]),
        "spec.ports: Invalid value: spec.ports needs spec.network",
    ),
    (
        "two ports of one name",
        with_network(ports=[{"name": "http", "port": 80}, {"name": "http", "port": 81}]),
        "spec.ports: each port needs a name of its own",
    ),
    (
        "one port number twice",
        with_network(ports=[{"name": "a", "port": 80}, {"name": "b", "port": 80}]),
        "spec.ports: each port number may appear only once",
    ),
    ("port 0", with_network(ports=[{"name": "http", "port": 0}]), "spec.ports[0].port"),
    ("port 65536", with_network(ports=[{"name": "http", "port": 65536}]), "spec.ports[0].port"),
    (
        "a UDP port",
        with_network(ports=[{"name": "dns", "port": 53, "protocol": "UDP"}]),
        'spec.ports[0].protocol: Unsupported value: "UDP"',
    ),
    ("a port without name", with_network(ports=[{"port": 80}]), "spec.ports[0].name"),
    ("a bad port name", with_network(ports=[{"name": "HTTP", "port": 80}]), "spec.ports[0].name"),
]


@pytest.mark.parametrize(("case", "doc", "names"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_manifest_is_rejected_naming_the_field(
    control_plane: ControlPlane, namespace: str, case: str, doc: dict[str, Any], names: str
) -> None:
    result = apply_dry_run(control_plane, namespace, doc)
    assert result.returncode != 0, f"{case}: accepted"
    assert names in result.stderr, result.stderr


def test_kubectl_explain_documents_the_lifecycle(control_plane: ControlPlane) -> None:
    out = control_plane.kubectl_run("explain", "golemservice.spec.lifecycle").stdout
    assert "Scripts of the Starting, Running and Stopping states" in out
    for field in ("start", "run", "stop"):
        assert f"{field}\t" in out or f"  {field}" in out
    deep = control_plane.kubectl_run("explain", "gsvc.spec.lifecycle.run.failureThreshold").stdout
    assert "Consecutive failed runs" in deep


def test_kubectl_scale_changes_spec_replicas(control_plane: ControlPlane, namespace: str) -> None:
    doc = copy.deepcopy(VALID)
    doc["metadata"]["name"] = "scaled"
    control_plane.kubectl_run("apply", "-n", namespace, "-f", "-", input=json.dumps(doc))
    control_plane.kubectl_run("scale", "-n", namespace, "gsvc/scaled", "--replicas=3")
    out = control_plane.kubectl_run("get", "-n", namespace, "gsvc/scaled", "-o", "json")
    assert json.loads(out.stdout)["spec"]["replicas"] == 3
    scale = control_plane.kubectl_run(
        "get",
        "--raw",
        f"/apis/services.golem.network/v1alpha1/namespaces/{namespace}/golemservices/scaled/scale",
    )
    assert json.loads(scale.stdout)["spec"]["replicas"] == 3


def test_printer_columns(control_plane: ControlPlane, namespace: str) -> None:
    doc = copy.deepcopy(VALID)
    doc["metadata"]["name"] = "columns"
    control_plane.kubectl_run("apply", "-n", namespace, "-f", "-", input=json.dumps(doc))
    header = control_plane.kubectl_run("get", "-n", namespace, "gsvc").stdout.splitlines()[0]
    assert header.split() == ["NAME", "DESIRED", "READY", "PHASE", "AGE"]
    wide = control_plane.kubectl_run("get", "-n", namespace, "gsvc", "-o", "wide").stdout
    assert "SPENT" in wide and "BUDGET" in wide and "1.5" in wide
    assert all(column in wide.splitlines()[0] for column in ("UP-TO-DATE", "AVAILABLE", "REVISION"))
