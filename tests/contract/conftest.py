"""Daemons for the client contract suite: the real yagna (with a stand-in provider) and localnet.

`golem_daemon` is parametrised over ["localnet", "yagna"]; each kind is started once per session
and reused. The yagna side runs the real daemon inside a loopback-only network namespace
(`support.yagna`), and its provider is `support.provider_standin`; yagna-backed tests carry the
`yagna` mark. If a daemon cannot start, the tests that need it fail; nothing is skipped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from golem_operator.localnet import LocalNetConfig, LocalNetwork
from golem_operator.localnet.config import ProviderConfig
from support.provider_standin import ProviderStandIn
from support.yagna import YagnaDaemon, running_yagna
from support.yagna_contract import ContractDaemon

YAGNA_SUBNET = "golem-operator-contract"
LOCALNET_SUBNET = "golem-operator-contract"
INVOICE_AMOUNT = Decimal("0.0123")


@pytest.fixture(scope="session")
async def yagna_daemon(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[YagnaDaemon]:
    async with running_yagna(tmp_path_factory.mktemp("yagna")) as daemon:
        yield daemon


@pytest.fixture(scope="session")
async def yagna_provider(yagna_daemon: YagnaDaemon) -> AsyncIterator[ProviderStandIn]:
    provider = ProviderStandIn(
        url=yagna_daemon.url,
        app_key=yagna_daemon.provider_key,
        provider_id=yagna_daemon.provider_id,
        subnet=YAGNA_SUBNET,
        platform=yagna_daemon.payment_platform,
    )
    await provider.start()
    yield provider
    await provider.stop()


@pytest.fixture(scope="session")
async def contract_yagna(
    yagna_daemon: YagnaDaemon, yagna_provider: ProviderStandIn
) -> ContractDaemon:
    async def bill(agreement_id: str) -> None:
        await yagna_provider.send_invoice(agreement_id, str(INVOICE_AMOUNT))

    return ContractDaemon(
        kind="yagna",
        url=yagna_daemon.url,
        app_key=yagna_daemon.requestor_key,
        requestor_id=yagna_daemon.requestor_id,
        subnet=YAGNA_SUBNET,
        payment_platform=yagna_daemon.payment_platform,
        after_terminate=bill,
    )


@pytest.fixture(scope="session")
async def contract_localnet() -> AsyncIterator[ContractDaemon]:
    config = LocalNetConfig(
        subnet_tag=LOCALNET_SUBNET,
        providers=[ProviderConfig(count=3, max_agreements=4)],
    )
    network = LocalNetwork(config)
    url = await network.start("127.0.0.1", 0)
    try:
        async with ContractDaemon(
            kind="localnet",
            url=url,
            app_key=network.app_key,
            requestor_id="",
            subnet=LOCALNET_SUBNET,
            payment_platform=config.payment_platform,
            after_terminate=_nothing,
        ).client() as client:
            requestor_id = (await client.identity.me()).identity
        yield ContractDaemon(
            kind="localnet",
            url=url,
            app_key=network.app_key,
            requestor_id=requestor_id,
            subnet=LOCALNET_SUBNET,
            payment_platform=config.payment_platform,
            after_terminate=_nothing,
        )
    finally:
        await network.stop()


async def _nothing(agreement_id: str) -> None:
    del agreement_id  # localnet providers issue their invoice themselves


@pytest.fixture(
    scope="session",
    params=["localnet", pytest.param("yagna", marks=pytest.mark.yagna)],
)
def golem_daemon(request: pytest.FixtureRequest) -> ContractDaemon:
    daemon: ContractDaemon = request.getfixturevalue(f"contract_{request.param}")
    return daemon
