"""The localnet's providers hold requestors to the real network's agreement rules.

yagna's provider agent (its defaults) refuses agreements ending less than 5 minutes from now,
more than 30 minutes from now without a debit-note acceptance deadline, 10 hours or more from
now without mid-agreement payments, and ends an approved agreement on which no activity was
created within 90 s. A requestor that breaks a rule fails here as it would there.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from localnet_fixture import (
    collect,
    demand_body,
    expiration_ms,
    localnet,
    localnet_config,
    negotiate,
    running_activity,
    yagna,
)

__all__ = ["localnet", "yagna"]

M = "/market-api/v1"
P = "/payment-api/v1"
ACCEPT_TIMEOUT = "golem.com.payment.debit-notes.accept-timeout?"
PAYMENT_TIMEOUT = "golem.com.scheme.payu.payment-timeout-sec?"


async def _answer_to_counter(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    """Counter the first offer with `body`; the provider's answer (Draft or rejection)."""
    demand_id = (await client.post(f"{M}/demands", json=body)).json()
    initial = (await collect(client, demand_id, want=1))[0]["proposal"]
    counter = await client.post(
        f"{M}/demands/{demand_id}/proposals/{initial['proposalId']}", json=body
    )
    assert counter.status_code == 200, counter.text
    events = await collect(client, demand_id, want=3, within=3)
    answers = [
        e
        for e in events
        if e["eventType"] == "ProposalRejectedEvent"
        or e["proposal"].get("prevProposalId") == counter.json()
    ]
    assert answers, events
    return answers[0]


@pytest.mark.parametrize(
    ("seconds", "drop", "add", "refused"),
    [
        (240, [], {}, "which is less than 5m or more than 100years from now"),
        (2 * 3600, [ACCEPT_TIMEOUT], {}, "which is less than 5m or more than 30m from now"),
        (11 * 3600, [], {}, "threshold of enforcing mid-agreement payments"),
        (11 * 3600, [], {PAYMENT_TIMEOUT: 600}, None),
        (6 * 60, [ACCEPT_TIMEOUT], {}, None),
    ],
    ids=["under-5m", "over-30m-no-deadline", "10h-no-payments", "10h-with-payments", "6m"],
)
async def test_providers_refuse_agreements_the_real_network_refuses(
    yagna: httpx.AsyncClient,
    seconds: int,
    drop: list[str],
    add: dict[str, Any],
    refused: str | None,
) -> None:
    body = await demand_body(yagna, extra={"golem.srv.comp.expiration": expiration_ms(seconds)})
    for key in drop:
        del body["properties"][key]
    body["properties"].update(add)
    answer = await _answer_to_counter(yagna, body)
    if refused is None:
        assert answer["eventType"] == "ProposalEvent", answer
        assert answer["proposal"]["state"] == "Draft"
        for key, value in add.items():
            assert answer["proposal"]["properties"][key] == value  # negotiated: the offer agrees
    else:
        assert answer["eventType"] == "ProposalRejectedEvent", answer
        assert refused in answer["reason"]["message"], answer


async def _terminated(
    client: httpx.AsyncClient, agreement_id: str, since: str, within: float
) -> Any:
    after = since
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        batch = (
            await client.get(f"{M}/agreementEvents", params={"afterTimestamp": after, "timeout": 1})
        ).json()
        after = batch[-1]["eventDate"] if batch else after
        for event in batch:
            if (
                event["eventType"] == "AgreementTerminatedEvent"
                and event["agreementId"] == agreement_id
            ):
                return event
    return None


@pytest.mark.parametrize(
    "localnet",
    [localnet_config(agreement_rules={"idle_agreement_timeout_seconds": 2})],
    indirect=True,
)
async def test_an_agreement_without_an_activity_is_ended_by_its_provider(
    yagna: httpx.AsyncClient,
) -> None:
    start = datetime.now(UTC).isoformat()
    idle = await negotiate(yagna)
    busy = await negotiate(yagna)
    await running_activity(yagna, busy.agreement_id)
    event = await _terminated(yagna, idle.agreement_id, start, 10)
    assert event is not None
    assert event["terminator"] == "Provider"
    assert event["reason"] == {
        "message": "No activity created within 2s",
        "golem.provider.code": "NoActivity",
    }
    # The one with an activity is left alone.
    assert await _terminated(yagna, busy.agreement_id, start, 1) is None
    agreement = (await yagna.get(f"{M}/agreements/{busy.agreement_id}")).json()
    assert agreement["state"] == "Approved"


async def test_a_provider_that_vanishes_after_approval_creates_no_activity(
    yagna: httpx.AsyncClient,
) -> None:
    start = datetime.now(UTC).isoformat()
    faults = await yagna.post(
        "/_localnet/providers/prov-1/faults", json={"vanish_after_approval": True}
    )
    assert faults.status_code == 200, faults.text
    deal = await negotiate(yagna, provider="prov-1")
    created = await yagna.post("/activity-api/v1/activity", json={"agreementId": deal.agreement_id})
    assert created.status_code == 500, created.text
    assert "did not answer" in created.json()["message"]
    # The requestor ends it; the vanished provider never bills it.
    ended = await yagna.post(
        f"{M}/agreements/{deal.agreement_id}/terminate", json={"message": "provider vanished"}
    )
    assert ended.status_code == 200, ended.text
    await asyncio.sleep(0.5)
    invoices = (await yagna.get(f"{P}/invoiceEvents", params={"afterTimestamp": start})).json()
    assert invoices == []
    audit = (await yagna.get("/_localnet/audit")).json()
    mine = [a for a in audit["agreements"] if a["agreementId"] == deal.agreement_id]
    assert mine and mine[0]["state"] == "Terminated"
