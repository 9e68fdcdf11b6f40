"""The operator under test: a local Golem network and `golem-operator run` as processes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from golem_operator.devenv.controlplane import ControlPlane
from golem_operator.devenv.stack import LocalNetProcess, OperatorProcess
from support.operator_harness import Service

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="package")
def localnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNetProcess]:
    work = tmp_path_factory.mktemp("localnet")
    net = LocalNetProcess(work, config=HERE / "providers.yaml").start()
    yield net
    net.stop()


@pytest.fixture(scope="package")
def operator(
    control_plane: ControlPlane, localnet: LocalNetProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    work = tmp_path_factory.mktemp("operator")
    # Only the namespaces these tests create (op-*): other suites run operators of their own,
    # and GolemServices left by the API tests elsewhere must not rent this network's providers.
    proc = OperatorProcess(
        work, control_plane.kubeconfig, localnet.url, localnet.key_file, namespaces=["op-*"]
    ).start()
    yield proc
    proc.stop()
    print(proc.log.read_text()[-5000:])


@pytest.fixture
def namespace(control_plane: ControlPlane) -> str:
    """A fresh namespace that this package's operator watches (op-*)."""
    name = f"op-{uuid.uuid4().hex[:10]}"
    control_plane.kubectl_run("create", "namespace", name)
    return name


@pytest.fixture
def service(
    control_plane: ControlPlane,
    localnet: LocalNetProcess,
    operator: OperatorProcess,
    namespace: str,
) -> Iterator[Service]:
    svc = Service(control_plane, localnet, namespace, f"svc-{uuid.uuid4().hex[:6]}")
    yield svc
    svc.delete(wait=False)  # the operator settles it in the background


@pytest.fixture
def other_service(
    control_plane: ControlPlane, localnet: LocalNetProcess, operator: OperatorProcess
) -> Iterator[Service]:
    """A second service, in a namespace of its own."""
    namespace = f"op-{uuid.uuid4().hex[:10]}"
    control_plane.kubectl_run("create", "namespace", namespace)
    svc = Service(control_plane, localnet, namespace, f"svc-{uuid.uuid4().hex[:6]}")
    yield svc
    svc.delete(wait=False)
