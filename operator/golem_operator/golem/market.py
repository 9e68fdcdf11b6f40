"""Market API of yagna, requestor side (market-api.yaml, base path /market-api/v1).

`GolemClient.market` is a `MarketApi`. The operator publishes a demand, polls it for offer
proposals, counter-proposes, turns a draft proposal into an agreement, waits for the
provider's approval, follows agreement events and finally terminates the agreement and
unsubscribes the demand.

`timeout` arguments in seconds are the daemon-side wait, sent as the `timeout` query
parameter (hence the ASYNC109 waivers); the client's own deadline is that wait plus
`GolemConfig.request_timeout`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from pydantic import TypeAdapter

from golem_operator.golem.errors import GolemAgreementNotApproved, GolemBadRequest, GolemGone
from golem_operator.golem.models import (
    DEMAND_EVENTS,
    Agreement,
    AgreementOperationEvent,
    Demand,
    DemandEvent,
    Proposal,
)
from golem_operator.golem.requesting import (
    Requester,
    check_ack_timeout,
    check_max_events,
    check_poll_timeout,
    parse_adapted,
    parse_id,
    parse_model,
    wire_datetime,
)

BASE: Final = "/market-api/v1"

_AGREEMENT_EVENTS: Final = TypeAdapter(list[AgreementOperationEvent])
_DEMANDS: Final = TypeAdapter(list[Demand])

# yagna's 400 answer to waitForApproval on a terminated agreement: "Agreement [R-…] terminated."
_TERMINATED: Final = re.compile(r"^Agreement \[[^\]]*\] terminated\.$")

ReasonArg = Mapping[str, Any] | str | None
"""A Reason body: a mapping with at least `message`, a bare message, or None (JSON null)."""


def _reason_body(reason: ReasonArg) -> Any:
    if reason is None:
        return None
    if isinstance(reason, str):
        return {"message": reason}
    if "message" not in reason:
        raise ValueError("a reason mapping needs a 'message' key")
    return dict(reason)


class MarketApi:
    """Requestor calls of the market API."""

    def __init__(self, requester: Requester) -> None:
        self._requester = requester

    async def subscribe_demand(self, properties: Mapping[str, Any], constraints: str) -> str:
        """POST /demands: publish a demand; returns its subscription id."""
        response = await self._requester.request(
            "POST",
            f"{BASE}/demands",
            body={"properties": dict(properties), "constraints": constraints},
        )
        return parse_id(response)

    async def unsubscribe_demand(self, subscription_id: str) -> None:
        """DELETE /demands/{id}: withdraw the demand (404/410 if already gone)."""
        await self._requester.request(
            "DELETE",
            f"{BASE}/demands/{{subscriptionId}}",
            path_params={"subscriptionId": subscription_id},
        )

    async def list_demands(self) -> list[Demand]:
        """GET /demands: every demand this identity has subscribed and not withdrawn."""
        response = await self._requester.request("GET", f"{BASE}/demands")
        return parse_adapted(response, _DEMANDS, "list of demands")

    async def collect_demand_events(
        self,
        subscription_id: str,
        *,
        timeout: float = 5.0,  # noqa: ASYNC109
        max_events: int = 10,
    ) -> list[DemandEvent]:
        """GET /demands/{id}/events: long-poll for proposal events (empty list when none).

        Raises `GolemNotFound` once the demand is unsubscribed or expired (the daemon drops
        demands after their expiration): subscribe a new one.
        """
        wait = check_poll_timeout(timeout)
        response = await self._requester.request(
            "GET",
            f"{BASE}/demands/{{subscriptionId}}/events",
            path_params={"subscriptionId": subscription_id},
            params={"timeout": wait, "maxEvents": check_max_events(max_events)},
            wait=wait,
        )
        return parse_adapted(response, DEMAND_EVENTS, "list of demand events")

    async def counter_proposal(
        self,
        subscription_id: str,
        proposal_id: str,
        properties: Mapping[str, Any],
        constraints: str,
    ) -> str:
        """POST /demands/{id}/proposals/{proposalId}: answer an offer; returns the new id."""
        response = await self._requester.request(
            "POST",
            f"{BASE}/demands/{{subscriptionId}}/proposals/{{proposalId}}",
            path_params={"subscriptionId": subscription_id, "proposalId": proposal_id},
            body={"properties": dict(properties), "constraints": constraints},
        )
        return parse_id(response)

    async def reject_proposal(
        self, subscription_id: str, proposal_id: str, reason: ReasonArg = None
    ) -> None:
        """POST /demands/{id}/proposals/{proposalId}/reject: end this negotiation chain."""
        await self._requester.request(
            "POST",
            f"{BASE}/demands/{{subscriptionId}}/proposals/{{proposalId}}/reject",
            path_params={"subscriptionId": subscription_id, "proposalId": proposal_id},
            body=_reason_body(reason),
        )

    async def get_proposal(self, subscription_id: str, proposal_id: str) -> Proposal:
        """GET /demands/{id}/proposals/{proposalId}."""
        response = await self._requester.request(
            "GET",
            f"{BASE}/demands/{{subscriptionId}}/proposals/{{proposalId}}",
            path_params={"subscriptionId": subscription_id, "proposalId": proposal_id},
        )
        return parse_model(response, Proposal)

    async def create_agreement(self, proposal_id: str, valid_to: datetime) -> str:
        """POST /agreements: draft an agreement from a Draft proposal; returns its id."""
        response = await self._requester.request(
            "POST",
            f"{BASE}/agreements",
            body={"proposalId": proposal_id, "validTo": wire_datetime(valid_to)},
        )
        return parse_id(response)

    async def confirm_agreement(self, agreement_id: str, app_session_id: str | None = None) -> None:
        """POST /agreements/{id}/confirm: sign and send the agreement to the provider."""
        await self._requester.request(
            "POST",
            f"{BASE}/agreements/{{agreementId}}/confirm",
            path_params={"agreementId": agreement_id},
            params={"appSessionId": app_session_id} if app_session_id is not None else None,
        )

    async def wait_for_approval(self, agreement_id: str, *, timeout: float = 15.0) -> None:  # noqa: ASYNC109
        """POST /agreements/{id}/wait: return once the provider approved.

        Raises `GolemAgreementNotApproved` (a `GolemGone`) when the agreement was
        rejected, cancelled, expired (410) or terminated (yagna: 400 `Agreement [..]
        terminated.`); its `outcome` says which. Raises `GolemTimeout` (408) when nothing
        was decided within `timeout`: wait again. An unconfirmed agreement is a
        `GolemBadRequest` (400).
        """
        wait = check_ack_timeout(timeout)
        try:
            await self._requester.request(
                "POST",
                f"{BASE}/agreements/{{agreementId}}/wait",
                path_params={"agreementId": agreement_id},
                params={"timeout": wait},
                wait=wait,
            )
        except GolemGone as gone:
            raise GolemAgreementNotApproved(
                gone.message, status=gone.status, method=gone.method, path=gone.path
            ) from gone
        except GolemBadRequest as bad:
            if _TERMINATED.search(bad.message) is None:
                raise
            raise GolemAgreementNotApproved(
                bad.message, status=bad.status, method=bad.method, path=bad.path
            ) from bad

    async def get_agreement(self, agreement_id: str) -> Agreement:
        """GET /agreements/{id}."""
        response = await self._requester.request(
            "GET",
            f"{BASE}/agreements/{{agreementId}}",
            path_params={"agreementId": agreement_id},
        )
        return parse_model(response, Agreement)

    async def cancel_agreement(self, agreement_id: str, reason: ReasonArg = None) -> None:
        """POST /agreements/{id}/cancel: withdraw an agreement the provider has not decided.

        For an agreement in `Proposal` (created, never confirmed) or `Pending` (confirmed, not
        yet approved) state. Raises `GolemGone` (410) once it is past those states (approved,
        rejected, cancelled, expired, terminated): an Approved one must be terminated instead.
        """
        await self._requester.request(
            "POST",
            f"{BASE}/agreements/{{agreementId}}/cancel",
            path_params={"agreementId": agreement_id},
            body=_reason_body(reason),
        )

    async def terminate_agreement(self, agreement_id: str, reason: ReasonArg = None) -> None:
        """POST /agreements/{id}/terminate: end an approved agreement.

        Always sends a body (yagna refuses none with 400): the Reason, or JSON `null` for
        `reason=None`, which yagna accepts. Raises `GolemGone` (410) when the agreement is
        already terminated (or otherwise ended), `GolemConflict` (409) before it was
        confirmed.
        """
        await self._requester.request(
            "POST",
            f"{BASE}/agreements/{{agreementId}}/terminate",
            path_params={"agreementId": agreement_id},
            body=_reason_body(reason),
        )

    async def collect_agreement_events(
        self,
        after_timestamp: datetime | None = None,
        *,
        timeout: float = 5.0,  # noqa: ASYNC109
        max_events: int = 10,
        app_session_id: str | None = None,
    ) -> list[AgreementOperationEvent]:
        """GET /agreementEvents: long-poll for approved/rejected/cancelled/terminated events.

        Pass the `event_date` of the last processed event as `after_timestamp`.
        """
        wait = check_poll_timeout(timeout)
        params: dict[str, str | int | float] = {
            "timeout": wait,
            "maxEvents": check_max_events(max_events),
        }
        if after_timestamp is not None:
            params["afterTimestamp"] = wire_datetime(after_timestamp)
        if app_session_id is not None:
            params["appSessionId"] = app_session_id
        response = await self._requester.request(
            "GET", f"{BASE}/agreementEvents", params=params, wait=wait
        )
        return parse_adapted(response, _AGREEMENT_EVENTS, "list of agreement events")
