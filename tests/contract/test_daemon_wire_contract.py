"""Wire-level answers of the daemon that the client or the operator depend on, per yagna 0.17.6.

Runs over both daemons (`golem_daemon`), talking raw HTTP so that status codes and bodies are
seen exactly. Every expectation was observed on the real daemon; a failure on the localnet
side means the localnet differs from yagna there.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest

from support.provider_standin import iso_now
from support.yagna_contract import (
    ContractDaemon,
    demand_constraints,
    demand_properties,
    negotiate_agreement,
)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def http(golem_daemon: ContractDaemon) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=golem_daemon.url,
        headers={"Authorization": f"Bearer {golem_daemon.app_key}"},
        timeout=30,
        trust_env=False,
    ) as client:
        yield client


async def test_auth_failures_are_plain_text(golem_daemon: ContractDaemon) -> None:
    async with httpx.AsyncClient(base_url=golem_daemon.url, trust_env=False) as anonymous:
        missing = await anonymous.get("/me")
        wrong = await anonymous.get("/me", headers={"Authorization": "Bearer nope"})
        other_scheme = await anonymous.get("/me", headers={"Authorization": "Basic nope"})
    assert (missing.status_code, missing.text) == (401, "Missing application key")
    assert (wrong.status_code, wrong.text) == (401, "Invalid application key")
    assert (other_scheme.status_code, other_scheme.text) == (401, "Missing application key")


async def test_demand_constraints_are_not_validated_on_subscribe(
    http: httpx.AsyncClient, golem_daemon: ContractDaemon
) -> None:
    reply = await http.post(
        "/market-api/v1/demands",
        json={"properties": demand_properties(golem_daemon), "constraints": "(&(a=1"},
    )
    assert reply.status_code == 201
    assert (await http.delete(f"/market-api/v1/demands/{reply.json()}")).status_code == 204


async def test_negotiation_status_codes(
    http: httpx.AsyncClient, golem_daemon: ContractDaemon
) -> None:
    properties = demand_properties(golem_daemon)
    constraints = demand_constraints(golem_daemon)
    subscription = (
        await http.post(
            "/market-api/v1/demands", json={"properties": properties, "constraints": constraints}
        )
    ).json()
    try:
        events = await http.get(
            f"/market-api/v1/demands/{subscription}/events", params={"timeout": 5, "maxEvents": 1}
        )
        initial = events.json()[0]["proposal"]["proposalId"]

        too_early = await http.post(
            "/market-api/v1/agreements",
            json={"proposalId": initial, "validTo": iso_now(timedelta(hours=1))},
        )
        assert too_early.status_code == 400
        assert "No negotiation with Provider took place" in too_early.json()["message"]

        countered = await http.post(
            f"/market-api/v1/demands/{subscription}/proposals/{initial}",
            json={"properties": properties, "constraints": constraints},
        )
        assert countered.status_code == 200  # the spec says 201; yagna answers 200
        assert isinstance(countered.json(), str)
    finally:
        await http.delete(f"/market-api/v1/demands/{subscription}")


async def test_agreement_and_activity_status_codes(
    http: httpx.AsyncClient, golem_daemon: ContractDaemon
) -> None:
    async with golem_daemon.client() as client:
        negotiated = await negotiate_agreement(client, golem_daemon)
    agreement = negotiated.agreement_id
    try:
        details = (await http.get(f"/market-api/v1/agreements/{agreement}")).json()
        assert {"proposedSignature", "approvedSignature", "committedSignature"} <= details.keys()

        created = await http.post("/activity-api/v1/activity", json={"agreementId": agreement})
        assert created.status_code == 200  # the spec says 201; yagna answers 200
        activity = created.json()["activityId"]
        destroyed = await http.delete(f"/activity-api/v1/activity/{activity}")
        assert (destroyed.status_code, destroyed.json()) == (200, None)

        no_reason = await http.post(f"/market-api/v1/agreements/{agreement}/terminate")
        assert no_reason.status_code == 400  # a Reason body is required
        terminated = await http.post(
            f"/market-api/v1/agreements/{agreement}/terminate", json={"message": "done"}
        )
        assert (terminated.status_code, terminated.text) == (200, "")
        reason = await http.get(f"/market-api/v1/agreements/{agreement}/terminate/reason")
        assert reason.status_code == 200
        assert reason.json()["eventType"] == "AgreementTerminatedEvent"
        assert reason.json()["reason"] == {"message": "done"}

        waited = await http.post(
            f"/market-api/v1/agreements/{agreement}/wait", params={"timeout": 1}
        )
        assert waited.status_code == 400
        assert waited.json()["message"].endswith("terminated.")
    finally:
        await http.delete(f"/market-api/v1/demands/{negotiated.subscription}")


async def test_state_of_an_unknown_activity_is_a_server_error(http: httpx.AsyncClient) -> None:
    reply = await http.get(f"/activity-api/v1/activity/{'0' * 32}/state")
    assert reply.status_code == 500
    assert reply.json()["message"].startswith("DAO error: Not found")


async def test_allocation_release_twice_is_gone(
    http: httpx.AsyncClient, golem_daemon: ContractDaemon
) -> None:
    created = await http.post(
        "/payment-api/v1/allocations",
        json={
            "totalAmount": "0.1",
            "timeout": iso_now(timedelta(hours=1)),
            "makeDeposit": False,
            "paymentPlatform": golem_daemon.payment_platform,
            "address": golem_daemon.requestor_id,
        },
    )
    assert created.status_code == 201
    allocation = created.json()["allocationId"]
    released = await http.delete(f"/payment-api/v1/allocations/{allocation}")
    assert (released.status_code, released.json()) == (200, None)
    again = await http.delete(f"/payment-api/v1/allocations/{allocation}")
    assert again.status_code == 410
    assert again.json()["message"] == f"Allocation {allocation} has been already released"
