"""Wire-level answers of the daemon that the client or the operator depend on, per yagna 0.17.6.

Runs over both daemons (`golem_daemon`), talking raw HTTP so that status codes and bodies are
seen exactly. Every expectation was observed on the real daemon; a failure on the localnet
side means the localnet differs from yagna there.
"""

from __future__ import annotations

import re
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

# Id formats of yagna 0.17.6 as the requestor sees them.
SUBSCRIPTION_ID = re.compile(r"[0-9a-f]{32}-[0-9a-f]{64}")
PROPOSAL_ID = re.compile(r"R-[0-9a-f]{64}")
AGREEMENT_ID = re.compile(r"[0-9a-f]{64}")
ACTIVITY_ID = re.compile(r"[0-9a-f]{32}")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


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


async def test_unknown_routes_are_empty_404s(http: httpx.AsyncClient) -> None:
    unknown = await http.get("/market-api/v1/no-such-thing")
    wrong_method = await http.get(f"/market-api/v1/agreements/{'ab' * 32}/confirm")
    assert (unknown.status_code, unknown.text) == (404, "")
    assert (wrong_method.status_code, wrong_method.text) == (404, "")


async def test_malformed_path_ids_are_bad_requests(http: httpx.AsyncClient) -> None:
    subscription = await http.delete("/market-api/v1/demands/xyz")
    assert subscription.status_code == 400
    assert subscription.json()["message"] == (
        "Path deserialize error: Subscription id [xyz] has invalid format."
    )
    valid_subscription = f"{'0' * 32}-{'0' * 64}"
    proposal = await http.get(f"/market-api/v1/demands/{valid_subscription}/proposals/xyz")
    assert proposal.status_code == 400
    assert proposal.json()["message"] == "Path deserialize error: Id [xyz] has invalid format."
    not_hex = await http.get("/market-api/v1/agreements/xyz")
    assert (not_hex.status_code, not_hex.json()["message"]) == (
        400,
        "Invalid Agreement id. Id [xyz] contains non hexadecimal characters.",
    )
    short = await http.get("/market-api/v1/agreements/abc")
    assert (short.status_code, short.json()["message"]) == (
        400,
        "Invalid Agreement id. Id [abc] hash has invalid length. Should be |64|",
    )
    unknown = await http.get(f"/market-api/v1/agreements/{'ab' * 32}")
    assert (unknown.status_code, unknown.json()["message"]) == (
        404,
        f"Agreement [{'ab' * 32}] not found.",
    )


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
    assert SUBSCRIPTION_ID.fullmatch(subscription), subscription
    try:
        events = await http.get(
            f"/market-api/v1/demands/{subscription}/events", params={"timeout": 5, "maxEvents": 1}
        )
        initial = events.json()[0]["proposal"]["proposalId"]
        assert PROPOSAL_ID.fullmatch(initial), initial

        too_early = await http.post(
            "/market-api/v1/agreements",
            json={"proposalId": initial, "validTo": iso_now(timedelta(hours=1))},
        )
        assert too_early.status_code == 400
        assert too_early.json()["message"] == (
            f"Can't create Agreement for Proposal [{initial}]. No negotiation with Provider "
            "took place. (You should counter Proposal at least one time)"
        )

        counter_body = {"properties": properties, "constraints": constraints}
        countered = await http.post(
            f"/market-api/v1/demands/{subscription}/proposals/{initial}", json=counter_body
        )
        assert countered.status_code == 200  # the spec says 201; yagna answers 200
        assert PROPOSAL_ID.fullmatch(countered.json()), countered.text
        again = await http.post(
            f"/market-api/v1/demands/{subscription}/proposals/{initial}", json=counter_body
        )
        assert (again.status_code, again.json()["message"]) == (
            410,
            f"Proposal [{initial}] already has counter proposal. "
            "Can't counter for the second time.",
        )
        own = await http.post(
            f"/market-api/v1/demands/{subscription}/proposals/{countered.json()}",
            json=counter_body,
        )
        assert (own.status_code, own.json()["message"]) == (
            400,
            f"Can't react to own Proposal [{countered.json()}].",
        )
        for _ in range(2):  # rejecting twice is fine
            rejected = await http.post(
                f"/market-api/v1/demands/{subscription}/proposals/{initial}/reject",
                json={"message": "no"},
            )
            assert rejected.status_code == 204
        no_reason = await http.post(
            f"/market-api/v1/demands/{subscription}/proposals/{initial}/reject"
        )
        assert (no_reason.status_code, no_reason.json()) == (
            400,
            {"message": "Content type error"},
        )
    finally:
        await http.delete(f"/market-api/v1/demands/{subscription}")


async def test_agreement_and_activity_status_codes(
    http: httpx.AsyncClient, golem_daemon: ContractDaemon
) -> None:
    async with golem_daemon.client() as client:
        negotiated = await negotiate_agreement(client, golem_daemon)
    agreement = negotiated.agreement_id
    assert AGREEMENT_ID.fullmatch(agreement), agreement
    try:
        details = (await http.get(f"/market-api/v1/agreements/{agreement}")).json()
        assert {"proposedSignature", "approvedSignature", "committedSignature"} <= details.keys()
        confirmed = await http.post(f"/market-api/v1/agreements/{agreement}/confirm")
        assert (confirmed.status_code, confirmed.json()["message"]) == (
            410,
            "Can't update Agreement state from Approved to Pending.",
        )
        early = await http.get(f"/market-api/v1/agreements/{agreement}/terminate/reason")
        assert (early.status_code, early.json()["message"]) == (
            400,
            f"Agreement [P-{agreement}] not terminated yet.",
        )

        created = await http.post("/activity-api/v1/activity", json={"agreementId": agreement})
        assert created.status_code == 200  # the spec says 201; yagna answers 200
        activity = created.json()["activityId"]
        assert ACTIVITY_ID.fullmatch(activity), activity
        bare = await http.post("/activity-api/v1/activity", json=agreement)
        assert bare.status_code == 200
        assert ACTIVITY_ID.fullmatch(bare.json()), bare.text  # a bare id for a bare id
        destroyed = await http.delete(f"/activity-api/v1/activity/{activity}")
        assert (destroyed.status_code, destroyed.json()) == (200, None)
        state = await http.get(f"/activity-api/v1/activity/{activity}/state")
        assert state.json() == {"state": ["Terminated", None]}  # no reason, no errorMessage
        again = await http.delete(f"/activity-api/v1/activity/{activity}")
        assert (again.status_code, again.json()) == (200, None)

        no_reason = await http.post(f"/market-api/v1/agreements/{agreement}/terminate")
        assert (no_reason.status_code, no_reason.json()) == (
            400,
            {"message": "Content type error"},  # a Reason body (or JSON null) is required
        )
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
        assert (waited.status_code, waited.json()["message"]) == (
            400,
            f"Agreement [R-{agreement}] terminated.",
        )
        again = await http.post(
            f"/market-api/v1/agreements/{agreement}/terminate", json={"message": "again"}
        )
        assert (again.status_code, again.json()["message"]) == (
            410,
            "Can't update Agreement state from Terminated to Terminated.",
        )
    finally:
        await http.delete(f"/market-api/v1/demands/{negotiated.subscription}")


async def test_agreement_creation_answers(
    http: httpx.AsyncClient, golem_daemon: ContractDaemon
) -> None:
    properties = demand_properties(golem_daemon)
    constraints = demand_constraints(golem_daemon)
    body = {"properties": properties, "constraints": constraints}
    subscription = (await http.post("/market-api/v1/demands", json=body)).json()
    try:
        events = await http.get(
            f"/market-api/v1/demands/{subscription}/events", params={"timeout": 5, "maxEvents": 1}
        )
        initial = events.json()[0]["proposal"]["proposalId"]
        counter = (
            await http.post(f"/market-api/v1/demands/{subscription}/proposals/{initial}", json=body)
        ).json()
        draft = None
        for _ in range(10):
            polled = await http.get(
                f"/market-api/v1/demands/{subscription}/events", params={"timeout": 1}
            )
            drafts = [
                e["proposal"]["proposalId"]
                for e in polled.json()
                if e.get("proposal", {}).get("prevProposalId") == counter
            ]
            if drafts:
                draft = drafts[0]
                break
        assert draft is not None, "the provider did not answer the counter-proposal"
        valid_to = iso_now(timedelta(hours=1))
        own = await http.post(
            "/market-api/v1/agreements", json={"proposalId": counter, "validTo": valid_to}
        )
        assert (own.status_code, own.json()["message"]) == (
            400,
            f"Can't create Agreement for an own Proposal [{counter}]. "
            "You can promote only provider's Proposals to Agreement.",
        )
        created = await http.post(
            "/market-api/v1/agreements", json={"proposalId": draft, "validTo": valid_to}
        )
        assert created.status_code == 200  # the spec says 201; yagna answers 200
        agreement = created.json()
        assert AGREEMENT_ID.fullmatch(agreement), agreement
        second = await http.post(
            "/market-api/v1/agreements", json={"proposalId": draft, "validTo": valid_to}
        )
        assert (second.status_code, second.json()["message"]) == (
            409,
            f"Can't create second Agreement for Proposal [{draft}].",
        )
        unconfirmed = await http.post(
            f"/market-api/v1/agreements/{agreement}/wait", params={"timeout": 1}
        )
        assert (unconfirmed.status_code, unconfirmed.json()["message"]) == (
            400,
            f"Agreement [R-{agreement}] should be confirmed, before waiting for approval.",
        )
        early = await http.post(
            f"/market-api/v1/agreements/{agreement}/terminate", json={"message": "x"}
        )
        assert (early.status_code, early.json()["message"]) == (
            409,
            "Can't update Agreement state from Proposal to Terminated.",
        )
    finally:
        await http.delete(f"/market-api/v1/demands/{subscription}")


async def test_state_of_an_unknown_activity_is_a_server_error(http: httpx.AsyncClient) -> None:
    unknown = "0" * 32
    reply = await http.get(f"/activity-api/v1/activity/{unknown}/state")
    assert (reply.status_code, reply.json()["message"]) == (
        500,
        f"DAO error: Not found: agreement id for activity: {unknown}",
    )
    destroyed = await http.delete(f"/activity-api/v1/activity/{unknown}")
    assert (destroyed.status_code, destroyed.json()) == (500, reply.json())


async def test_unknown_payment_documents_are_bare_404s(http: httpx.AsyncClient) -> None:
    unknown = "12345678-1234-1234-1234-123456789abc"
    for path in (f"/payment-api/v1/allocations/{unknown}", f"/payment-api/v1/invoices/{unknown}"):
        reply = await http.get(path)
        assert (reply.status_code, reply.json()) == (404, {"message": None}), path


async def test_refused_allocations_are_problem_json(
    http: httpx.AsyncClient, golem_daemon: ContractDaemon
) -> None:
    body = {
        "totalAmount": "0.1",
        "timeout": iso_now(timedelta(hours=1)),
        "makeDeposit": False,
        "paymentPlatform": golem_daemon.payment_platform,
        "address": golem_daemon.requestor_id,
    }
    too_much = await http.post("/payment-api/v1/allocations", json={**body, "totalAmount": "1e30"})
    assert too_much.status_code == 400
    assert too_much.headers["content-type"].startswith("application/problem+json")
    problem = too_much.json()
    assert problem["type"] == "/payment-api/v1/allocations/validation-error"
    assert problem["detail"].startswith("Insufficient funds to create the allocation.")
    assert problem["instance"].endswith("/insufficient-account-funds")
    platform = await http.post(
        "/payment-api/v1/allocations", json={**body, "paymentPlatform": "erc20-nowhere-tglm"}
    )
    assert platform.status_code == 400
    assert platform.json()["type"] == "/payment-api/v1/allocations/bad-payment-platform"
    assert platform.json()["requestedPaymentPlatform"] == "erc20-nowhere-tglm"


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
    assert UUID.fullmatch(allocation), allocation
    assert created.json()["createdTs"] == created.json()["updatedTs"]
    released = await http.delete(f"/payment-api/v1/allocations/{allocation}")
    assert (released.status_code, released.json()) == (200, None)
    again = await http.delete(f"/payment-api/v1/allocations/{allocation}")
    assert again.status_code == 410
    assert again.json()["message"] == f"Allocation {allocation} has been already released"
