"""Fixtures and helpers for tests that need the local Golem network.

`localnet` starts a fresh `LocalNetwork` (function scope: faults never leak between tests) on
a free loopback port; `yagna` is an httpx client authenticated with its app key.
`negotiate` walks the real market steps to an approved agreement. Import what you need:
``from localnet_fixture import localnet, yagna, negotiate`` (tests/ is on sys.path through
the root conftest).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest_asyncio

from golem_operator.localnet import LocalNetConfig, LocalNetwork, parse_config

ROOT = Path(__file__).resolve().parents[1]
SIMPLE_SERVICE = ROOT / "examples" / "images" / "simple-service"
PLATFORM = "erc20-holesky-tglm"


def localnet_config(**overrides: Any) -> LocalNetConfig:
    """Two fast providers and the simple-service image; keys override the top level."""
    data: dict[str, Any] = {
        "debit_note_interval_seconds": 1,
        "images": [{"tag": "simple-service", "path": str(SIMPLE_SERVICE)}],
        "limits": {"command_timeout_seconds": 10, "output_cap_bytes": 4096},
        "providers": [{"count": 2, "name_prefix": "prov"}],
    }
    data.update(overrides)
    return parse_config(data)


@pytest_asyncio.fixture
async def localnet(request: Any) -> AsyncIterator[LocalNetwork]:
    """A running local network; `@pytest.mark.parametrize("localnet", [cfg], indirect=True)`."""
    config = getattr(request, "param", None) or localnet_config()
    network = LocalNetwork(config)
    await network.start()
    try:
        yield network
    finally:
        await network.stop()


@pytest_asyncio.fixture
async def yagna(localnet: LocalNetwork) -> AsyncIterator[httpx.AsyncClient]:
    assert localnet.url is not None
    async with httpx.AsyncClient(
        base_url=localnet.url,
        headers={"Authorization": f"Bearer {localnet.app_key}"},
        timeout=30,
    ) as client:
        yield client


def expiration_ms(seconds: float = 600) -> int:
    return int((datetime.now(UTC) + timedelta(seconds=seconds)).timestamp() * 1000)


async def task_package(client: httpx.AsyncClient, tag: str = "simple-service") -> str:
    images = (await client.get("/_localnet/images")).json()
    return next(i["taskPackage"] for i in images if i["tag"] == tag)


async def demand_body(
    client: httpx.AsyncClient, *, extra: dict[str, Any] | None = None, constraints: str = ""
) -> dict[str, Any]:
    me = (await client.get("/me")).json()
    properties: dict[str, Any] = {
        "golem.node.debug.subnet": "localnet",
        "golem.srv.comp.expiration": expiration_ms(),
        "golem.srv.comp.task_package": await task_package(client),
        "golem.srv.comp.vm.package_format": "gvmkit-squash",
        "golem.com.payment.chosen-platform": PLATFORM,
        f"golem.com.payment.platform.{PLATFORM}.address": me["identity"],
        "golem.com.payment.debit-notes.accept-timeout?": 240,
    }
    properties.update(extra or {})
    return {
        "properties": properties,
        "constraints": constraints
        or (
            "(&(golem.inf.mem.gib>=0.5)(golem.inf.storage.gib>=2.0)(golem.runtime.name=vm)"
            "(golem.node.debug.subnet=localnet)"
            f"(golem.com.payment.platform.{PLATFORM}.address=*)(golem.com.pricing.model=linear))"
        ),
    }


async def collect(
    client: httpx.AsyncClient, demand_id: str, want: int, within: float = 5
) -> list[Any]:
    """Demand events until `want` arrived (or the timeout)."""
    events: list[Any] = []
    loop_deadline = datetime.now(UTC) + timedelta(seconds=within)
    while len(events) < want and datetime.now(UTC) < loop_deadline:
        response = await client.get(
            f"/market-api/v1/demands/{demand_id}/events", params={"timeout": 0.5, "maxEvents": 10}
        )
        assert response.status_code == 200, response.text
        events += response.json()
    return events


@dataclass
class Deal:
    demand_id: str
    agreement_id: str
    provider_name: str
    demand: dict[str, Any]


async def negotiate(
    client: httpx.AsyncClient, *, provider: str | None = None, extra: dict[str, Any] | None = None
) -> Deal:
    """Subscribe, counter the first (or the named provider's) offer, agree, confirm, wait."""
    body = await demand_body(client, extra=extra)
    demand_id = (await client.post("/market-api/v1/demands", json=body)).json()
    initial = None
    for event in await collect(client, demand_id, want=1):
        proposal = event["proposal"]
        if provider is None or proposal["properties"]["golem.node.id.name"] == provider:
            initial = proposal
            break
    if initial is None and provider is not None:
        for event in await collect(client, demand_id, want=10, within=1):
            if event["proposal"]["properties"]["golem.node.id.name"] == provider:
                initial = event["proposal"]
                break
    assert initial is not None, "no offer arrived"
    counter = await client.post(
        f"/market-api/v1/demands/{demand_id}/proposals/{initial['proposalId']}", json=body
    )
    assert counter.status_code == 200, counter.text  # yagna: 200 (the spec says 201)
    drafts = [
        e for e in await collect(client, demand_id, want=1) if e["eventType"] == "ProposalEvent"
    ]
    assert drafts and drafts[0]["proposal"]["state"] == "Draft", drafts
    valid_to = (datetime.now(UTC) + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    created = await client.post(
        "/market-api/v1/agreements",
        json={"proposalId": drafts[0]["proposal"]["proposalId"], "validTo": valid_to},
    )
    assert created.status_code == 200, created.text  # yagna: 200 (the spec says 201)
    agreement_id = created.json()
    assert (
        await client.post(f"/market-api/v1/agreements/{agreement_id}/confirm")
    ).status_code == 204
    waited = await client.post(
        f"/market-api/v1/agreements/{agreement_id}/wait", params={"timeout": 5}
    )
    assert waited.status_code == 204, waited.text
    return Deal(demand_id, agreement_id, initial["properties"]["golem.node.id.name"], body)


async def exec_and_wait(
    client: httpx.AsyncClient, activity_id: str, commands: list[dict[str, Any]], within: float = 20
) -> list[dict[str, Any]]:
    """Run an ExeScript batch and return its results once the batch finished."""
    response = await client.post(
        f"/activity-api/v1/activity/{activity_id}/exec", json={"text": json.dumps(commands)}
    )
    assert response.status_code == 200, response.text
    batch_id = response.json()
    results: list[dict[str, Any]] = []
    deadline = datetime.now(UTC) + timedelta(seconds=within)
    while datetime.now(UTC) < deadline:
        polled = await client.get(
            f"/activity-api/v1/activity/{activity_id}/exec/{batch_id}", params={"timeout": 2}
        )
        if polled.status_code == 408:
            continue
        assert polled.status_code == 200, polled.text
        results = polled.json()
        if results and results[-1]["isBatchFinished"]:
            return results
    raise AssertionError(f"batch did not finish: {results}")


async def running_activity(client: httpx.AsyncClient, agreement_id: str) -> str:
    """Create an activity and deploy + start it."""
    created = await client.post("/activity-api/v1/activity", json={"agreementId": agreement_id})
    assert created.status_code == 200, created.text
    activity_id: str = created.json()["activityId"]
    results = await exec_and_wait(client, activity_id, [{"deploy": {}}, {"start": {}}])
    assert [r["result"] for r in results] == ["Ok", "Ok"], results
    return activity_id
