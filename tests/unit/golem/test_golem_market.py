"""Market API calls: paths, query parameters, bodies, and parsing of the daemon's answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest
from golem_fakes import FakeDaemon, error_reply, json_reply

from golem_operator.golem import (
    AgreementEventType,
    GolemAgreementNotApproved,
    GolemBadRequest,
    GolemClient,
    GolemGone,
    GolemNotFound,
    GolemTimeout,
    PropertyQueryEvent,
    ProposalEvent,
    ProposalRejectedEvent,
    UnknownMarketEvent,
)

M = "/market-api/v1"
PROVIDER = "0x86a269498fb5270f20bdc6fdcf6039122b0d3b23"
REQUESTOR = "0x5a1c0d3e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c"

OFFER_PROPERTIES = {
    "golem.com.pricing.model": "linear",
    "golem.com.pricing.model.linear.coeffs": [0.001, 0.002, 0.0],
    "golem.com.scheme": "payu",
    "golem.com.usage.vector": ["golem.usage.duration_sec", "golem.usage.cpu_sec"],
    "golem.inf.cpu.threads": 7,
    "golem.inf.mem.gib": 10.612468048930168,
    "golem.node.debug.subnet": "market-devnet",
    "golem.runtime.name": "vm",
}


def proposal_body(proposal_id: str = "prop-1", state: str = "Initial") -> dict[str, object]:
    return {
        "properties": OFFER_PROPERTIES,
        "constraints": "(&(golem.srv.comp.expiration>0))",
        "proposalId": proposal_id,
        "issuerId": PROVIDER,
        "state": state,
        "timestamp": "2024-05-06T07:08:09.123456Z",
    }


async def test_subscribe_demand_posts_properties_and_reads_the_json_string(
    daemon: FakeDaemon, client: GolemClient
) -> None:
    daemon.route("POST", f"{M}/demands", json_reply(201, "a1b2c3-R"))
    properties = {"golem.node.debug.subnet": "public", "golem.srv.comp.expiration": 1700000000000}

    subscription = await client.market.subscribe_demand(properties, "(golem.runtime.name=vm)")

    assert subscription == "a1b2c3-R"
    assert daemon.last.headers["content-type"] == "application/json"
    assert daemon.last_json() == {
        "properties": properties,
        "constraints": "(golem.runtime.name=vm)",
    }


async def test_unsubscribe_demand_deletes_and_maps_not_found(
    daemon: FakeDaemon, client: GolemClient
) -> None:
    daemon.route("DELETE", f"{M}/demands/sub-1", httpx.Response(204))
    await client.market.unsubscribe_demand("sub-1")
    daemon.route("DELETE", f"{M}/demands/sub-2", error_reply(404, "Demand [sub-2] not found."))
    with pytest.raises(GolemNotFound, match=r"Demand \[sub-2\] not found"):
        await client.market.unsubscribe_demand("sub-2")


async def test_collect_demand_events_parses_each_event_type(
    daemon: FakeDaemon, client: GolemClient
) -> None:
    daemon.route(
        "GET",
        f"{M}/demands/sub-1/events",
        json_reply(
            200,
            [
                {
                    "eventType": "ProposalEvent",
                    "eventDate": "2024-05-06T07:08:09Z",
                    "proposal": proposal_body(),
                },
                {
                    "eventType": "ProposalRejectedEvent",
                    "eventDate": "2024-05-06T07:08:10Z",
                    "proposalId": "prop-0",
                    "reason": {"message": "no thanks", "golem.provider.code": "Busy"},
                },
                {
                    "eventType": "PropertyQueryEvent",
                    "eventDate": "2024-05-06T07:08:11Z",
                    "propertyQuery": {"queriedProperties": ["golem.inf.mem.gib"]},
                },
                {"eventType": "SomethingNewEvent", "eventDate": "2024-05-06T07:08:12Z"},
            ],
        ),
    )

    events = await client.market.collect_demand_events("sub-1", timeout=3, max_events=50)

    assert daemon.last.url.params["timeout"] == "3.0"
    assert daemon.last.url.params["maxEvents"] == "50"
    proposal_event, rejected, query, unknown = events
    assert isinstance(proposal_event, ProposalEvent)
    assert proposal_event.proposal.proposal_id == "prop-1"
    assert proposal_event.proposal.issuer_id == PROVIDER
    assert proposal_event.proposal.properties["golem.inf.cpu.threads"] == 7
    assert proposal_event.proposal.timestamp == datetime(2024, 5, 6, 7, 8, 9, 123456, UTC)
    assert isinstance(rejected, ProposalRejectedEvent)
    assert rejected.proposal_id == "prop-0"
    assert rejected.reason is not None and rejected.reason.message == "no thanks"
    assert rejected.reason.model_extra == {"golem.provider.code": "Busy"}
    assert isinstance(query, PropertyQueryEvent)
    assert query.property_query.queried_properties == ["golem.inf.mem.gib"]
    assert isinstance(unknown, UnknownMarketEvent)
    assert unknown.event_type == "SomethingNewEvent"


async def test_counter_proposal_posts_to_the_proposal_and_returns_the_new_id(
    daemon: FakeDaemon, client: GolemClient
) -> None:
    # the real daemon answers 200 here, the spec says 201: both are success
    daemon.route("POST", f"{M}/demands/sub-1/proposals/prop-1", json_reply(200, "prop-2"))
    new_id = await client.market.counter_proposal("sub-1", "prop-1", {"a.b": 1}, "(c=d)")
    assert new_id == "prop-2"
    assert daemon.last_json() == {"properties": {"a.b": 1}, "constraints": "(c=d)"}


async def test_reject_proposal_sends_a_reason_or_json_null(
    daemon: FakeDaemon, client: GolemClient
) -> None:
    path = f"{M}/demands/sub-1/proposals/prop-1/reject"
    daemon.route("POST", path, httpx.Response(204))

    await client.market.reject_proposal("sub-1", "prop-1", "too expensive")
    assert daemon.last_json() == {"message": "too expensive"}

    await client.market.reject_proposal("sub-1", "prop-1", {"message": "m", "golem.x": "y"})
    assert daemon.last_json() == {"message": "m", "golem.x": "y"}

    await client.market.reject_proposal("sub-1", "prop-1")
    assert daemon.last.content == b"null"

    with pytest.raises(ValueError, match="message"):
        await client.market.reject_proposal("sub-1", "prop-1", {"code": "x"})


async def test_get_proposal(daemon: FakeDaemon, client: GolemClient) -> None:
    daemon.route(
        "GET",
        f"{M}/demands/sub-1/proposals/prop-2",
        json_reply(200, proposal_body("prop-2", "Draft") | {"prevProposalId": "prop-1"}),
    )
    proposal = await client.market.get_proposal("sub-1", "prop-2")
    assert proposal.state == "Draft" and proposal.prev_proposal_id == "prop-1"


async def test_create_agreement_sends_valid_to_in_utc(
    daemon: FakeDaemon, client: GolemClient
) -> None:
    daemon.route("POST", f"{M}/agreements", json_reply(201, "agr-1"))
    valid_to = datetime(2030, 1, 2, 5, 4, 5, 678000, timezone(timedelta(hours=2)))

    agreement_id = await client.market.create_agreement("prop-2", valid_to)

    assert agreement_id == "agr-1"
    body = daemon.last_json()
    assert body == {"proposalId": "prop-2", "validTo": "2030-01-02T03:04:05.678000Z"}


async def test_confirm_agreement_passes_app_session_id_only_when_given(
    daemon: FakeDaemon, client: GolemClient
) -> None:
    daemon.route("POST", f"{M}/agreements/agr-1/confirm", httpx.Response(204))
    await client.market.confirm_agreement("agr-1")
    assert dict(daemon.last.url.params) == {}
    assert daemon.last.content == b""
    await client.market.confirm_agreement("agr-1", app_session_id="svc-7")
    assert dict(daemon.last.url.params) == {"appSessionId": "svc-7"}


async def test_wait_for_approval_returns_on_204(daemon: FakeDaemon, client: GolemClient) -> None:
    daemon.route("POST", f"{M}/agreements/agr-1/wait", httpx.Response(204))
    await client.market.wait_for_approval("agr-1", timeout=12)
    assert daemon.last.url.params["timeout"] == "12.0"


@pytest.mark.parametrize("outcome", ["Rejected", "Cancelled", "Expired", "Terminated"])
async def test_wait_for_approval_gone_names_the_outcome(
    daemon: FakeDaemon, client: GolemClient, outcome: str
) -> None:
    path = f"{M}/agreements/agr-1/wait"
    daemon.route("POST", path, error_reply(410, outcome))
    with pytest.raises(GolemAgreementNotApproved) as caught:
        await client.market.wait_for_approval("agr-1", timeout=1)
    assert caught.value.outcome == outcome
    assert isinstance(caught.value, GolemGone)
    assert caught.value.status == 410 and caught.value.path == path
    assert len(daemon.calls("POST", path)) == 1


async def test_wait_for_approval_on_a_terminated_agreement_is_not_approved(
    daemon: FakeDaemon, client: GolemClient
) -> None:
    # yagna 0.17.6 answers 400 (not the spec's 410) once the agreement is terminated.
    path = f"{M}/agreements/agr-1/wait"
    daemon.route("POST", path, error_reply(400, "Agreement [R-agr-1] terminated."))
    with pytest.raises(GolemAgreementNotApproved) as caught:
        await client.market.wait_for_approval("agr-1", timeout=1)
    assert caught.value.outcome == "Terminated"
    assert caught.value.status == 400
    assert isinstance(caught.value.__cause__, GolemBadRequest)
    assert len(daemon.calls("POST", path)) == 1


async def test_wait_for_approval_before_confirm_stays_a_bad_request(
    daemon: FakeDaemon, client: GolemClient
) -> None:
    message = "Agreement [R-agr-1] should be confirmed, before waiting for approval."
    daemon.route("POST", f"{M}/agreements/agr-1/wait", error_reply(400, message))
    with pytest.raises(GolemBadRequest) as caught:
        await client.market.wait_for_approval("agr-1", timeout=1)
    assert not isinstance(caught.value, GolemAgreementNotApproved)
    assert caught.value.message == message


async def test_wait_for_approval_timeout_is_a_timeout(
    daemon: FakeDaemon, client: GolemClient
) -> None:
    path = f"{M}/agreements/agr-1/wait"
    daemon.route("POST", path, error_reply(408, "Timeout while waiting for approval"))
    with pytest.raises(GolemTimeout) as caught:
        await client.market.wait_for_approval("agr-1", timeout=1)
    assert not isinstance(caught.value, GolemAgreementNotApproved)
    assert len(daemon.calls("POST", path)) == 1


async def test_get_agreement_parses_demand_and_offer(
    daemon: FakeDaemon, client: GolemClient
) -> None:
    body = {
        "agreementId": "agr-1",
        "demand": {
            "properties": {"golem.node.debug.subnet": "public"},
            "constraints": "(golem.runtime.name=vm)",
            "demandId": "dem-1",
            "requestorId": REQUESTOR,
            "timestamp": "2024-05-06T07:00:00Z",
        },
        "offer": {
            "properties": OFFER_PROPERTIES,
            "constraints": "()",
            "offerId": "off-1",
            "providerId": PROVIDER,
            "timestamp": "2024-05-06T06:00:00Z",
        },
        "validTo": "2024-05-06T08:00:00Z",
        "approvedDate": "2024-05-06T07:01:00Z",
        "state": "Approved",
        "timestamp": "2024-05-06T07:00:30Z",
        "appSessionId": "svc-7",
        "proposedSignature": "NoSignature",
        "approvedSignature": "NoSignature",
    }
    daemon.route("GET", f"{M}/agreements/agr-1", json_reply(200, body))
    agreement = await client.market.get_agreement("agr-1")
    assert agreement.state == "Approved"
    assert agreement.offer.provider_id == PROVIDER
    assert agreement.demand.requestor_id == REQUESTOR
    assert agreement.approved_date == datetime(2024, 5, 6, 7, 1, tzinfo=UTC)
    assert agreement.app_session_id == "svc-7"


async def test_terminate_agreement_sends_the_reason(
    daemon: FakeDaemon, client: GolemClient
) -> None:
    daemon.route("POST", f"{M}/agreements/agr-1/terminate", httpx.Response(200))
    reason = {"message": "Work finished", "golem.requestor.code": "Success"}
    await client.market.terminate_agreement("agr-1", reason)
    assert daemon.last_json() == reason
    daemon.route("POST", f"{M}/agreements/agr-2/terminate", error_reply(410, "Terminated"))
    with pytest.raises(GolemGone):
        await client.market.terminate_agreement("agr-2", "bye")


async def test_terminate_agreement_without_reason_sends_json_null(
    daemon: FakeDaemon, client: GolemClient
) -> None:
    # yagna refuses a terminate without a body (400 "Content type error") but takes `null`.
    daemon.route("POST", f"{M}/agreements/agr-1/terminate", httpx.Response(200))
    await client.market.terminate_agreement("agr-1")
    assert daemon.last.content == b"null"
    assert daemon.last.headers["content-type"] == "application/json"


async def test_collect_agreement_events(daemon: FakeDaemon, client: GolemClient) -> None:
    daemon.route(
        "GET",
        f"{M}/agreementEvents",
        json_reply(
            200,
            [
                {
                    "eventType": "AgreementApprovedEvent",
                    "eventDate": "2024-05-06T07:01:00Z",
                    "agreementId": "agr-1",
                },
                {
                    "eventType": "AgreementTerminatedEvent",
                    "eventDate": "2024-05-06T09:00:00.5Z",
                    "agreementId": "agr-1",
                    "terminator": "Provider",
                    "signature": "NoSignature",
                    "reason": {"message": "Shutdown", "golem.provider.code": "Shutdown"},
                },
            ],
        ),
    )
    after = datetime(2024, 5, 6, 7, 0, 0, 250000, UTC)

    events = await client.market.collect_agreement_events(
        after, timeout=2, max_events=5, app_session_id="svc-7"
    )

    assert dict(daemon.last.url.params) == {
        "timeout": "2.0",
        "maxEvents": "5",
        "afterTimestamp": "2024-05-06T07:00:00.250000Z",
        "appSessionId": "svc-7",
    }
    approved, terminated = events
    assert approved.event_type == AgreementEventType.APPROVED
    assert approved.reason is None
    assert terminated.event_type == AgreementEventType.TERMINATED
    assert terminated.terminator == "Provider"
    assert terminated.reason is not None and terminated.reason.message == "Shutdown"
    assert terminated.event_date > approved.event_date


async def test_collect_agreement_events_without_filters(
    daemon: FakeDaemon, client: GolemClient
) -> None:
    daemon.route("GET", f"{M}/agreementEvents", json_reply(200, []))
    assert await client.market.collect_agreement_events() == []
    assert set(daemon.last.url.params) == {"timeout", "maxEvents"}
    assert daemon.last.content == b""
