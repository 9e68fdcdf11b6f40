"""The project's Golem client against two daemons: the real yagna 0.17.6 and the localnet.

Every test runs once per daemon (`golem_daemon` is parametrised in conftest.py). The requestor
side is always `golem_operator.golem.GolemClient`; the provider side is the yagna stand-in or the
localnet's own providers. Expectations are the real daemon's behaviour: where the localnet
differs, the localnet is wrong. Exec is not covered here (no ExeUnit exists for the real daemon);
the localnet's own tests cover it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from golem_operator.core.payments import allocation_mark, carries_mark, find_marked
from golem_operator.golem import (
    ActivityStateName,
    AgreementEventType,
    AgreementState,
    DocumentStatus,
    GolemAgreementNotApproved,
    GolemBadRequest,
    GolemClient,
    GolemGone,
    GolemNotFound,
    GolemUnauthorized,
    ProposalState,
)
from support.yagna_contract import (
    ContractDaemon,
    Negotiated,
    demand_constraints,
    demand_properties,
    negotiate_agreement,
    next_proposal,
    wait_invoice_for,
)

pytestmark = pytest.mark.timeout(120)

ALLOCATION_TOTAL = Decimal("0.5")


@pytest.fixture
async def client(golem_daemon: ContractDaemon) -> AsyncIterator[GolemClient]:
    async with golem_daemon.client() as golem:
        yield golem


@pytest.fixture
async def agreement(client: GolemClient, golem_daemon: ContractDaemon) -> AsyncIterator[Negotiated]:
    """A fresh approved agreement; terminated and its demand withdrawn afterwards."""
    negotiated = await negotiate_agreement(client, golem_daemon)
    yield negotiated
    with contextlib.suppress(GolemGone):
        await client.market.terminate_agreement(negotiated.agreement_id, "test cleanup")
    with contextlib.suppress(GolemNotFound):
        await client.market.unsubscribe_demand(negotiated.subscription)


async def _allocation(client: GolemClient, daemon: ContractDaemon) -> str:
    allocation = await client.payment.create_allocation(
        ALLOCATION_TOTAL,
        daemon.payment_platform,
        address=daemon.requestor_id,
        timeout=datetime.now(UTC) + timedelta(hours=1),
    )
    return allocation.allocation_id


# --- authentication and identity ----------------------------------------------------------


async def test_wrong_key_raises_unauthorized(golem_daemon: ContractDaemon) -> None:
    wrong_key = "0" * 32
    async with golem_daemon.client(app_key=wrong_key) as client:
        with pytest.raises(GolemUnauthorized) as caught:
            await client.identity.me()
    assert caught.value.status == 401
    assert caught.value.message == "Invalid application key"
    assert wrong_key not in str(caught.value) and wrong_key not in repr(caught.value)


async def test_wrong_key_is_refused_on_every_api(golem_daemon: ContractDaemon) -> None:
    # (A request without any key cannot be built with the client: GolemConfig refuses an empty
    # key. test_daemon_wire_contract.py checks the daemon's answer to it.)
    # One client for all calls, on purpose: yagna 0.17.6 answers 401 without reading a large
    # POST body and then leaves that keep-alive connection hanging; the client must drop it,
    # or the next call waits for its deadline (a GolemTimeout instead of GolemUnauthorized).
    wrong_key = "f" * 32
    properties = demand_properties(golem_daemon)
    properties["golem.node.debug.padding"] = "x" * 8000  # large enough to be left unread
    async with golem_daemon.client(app_key=wrong_key, request_timeout=5.0) as client:
        with pytest.raises(GolemUnauthorized):
            await client.market.subscribe_demand(properties, demand_constraints(golem_daemon))
        with pytest.raises(GolemUnauthorized):
            await client.activity.get_state("0" * 32)
        with pytest.raises(GolemUnauthorized):
            await client.market.subscribe_demand(properties, demand_constraints(golem_daemon))
        with pytest.raises(GolemUnauthorized):
            await client.payment.get_allocation("00000000-0000-0000-0000-000000000000")


async def test_me_names_the_requestor(client: GolemClient, golem_daemon: ContractDaemon) -> None:
    me = await client.identity.me()
    assert me.identity == golem_daemon.requestor_id
    assert me.identity.startswith("0x") and len(me.identity) == 42
    assert me.role == "manager"


# --- market ---------------------------------------------------------------------------------


async def test_demand_subscribe_events_unsubscribe(
    client: GolemClient, golem_daemon: ContractDaemon
) -> None:
    subscription = await client.market.subscribe_demand(
        demand_properties(golem_daemon), demand_constraints(golem_daemon)
    )
    initial = await next_proposal(client, subscription, state=ProposalState.INITIAL)
    offer = initial.proposal.properties
    assert offer["golem.node.debug.subnet"] == golem_daemon.subnet
    assert offer["golem.runtime.name"] == "vm"
    assert f"golem.com.payment.platform.{golem_daemon.payment_platform}.address" in offer
    assert initial.proposal.issuer_id != golem_daemon.requestor_id

    await client.market.unsubscribe_demand(subscription)
    with pytest.raises(GolemNotFound) as again:
        await client.market.unsubscribe_demand(subscription)
    assert again.value.message == f"Demand [{subscription}] not found."
    with pytest.raises(GolemNotFound) as events:
        await client.market.collect_demand_events(subscription, timeout=1)
    assert events.value.message == (
        f"Subscription [{subscription}] not found. Could be unsubscribed."
    )


async def test_demand_on_another_subnet_gets_no_proposal(
    client: GolemClient, golem_daemon: ContractDaemon
) -> None:
    properties = demand_properties(golem_daemon)
    properties["golem.node.debug.subnet"] = "nobody-offers-here"
    constraints = demand_constraints(golem_daemon).replace(
        f"(golem.node.debug.subnet={golem_daemon.subnet})",
        "(golem.node.debug.subnet=nobody-offers-here)",
    )
    subscription = await client.market.subscribe_demand(properties, constraints)
    try:
        assert await client.market.collect_demand_events(subscription, timeout=1.5) == []
    finally:
        await client.market.unsubscribe_demand(subscription)


async def test_negotiation_reaches_an_approved_agreement(
    client: GolemClient, golem_daemon: ContractDaemon, agreement: Negotiated
) -> None:
    details = await client.market.get_agreement(agreement.agreement_id)
    assert details.agreement_id == agreement.agreement_id
    assert details.state == AgreementState.APPROVED
    assert details.demand.requestor_id == golem_daemon.requestor_id
    assert details.offer.provider_id == agreement.provider_id
    assert details.demand.properties["golem.node.debug.subnet"] == golem_daemon.subnet
    assert details.approved_date is not None


async def test_agreement_events_report_approval_then_termination(
    client: GolemClient, golem_daemon: ContractDaemon
) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    negotiated = await negotiate_agreement(client, golem_daemon)
    try:
        events = await client.market.collect_agreement_events(since, timeout=2, max_events=100)
        mine = [e for e in events if e.agreement_id == negotiated.agreement_id]
        # A daemon hosting both parties (yagna with the stand-in) reports each side's event.
        assert mine
        assert {e.event_type for e in mine} == {AgreementEventType.APPROVED}

        await client.market.terminate_agreement(negotiated.agreement_id, "contract test")
        after = mine[-1].event_date
        events = await client.market.collect_agreement_events(after, timeout=2, max_events=100)
        terminated = [
            e
            for e in events
            if e.agreement_id == negotiated.agreement_id
            and e.event_type == AgreementEventType.TERMINATED
        ]
        assert terminated
        assert all(e.reason is not None and e.reason.message == "contract test" for e in terminated)
        # yagna hosting both parties names "Provider" as terminator on both copies of the
        # event, so who terminated is not asserted here.
        assert all(e.terminator in ("Requestor", "Provider") for e in terminated)
    finally:
        with contextlib.suppress(GolemGone):
            await client.market.terminate_agreement(negotiated.agreement_id, "test cleanup")
        await client.market.unsubscribe_demand(negotiated.subscription)


async def test_terminate_agreement(client: GolemClient, agreement: Negotiated) -> None:
    await client.market.terminate_agreement(agreement.agreement_id, {"message": "done"})
    details = await client.market.get_agreement(agreement.agreement_id)
    assert details.state == AgreementState.TERMINATED
    with pytest.raises(GolemGone) as again:
        await client.market.terminate_agreement(agreement.agreement_id, "again")
    assert again.value.status == 410
    assert again.value.message == "Can't update Agreement state from Terminated to Terminated."


async def test_waiting_on_a_terminated_agreement_says_it_will_not_be_approved(
    client: GolemClient, agreement: Negotiated
) -> None:
    await client.market.terminate_agreement(agreement.agreement_id, "done")
    # yagna answers 400 "Agreement [R-<id>] terminated." here (not the spec's 410).
    with pytest.raises(GolemAgreementNotApproved) as caught:
        await client.market.wait_for_approval(agreement.agreement_id, timeout=2)
    assert caught.value.outcome == "Terminated"


async def test_unknown_agreement_is_not_found(client: GolemClient) -> None:
    with pytest.raises(GolemNotFound):
        await client.market.get_agreement("ab" * 32)


# --- activity -------------------------------------------------------------------------------


async def test_activity_create_state_destroy(client: GolemClient, agreement: Negotiated) -> None:
    activity_id = await client.activity.create_activity(agreement.agreement_id, timeout=10)
    state = await client.activity.get_state(activity_id)
    assert state.current == ActivityStateName.INITIALIZED
    assert state.alive

    await client.activity.destroy_activity(activity_id, timeout=10)
    state = await client.activity.get_state(activity_id)
    assert state.current == ActivityStateName.TERMINATED
    assert not state.alive


async def test_unknown_activity_is_not_found(client: GolemClient) -> None:
    # yagna 0.17.6 answers 500 "DAO error: Not found: ..." here; the client maps it.
    with pytest.raises(GolemNotFound) as state:
        await client.activity.get_state("0" * 32)
    assert state.value.message.startswith("DAO error: Not found")
    with pytest.raises(GolemNotFound):
        await client.activity.destroy_activity("0" * 32, timeout=2)


async def test_activity_needs_an_approved_agreement(
    client: GolemClient, agreement: Negotiated
) -> None:
    await client.market.terminate_agreement(agreement.agreement_id, "before any activity")
    with pytest.raises(GolemBadRequest) as caught:
        await client.activity.create_activity(agreement.agreement_id, timeout=5)
    assert caught.value.message == (
        f"Bad request: Agreement {agreement.agreement_id} is not Approved. "
        "Current state: Terminated"
    )
    with pytest.raises(GolemNotFound) as unknown:
        await client.activity.create_activity("ab" * 32, timeout=5)
    assert unknown.value.message == f"Not found: {'ab' * 32}"


async def test_terminate_without_a_reason_sends_null_and_is_accepted(
    client: GolemClient, agreement: Negotiated
) -> None:
    await client.market.terminate_agreement(agreement.agreement_id)
    details = await client.market.get_agreement(agreement.agreement_id)
    assert details.state == AgreementState.TERMINATED


# --- payment --------------------------------------------------------------------------------


async def test_allocation_create_get_release(
    client: GolemClient, golem_daemon: ContractDaemon
) -> None:
    allocation_id = await _allocation(client, golem_daemon)
    allocation = await client.payment.get_allocation(allocation_id)
    assert allocation.allocation_id == allocation_id
    assert allocation.total_amount == ALLOCATION_TOTAL
    assert allocation.spent_amount == 0
    assert allocation.remaining_amount == ALLOCATION_TOTAL
    assert allocation.address == golem_daemon.requestor_id
    assert allocation.payment_platform == golem_daemon.payment_platform

    await client.payment.release_allocation(allocation_id)
    with pytest.raises(GolemNotFound) as released:
        await client.payment.get_allocation(allocation_id)
    assert released.value.message == "Not Found"  # the daemon's body is {"message": null}
    with pytest.raises(GolemGone) as again:
        await client.payment.release_allocation(allocation_id)
    assert again.value.message == f"Allocation {allocation_id} has been already released"


async def test_allocations_are_listed_with_the_expiry_they_were_created_with(
    client: GolemClient, golem_daemon: ContractDaemon
) -> None:
    # The operator finds an allocation it created just before a crash by its expiry (the
    # daemon keeps no free-form field): the listing must carry it to the millisecond.
    mark = allocation_mark(datetime.now(UTC), 437)
    created = await client.payment.create_allocation(
        ALLOCATION_TOTAL, golem_daemon.payment_platform, golem_daemon.requestor_id, timeout=mark
    )
    other = await _allocation(client, golem_daemon)
    try:
        listed = {a.allocation_id: a for a in await client.payment.list_allocations()}
        assert created.allocation_id in listed and other in listed
        mine = listed[created.allocation_id]
        assert mine.timeout is not None and carries_mark(mine.timeout, mark), mine.timeout
        assert not carries_mark(listed[other].timeout, mark)
        found = find_marked(
            [
                (a.allocation_id, a.timeout, str(a.payment_platform), a.address)
                for a in listed.values()
            ],
            mark,
            platform=golem_daemon.payment_platform,
            address=golem_daemon.requestor_id,
        )
        assert found == [created.allocation_id]
        # afterTimestamp filters on the expiry: the year-ahead mark passes, the 1 h one not.
        later = await client.payment.list_allocations(expiring_after=mark - timedelta(seconds=1))
        assert created.allocation_id in {a.allocation_id for a in later}
        assert other not in {a.allocation_id for a in later}
    finally:
        await client.payment.release_allocation(created.allocation_id)
        await client.payment.release_allocation(other)
    # Released allocations are no longer listed.
    remaining = {a.allocation_id for a in await client.payment.list_allocations()}
    assert created.allocation_id not in remaining and other not in remaining


async def test_allocation_amend_changes_the_total_and_refuses_the_impossible(
    client: GolemClient, golem_daemon: ContractDaemon
) -> None:
    allocation_id = await _allocation(client, golem_daemon)
    try:
        bigger = await client.payment.amend_allocation(allocation_id, Decimal("0.75"))
        assert bigger.allocation_id == allocation_id
        assert bigger.total_amount == Decimal("0.75")
        assert bigger.remaining_amount == Decimal("0.75")
        smaller = await client.payment.amend_allocation(allocation_id, Decimal("0.2"))
        assert (smaller.total_amount, smaller.remaining_amount) == (Decimal("0.2"),) * 2
        fetched = await client.payment.get_allocation(allocation_id)
        assert fetched.total_amount == Decimal("0.2")
        with pytest.raises(GolemBadRequest) as past:
            await client.payment.amend_allocation(
                allocation_id, timeout=datetime.now(UTC) - timedelta(hours=1)
            )
        assert past.value.message == "New allocation timeout is in the past"
    finally:
        await client.payment.release_allocation(allocation_id)
    # yagna 0.17.6 reads a released allocation as missing here (unlike DELETE: 410).
    with pytest.raises(GolemNotFound):
        await client.payment.amend_allocation(allocation_id, Decimal("0.3"))


async def test_allocation_beyond_the_funds_is_a_bad_request(
    client: GolemClient, golem_daemon: ContractDaemon
) -> None:
    with pytest.raises(GolemBadRequest):
        await client.payment.create_allocation(
            Decimal("1e30"),
            golem_daemon.payment_platform,
            address=golem_daemon.requestor_id,
            timeout=datetime.now(UTC) + timedelta(hours=1),
        )


async def test_invoice_accept(
    client: GolemClient, golem_daemon: ContractDaemon, agreement: Negotiated
) -> None:
    allocation_id = await _allocation(client, golem_daemon)
    try:
        activity_id = await client.activity.create_activity(agreement.agreement_id, timeout=10)
        await client.activity.destroy_activity(activity_id, timeout=10)
        since = datetime.now(UTC) - timedelta(seconds=1)
        await client.market.terminate_agreement(agreement.agreement_id, "work done")
        await golem_daemon.after_terminate(agreement.agreement_id)

        invoice = await wait_invoice_for(client, agreement.agreement_id, since)
        assert invoice.status == DocumentStatus.RECEIVED
        assert invoice.recipient_id == golem_daemon.requestor_id
        assert invoice.issuer_id == agreement.provider_id
        assert invoice.payment_platform == golem_daemon.payment_platform
        assert activity_id in invoice.activity_ids
        assert 0 < invoice.amount <= ALLOCATION_TOTAL

        await client.payment.accept_invoice(invoice.invoice_id, invoice.amount, allocation_id)
        accepted = await client.payment.get_invoice(invoice.invoice_id)
        assert accepted.status == DocumentStatus.ACCEPTED
        allocation = await client.payment.get_allocation(allocation_id)
        assert allocation.spent_amount == invoice.amount
        assert allocation.remaining_amount == ALLOCATION_TOTAL - invoice.amount
    finally:
        await client.payment.release_allocation(allocation_id)
