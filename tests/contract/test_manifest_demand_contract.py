"""The demand of a service with a computation manifest, as the operator builds it, against the
real yagna 0.17.6 and the localnet.

Both daemons accept it (subscribe answers an id), list it with the manifest's properties
unchanged, and match it only with offers that have the capabilities it asks for: the yagna
stand-in's offer and the contract localnet's providers have none, so no proposal comes; on
yagna a second offer that has them gets a proposal, and once countered its provider sees the
manifest properties as published.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from golem_operator.api.spec import GolemServiceSpec
from golem_operator.core.images import ResolvedImage
from golem_operator.core.manifest import (
    P_CERTIFICATE,
    P_MANIFEST,
    P_SIGNATURE,
    P_SIGNATURE_ALGORITHM,
    manifest_demand,
)
from golem_operator.core.market import DemandSpec, build_demand
from golem_operator.golem import GolemClient, ProposalState
from support.provider_standin import offer_properties
from support.yagna import YagnaDaemon
from support.yagna_contract import ContractDaemon, next_proposal

pytestmark = pytest.mark.timeout(120)

IMAGE = ResolvedImage("ab" * 28, "http://127.0.0.1:1/contract-test.gvmi")
MANIFEST = json.dumps(
    {
        "version": "0.1.0",
        "createdAt": "2025-01-01T00:00:00Z",
        "expiresAt": "2100-01-01T00:00:00Z",
        "metadata": {"name": "contract"},
        "payload": [{"urls": [IMAGE.url], "hash": "sha3:" + IMAGE.hash}],
        "compManifest": {
            "version": "0.1.0",
            "net": {"inet": {"out": {"protocols": ["http"], "urls": ["http://127.0.0.1:9/x"]}}},
        },
    },
    indent=2,
).encode()
SIGNATURE = bytes(range(256))
CERT = b"-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUZ\n-----END CERTIFICATE-----\n"
MANIFEST_KEYS = (P_MANIFEST, P_SIGNATURE, P_SIGNATURE_ALGORITHM, P_CERTIFICATE)


def operator_demand(daemon: ContractDaemon) -> DemandSpec:
    spec = GolemServiceSpec.model_validate(
        {
            "payload": {"image": {"hash": IMAGE.hash, "url": IMAGE.url}},
            "market": {"subnetTag": daemon.subnet},
            "agreementDuration": "1h",
            "budget": "1",
        }
    )
    published = manifest_demand(MANIFEST, signature=SIGNATURE, algorithm="sha256", certificate=CERT)
    return build_demand(
        spec,
        image=IMAGE,
        now=datetime.now(UTC),
        node_name="golem-operator/contract/manifest",
        requestor_address=daemon.requestor_id,
        manifest=published,
    )


@pytest.fixture
async def client(golem_daemon: ContractDaemon) -> AsyncIterator[GolemClient]:
    async with golem_daemon.client() as golem:
        yield golem


async def test_the_manifest_demand_is_accepted_and_listed_as_published(
    client: GolemClient, golem_daemon: ContractDaemon
) -> None:
    demand = operator_demand(golem_daemon)
    assert base64.b64decode(demand.properties[P_MANIFEST]) == MANIFEST
    subscription = await client.market.subscribe_demand(demand.properties, demand.constraints)
    try:
        assert subscription
        (listed,) = [d for d in await client.market.list_demands() if d.demand_id == subscription]
        for key in MANIFEST_KEYS:
            assert listed.properties[key] == demand.properties[key], key
        assert "(golem.runtime.capabilities=manifest-support)" in listed.constraints
        assert "(golem.runtime.capabilities=inet)" in listed.constraints
        # No provider of this daemon offers inet and manifest-support.
        assert await client.market.collect_demand_events(subscription, timeout=2) == []
    finally:
        await client.market.unsubscribe_demand(subscription)


@pytest.fixture
async def capable_offer(yagna_daemon: YagnaDaemon) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """A second offer of the yagna provider identity, with the capabilities a manifest needs."""
    properties: dict[str, Any] = offer_properties(
        provider_id=yagna_daemon.provider_id,
        subnet="golem-operator-contract",
        platform=yagna_daemon.payment_platform,
        name="outbound-provider",
    )
    properties["golem.runtime.capabilities"] = ["inet", "vpn", "manifest-support"]
    properties["golem.srv.caps.payload-manifest"] = True
    async with httpx.AsyncClient(
        base_url=yagna_daemon.url,
        headers={"Authorization": f"Bearer {yagna_daemon.provider_key}"},
        timeout=30,
    ) as http:
        reply = await http.post(
            "/market-api/v1/offers",
            json={"properties": properties, "constraints": "(golem.srv.comp.expiration>0)"},
        )
        assert reply.status_code == 201, reply.text
        offer_id = str(reply.json())
        try:
            yield http, offer_id
        finally:
            with contextlib.suppress(httpx.HTTPError):
                await http.delete(f"/market-api/v1/offers/{offer_id}")


@pytest.mark.yagna
async def test_yagna_matches_the_manifest_demand_with_a_capable_offer_only(
    contract_yagna: ContractDaemon, capable_offer: tuple[httpx.AsyncClient, str]
) -> None:
    provider_http, offer_id = capable_offer
    demand = operator_demand(contract_yagna)
    async with contract_yagna.client() as client:
        subscription = await client.market.subscribe_demand(demand.properties, demand.constraints)
        try:
            initial = await next_proposal(client, subscription, state=ProposalState.INITIAL)
            offer = initial.proposal.properties
            assert offer["golem.node.id.name"] == "outbound-provider"
            assert "manifest-support" in offer["golem.runtime.capabilities"]
            # Countered (as the operator counters, with the demand's properties), the provider
            # side receives the manifest as the operator published it.
            await client.market.counter_proposal(
                subscription, initial.proposal.proposal_id, demand.properties, demand.constraints
            )
            seen = await _demand_seen_by(provider_http, offer_id)
            for key in MANIFEST_KEYS:
                assert seen[key] == demand.properties[key], key
            # And the stand-in's offer, without the capabilities, never came.
            more = await client.market.collect_demand_events(subscription, timeout=1.5)
            assert all(
                e.proposal.properties["golem.node.id.name"] == "outbound-provider"
                for e in more
                if getattr(e, "proposal", None) is not None
            )
        finally:
            await client.market.unsubscribe_demand(subscription)


async def _demand_seen_by(http: httpx.AsyncClient, offer_id: str) -> dict[str, Any]:
    for _ in range(20):
        reply = await http.get(
            f"/market-api/v1/offers/{offer_id}/events", params={"timeout": 1, "maxEvents": 10}
        )
        assert reply.status_code == 200, reply.text
        for event in reply.json():
            if event.get("eventType") == "ProposalEvent":
                properties: dict[str, Any] = _flat(event["proposal"]["properties"])
                if P_MANIFEST in properties:
                    return properties
        await asyncio.sleep(0.1)
    raise AssertionError("the capable offer never saw the manifest demand")


def _flat(properties: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in properties.items():
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            flat.update(_flat(value, name))
        else:
            flat[name] = value
    return flat
