"""Ending agreements that were never approved, per yagna 0.17.6 (and the localnet alike).

An agreement created and never confirmed (`Proposal`) cannot be withdrawn on yagna 0.17.6:
cancel is forwarded to a provider that never received it (500, the agreement stays a
Proposal) and terminate refuses the state (409). It is inert — only the requestor's confirm
sends it to the provider — and expires at its validTo. `starting.end_agreement`, the
operator's one way to end an agreement whatever its state, counts it as ended and terminates
an approved one; it runs here against both daemons.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from golem_operator.golem import (
    GolemClient,
    GolemConflict,
    GolemGone,
    GolemNotFound,
    GolemServerError,
    ProposalState,
)
from golem_operator.handlers.starting import end_agreement
from support.yagna_contract import (
    ContractDaemon,
    demand_constraints,
    demand_properties,
    negotiate_agreement,
    next_proposal,
)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def client(golem_daemon: ContractDaemon) -> AsyncIterator[GolemClient]:
    async with golem_daemon.client() as golem:
        yield golem


async def _unconfirmed(client: GolemClient, daemon: ContractDaemon) -> tuple[str, str]:
    """(subscription, agreement id) of an agreement created and never confirmed."""
    properties = demand_properties(daemon)
    constraints = demand_constraints(daemon)
    subscription = await client.market.subscribe_demand(properties, constraints)
    initial = await next_proposal(client, subscription, state=ProposalState.INITIAL)
    countered = await client.market.counter_proposal(
        subscription, initial.proposal.proposal_id, properties, constraints
    )
    draft = await next_proposal(client, subscription, state=ProposalState.DRAFT, prev=countered)
    agreement_id = await client.market.create_agreement(
        draft.proposal.proposal_id, datetime.now(UTC) + timedelta(minutes=10)
    )
    return subscription, agreement_id


async def test_an_unconfirmed_agreement_can_be_neither_cancelled_nor_terminated(
    client: GolemClient, golem_daemon: ContractDaemon
) -> None:
    subscription, agreement_id = await _unconfirmed(client, golem_daemon)
    try:
        assert (await client.market.get_agreement(agreement_id)).state == "Proposal"
        with pytest.raises(GolemConflict) as refused:
            await client.market.terminate_agreement(agreement_id, "too early")
        assert not isinstance(refused.value, GolemGone), refused.value
        assert refused.value.message == "Can't update Agreement state from Proposal to Terminated."
        with pytest.raises(GolemServerError) as failed:
            await client.market.cancel_agreement(agreement_id, {"message": "not needed"})
        assert failed.value.status == 500
        assert failed.value.message == (
            "Protocol error while approving: Remote failed to approve. "
            f"Error: Agreement [P-{agreement_id}] not found."
        )
        assert (await client.market.get_agreement(agreement_id)).state == "Proposal"
        with pytest.raises(GolemNotFound) as unknown:
            await client.market.cancel_agreement("0" * 64, "no such agreement")
        assert unknown.value.status == 404
    finally:
        with contextlib.suppress(GolemNotFound, GolemGone):
            await client.market.unsubscribe_demand(subscription)


async def test_end_agreement_leaves_a_proposal_and_terminates_an_approved_one(
    client: GolemClient, golem_daemon: ContractDaemon
) -> None:
    subscription, unconfirmed = await _unconfirmed(client, golem_daemon)
    try:
        await end_agreement(client, unconfirmed, "not needed", code="Cancelled")
        assert (await client.market.get_agreement(unconfirmed)).state == "Proposal"
    finally:
        with contextlib.suppress(GolemNotFound, GolemGone):
            await client.market.unsubscribe_demand(subscription)
    approved = await negotiate_agreement(client, golem_daemon)
    try:
        await end_agreement(client, approved.agreement_id, "done", code="Success")
        assert (await client.market.get_agreement(approved.agreement_id)).state == "Terminated"
        await end_agreement(client, approved.agreement_id, "again", code="Success")
    finally:
        with contextlib.suppress(GolemNotFound, GolemGone):
            await client.market.unsubscribe_demand(approved.subscription)
