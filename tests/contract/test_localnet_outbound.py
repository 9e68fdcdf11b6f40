"""The localnet's outbound access: providers offering it, manifest demands, the allowlist.

A provider with `outbound: true` offers the capabilities inet and manifest-support; a demand
carrying a computation manifest (as the operator builds it) and constraining those
capabilities gets offers from it alone. In the activity a process reaches the loopback
servers the manifest lists, and nothing else: the test starts two HTTP servers on the host
and fetches both from inside the sandbox.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from golem_operator.core.manifest import manifest_demand
from localnet_fixture import (
    collect,
    demand_body,
    exec_and_wait,
    localnet,
    localnet_config,
    negotiate,
    running_activity,
    yagna,
)

__all__ = ["localnet", "yagna"]

OUTBOUND_NET = localnet_config(
    providers=[
        {"name": "outbound-1", "outbound": True},
        {"name": "plain-1"},
    ]
)
# Prints the body fetched from argv[1], or the reason the fetch failed.
FETCH = (
    "import sys, urllib.request\n"
    "try:\n"
    "    print('OK', urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())\n"
    "except Exception as error:\n"
    "    print('FAILED', type(error).__name__, error)\n"
)


def manifest_document(urls: list[str] | None, protocols: list[str] | None = None) -> bytes:
    out: dict[str, Any] = {}
    if urls is not None:
        out["urls"] = urls
    if protocols is not None:
        out["protocols"] = protocols
    return json.dumps(
        {
            "version": "0.1.0",
            "createdAt": "2025-01-01T00:00:00Z",
            "expiresAt": "2100-01-01T00:00:00Z",
            "payload": [],
            "compManifest": {"version": "0.1.0", "net": {"inet": {"out": out}}},
        },
        indent=2,
    ).encode()


@pytest.fixture
async def http_servers() -> AsyncIterator[list[str]]:
    """Two HTTP servers on the host's loopback, each answering with its own name."""

    async def serve(name: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        body = name.encode()
        writer.write(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()

    servers = []
    for name in ("allowed", "forbidden"):
        servers.append(
            await asyncio.start_server(lambda r, w, name=name: serve(name, r, w), "127.0.0.1", 0)
        )
    yield [f"http://127.0.0.1:{s.sockets[0].getsockname()[1]}/hello" for s in servers]
    for server in servers:
        server.close()
        await server.wait_closed()


async def fetch_in(yagna: httpx.AsyncClient, activity_id: str, url: str) -> str:
    results = await exec_and_wait(
        yagna,
        activity_id,
        [{"run": {"entry_point": "/usr/bin/python3", "args": ["-c", FETCH, url]}}],
    )
    assert results[-1]["result"] == "Ok", results
    return str(results[-1]["stdout"]).strip()


@pytest.mark.parametrize("localnet", [OUTBOUND_NET], indirect=True)
async def test_only_outbound_providers_offer_to_a_manifest_demand(
    yagna: httpx.AsyncClient,
) -> None:
    published = manifest_demand(manifest_document(["http://127.0.0.1:9/x"]))
    plain = await demand_body(yagna)
    body = await demand_body(
        yagna,
        extra=published.properties,
        constraints=plain["constraints"][:-1]
        + "".join(f"(golem.runtime.capabilities={c})" for c in published.capabilities)
        + ")",
    )
    demand_id = (await yagna.post("/market-api/v1/demands", json=body)).json()
    offers = [e["proposal"]["properties"] for e in await collect(yagna, demand_id, 2, within=2)]
    assert [o["golem.node.id.name"] for o in offers] == ["outbound-1"]
    assert {"inet", "manifest-support"} <= set(offers[0]["golem.runtime.capabilities"])
    assert offers[0]["golem.srv.caps.payload-manifest"] is True
    # The same demand without a manifest gets both.
    plain_id = (await yagna.post("/market-api/v1/demands", json=plain)).json()
    names = {
        e["proposal"]["properties"]["golem.node.id.name"]
        for e in await collect(yagna, plain_id, 2, within=2)
    }
    assert names == {"outbound-1", "plain-1"}
    providers = (await yagna.get("/_localnet/providers")).json()
    assert providers  # the admin view still lists both


@pytest.mark.parametrize("localnet", [OUTBOUND_NET], indirect=True)
async def test_an_activity_reaches_the_listed_loopback_url_and_nothing_else(
    yagna: httpx.AsyncClient, http_servers: list[str]
) -> None:
    allowed, forbidden = http_servers
    published = manifest_demand(manifest_document([allowed]))
    deal = await negotiate(yagna, provider="outbound-1", extra=published.properties)
    activity_id = await running_activity(yagna, deal.agreement_id)

    assert await fetch_in(yagna, activity_id, allowed) == "OK allowed"
    refused = await fetch_in(yagna, activity_id, forbidden)
    assert refused.startswith("FAILED") and "refused" in refused, refused
    audit = (await yagna.get("/_localnet/audit")).json()
    (activity,) = [a for a in audit["activities"] if a["activityId"] == activity_id]
    port = allowed.split(":")[2].split("/")[0]
    assert activity["outboundTargets"] == [f"127.0.0.1:{port}"]

    # Its end closes the way out.
    assert (await yagna.delete(f"/activity-api/v1/activity/{activity_id}")).status_code == 200
    audit = (await yagna.get("/_localnet/audit")).json()
    (activity,) = [a for a in audit["activities"] if a["activityId"] == activity_id]
    assert not activity["sandboxAlive"]


@pytest.mark.parametrize("localnet", [OUTBOUND_NET], indirect=True)
async def test_without_a_manifest_an_activity_reaches_nothing(
    yagna: httpx.AsyncClient, http_servers: list[str]
) -> None:
    allowed, _ = http_servers
    deal = await negotiate(yagna, provider="outbound-1")
    activity_id = await running_activity(yagna, deal.agreement_id)
    refused = await fetch_in(yagna, activity_id, allowed)
    assert refused.startswith("FAILED"), refused


@pytest.mark.parametrize("localnet", [OUTBOUND_NET], indirect=True)
async def test_a_scheme_outside_the_protocols_is_not_granted(
    yagna: httpx.AsyncClient, http_servers: list[str]
) -> None:
    allowed, _ = http_servers
    published = manifest_demand(manifest_document([allowed], protocols=["https"]))
    deal = await negotiate(yagna, provider="outbound-1", extra=published.properties)
    activity_id = await running_activity(yagna, deal.agreement_id)
    assert (await fetch_in(yagna, activity_id, allowed)).startswith("FAILED")


@pytest.mark.parametrize(
    ("properties", "reason"),
    [
        (
            manifest_demand(manifest_document(None)).properties,
            "never unrestricted access",
        ),
        ({"golem.srv.comp.payload": "not base64!"}, "is not base64"),
        (
            {"golem.srv.comp.payload": base64.b64encode(b'{"version": "0.1.0"}').decode()},
            "missing field `createdAt`",
        ),
        (
            {
                **manifest_demand(manifest_document([])).properties,
                "golem.srv.comp.payload.sig": "AAAA",
                "golem.srv.comp.payload.cert": "AAAA",
            },
            "a signature needs golem.srv.comp.payload.sig.algorithm",
        ),
    ],
    ids=["unrestricted", "not-base64", "missing-field", "signature-without-algorithm"],
)
@pytest.mark.parametrize("localnet", [OUTBOUND_NET], indirect=True)
async def test_an_outbound_provider_refuses_a_manifest_it_cannot_honour(
    yagna: httpx.AsyncClient, properties: dict[str, Any], reason: str
) -> None:
    body = await demand_body(yagna, extra=properties)
    demand_id = (await yagna.post("/market-api/v1/demands", json=body)).json()
    offers = [e["proposal"] for e in await collect(yagna, demand_id, 2, within=2)]
    (offer,) = [o for o in offers if o["properties"]["golem.node.id.name"] == "outbound-1"]
    countered = await yagna.post(
        f"/market-api/v1/demands/{demand_id}/proposals/{offer['proposalId']}", json=body
    )
    assert countered.status_code == 200, countered.text
    events = await collect(yagna, demand_id, 1)
    assert events[0]["eventType"] == "ProposalRejectedEvent", events
    assert reason in events[0]["reason"]["message"]
