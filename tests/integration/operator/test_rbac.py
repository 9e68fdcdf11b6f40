"""The operator with only the Helm chart's permissions (single-namespace mode) does its job.

The chart is installed into the real API server; the operator then runs authenticated as the
chart's ServiceAccount (a token the test control plane knows), so every API call it makes is
authorised by the chart's Role/ClusterRole alone. It must take a service to Running and delete
it cleanly, and be refused what it must not do.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from golem_operator.devenv.controlplane import ControlPlane
from golem_operator.devenv.stack import LocalNetProcess, OperatorProcess
from support.identities import RBAC_NAMESPACE, RBAC_RELEASE, RBAC_TOKEN
from support.operator_harness import Service, simple_manifest
from unit.chart.chartkit import CHART, run_helm


@pytest.fixture(scope="module")
def team(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> str:
    home = tmp_path_factory.mktemp("helm-home")
    team = f"team-{uuid.uuid4().hex[:6]}"
    control_plane.kubectl_run("create", "namespace", team)
    control_plane.kubectl_run("create", "namespace", RBAC_NAMESPACE)
    run_helm(
        [
            "install",
            RBAC_RELEASE,
            str(CHART),
            "-n",
            RBAC_NAMESPACE,
            "--kubeconfig",
            str(control_plane.kubeconfig),
            "--skip-crds",
            "--set",
            f"operator.watchNamespaces={{{team}}}",
        ],
        home,
    )
    return team


@pytest.fixture(scope="module")
def restricted_operator(
    control_plane: ControlPlane,
    localnet: LocalNetProcess,
    team: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    work = tmp_path_factory.mktemp("rbac-operator")
    kubeconfig = work / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(control_plane.kubeconfig_dict(RBAC_TOKEN, "golem-operator"))
    )
    proc = OperatorProcess(work, kubeconfig, localnet.url, localnet.key_file, namespaces=[team])
    proc.start()
    yield proc
    proc.stop()


def test_operator_with_chart_rbac_runs_and_deletes_a_service(
    control_plane: ControlPlane,
    localnet: LocalNetProcess,
    team: str,
    restricted_operator: OperatorProcess,
) -> None:
    service = Service(control_plane, localnet, team, f"svc-{uuid.uuid4().hex[:6]}")
    # With a VPN and a port: the network, the Service and its EndpointSlice are allowed too.
    service.apply(
        simple_manifest(
            replicas=1,
            network={"cidr": "192.168.90.0/24"},
            ports=[{"name": "http", "port": 8080}],
        )
    )
    service.wait_running(1, 90)
    assert "Started" in service.events_by_reason()  # Events are allowed too
    exposed = [
        ("service", service.name),
        ("endpointslice", f"{service.name}-golem-proxy"),
    ]
    service.wait(
        "the Service and EndpointSlice",
        lambda: all(
            control_plane.kubectl_run("get", kind, name, "-n", team, check=False).returncode == 0
            for kind, name in exposed
        ),
        30,
    )
    service.delete(wait=True, timeout=120)
    service.assert_settled()
    for kind, name in exposed:
        gone = control_plane.kubectl_run("get", kind, name, "-n", team, check=False)
        assert gone.returncode != 0 and "NotFound" in gone.stderr
    log = restricted_operator.log.read_text()
    assert "403" not in log and "Forbidden" not in log, log[-3000:]


def test_chart_identity_is_refused_secrets_elsewhere(
    control_plane: ControlPlane, team: str, tmp_path: Path
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(control_plane.kubeconfig_dict(RBAC_TOKEN, "sa")))
    other = f"other-{uuid.uuid4().hex[:6]}"
    control_plane.kubectl_run("create", "namespace", other)
    control_plane.kubectl_run("create", "secret", "generic", "s", "-n", other, "--from-literal=k=v")
    control_plane.kubectl_run("create", "secret", "generic", "s", "-n", team, "--from-literal=k=v")
    as_sa = ["--kubeconfig", str(kubeconfig)]
    refused = control_plane.kubectl_run(*as_sa, "get", "secret", "s", "-n", other, check=False)
    assert refused.returncode != 0 and "Forbidden" in refused.stderr
    allowed = control_plane.kubectl_run(*as_sa, "get", "secret", "s", "-n", team, check=False)
    assert allowed.returncode == 0, allowed.stderr
    spec_write = control_plane.kubectl_run(*as_sa, "delete", "namespace", team, check=False)
    assert spec_write.returncode != 0 and "Forbidden" in spec_write.stderr
