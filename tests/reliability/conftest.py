"""Fixtures of the reliability suite: its own local Golem network behind a daemon gate.

The control plane is the session's (tests/conftest.py). Operators are started per test (they
are killed and restarted on purpose), each watching only its test's namespaces.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from reliability_support import PROVIDERS, DaemonGate

from golem_operator.devenv.controlplane import ControlPlane
from golem_operator.devenv.stack import LocalNetProcess


@pytest.fixture(scope="session")
def rel_net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNetProcess]:
    net = LocalNetProcess(tmp_path_factory.mktemp("rel-localnet"), config=PROVIDERS).start()
    yield net
    net.stop()


@pytest.fixture(scope="session")
def rel_gate(rel_net: LocalNetProcess) -> Iterator[DaemonGate]:
    gate = DaemonGate(rel_net.port).start()
    yield gate
    gate.stop()


@pytest.fixture
def make_namespace(control_plane: ControlPlane) -> Iterator[Callable[[], str]]:
    def make() -> str:
        name = f"r-{uuid.uuid4().hex[:10]}"
        control_plane.kubectl_run("create", "namespace", name)
        return name

    yield make
