"""The private real Golem network (`golem_operator.realnet`) for the real-network suite.

Run by `make realnet-test` (scripts/realnet-test.sh builds the provider side from the yagna
source first), not by `make test`: a fresh machine cannot obtain that source. One network per
session: hub, stand-in chain RPC, requestor yagna and two provider nodes (yagna + ya-provider +
exe-unit + the project's runtime), all in a loopback-only network namespace. If any of it cannot
start, every test fails with the reason; nothing is skipped.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from golem_operator.devenv.controlplane import ControlPlane
from golem_operator.devenv.stack import OperatorProcess
from golem_operator.realnet.network import (
    PAYMENT_PLATFORM,
    ProviderSpec,
    RealNetwork,
    RealNetworkError,
)
from support.realnet_audit import RealNetAudit
from support.yagna_contract import ContractDaemon

SUBNET = "public"  # the operator's default subnet tag: examples run unchanged


@pytest.fixture(scope="session")
def real_network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealNetwork]:
    network = RealNetwork(
        tmp_path_factory.mktemp("realnet"),
        providers=[ProviderSpec("provider-1"), ProviderSpec("provider-2")],
        subnet=SUBNET,
    )
    try:
        network.start()
    except RealNetworkError as err:
        pytest.fail(f"the real network did not start: {err}", pytrace=False)
    print(f"real network up in {network.timings['start_seconds']} s: {network.summary()}")
    yield network
    network.stop()


@pytest.fixture(scope="session")
def audit(real_network: RealNetwork) -> RealNetAudit:
    return RealNetAudit(real_network.url, real_network.requestor_key)


async def _nothing(agreement_id: str) -> None:
    """The real provider bills terminated agreements by itself."""


@pytest.fixture(scope="session")
def realnet_daemon(real_network: RealNetwork) -> ContractDaemon:
    return ContractDaemon(
        kind="realnet",
        url=real_network.url,
        app_key=real_network.requestor_key,
        requestor_id=real_network.requestor_id,
        subnet=SUBNET,
        payment_platform=PAYMENT_PLATFORM,
        after_terminate=_nothing,
    )


@pytest.fixture(scope="session")
def operator(
    control_plane: ControlPlane,
    real_network: RealNetwork,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    work = tmp_path_factory.mktemp("operator")
    proc = OperatorProcess(
        work, control_plane.kubeconfig, real_network.url, real_network.key_file, ["rn-*"]
    ).start()
    yield proc
    proc.stop()
    print(proc.log.read_text()[-5000:])


@pytest.fixture
def namespace(control_plane: ControlPlane) -> str:
    name = f"rn-{uuid.uuid4().hex[:10]}"
    control_plane.kubectl_run("create", "namespace", name)
    return name
