"""What the client contract suite needs from a daemon, and the requestor steps it repeats.

`tests/contract/conftest.py` builds one `ContractDaemon` per daemon kind (the real yagna with the
provider stand-in, or the project's localnet with its own providers);
`tests/contract/test_client_contract.py` drives the project's `GolemClient` through the helpers
below, identically against both. The helpers use only the client's public API.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from golem_operator.golem import (
    GolemClient,
    GolemConfig,
    GolemTimeout,
    Invoice,
    InvoiceEventType,
    ProposalEvent,
    ProposalState,
)

# Run-time package reference: never fetched (no ExeUnit runs here), only matched on.
TASK_PACKAGE = "hash:sha3:" + "ab" * 28 + ":http://127.0.0.1:1/contract-test.gvmi"
INVOICE_WAIT_S = 20.0


@dataclass(frozen=True)
class ContractDaemon:
    """A daemon under test: where it is, the requestor's key, and the provider-side hooks.

    `after_terminate(agreement_id)` makes the provider side bill the terminated agreement:
    the yagna stand-in issues and sends an invoice; the localnet's providers bill on their
    own, so there it does nothing.
    """

    kind: str
    url: str
    app_key: str = field(repr=False)
    requestor_id: str
    subnet: str
    payment_platform: str
    after_terminate: Callable[[str], Awaitable[None]] = field(repr=False)

    def client(self, app_key: str | None = None, **settings: Any) -> GolemClient:
        key = self.app_key if app_key is None else app_key
        return GolemClient(GolemConfig(url=self.url, app_key=key, **settings))


def demand_properties(
    daemon: ContractDaemon, *, ttl: timedelta = timedelta(hours=1)
) -> dict[str, Any]:
    """A VM demand on the daemon's subnet and payment platform (yagna-offline.md bodies)."""
    platform = daemon.payment_platform
    expiration_ms = int((datetime.now(UTC) + ttl).timestamp() * 1000)
    return {
        "golem.node.id.name": "golem-operator-contract",
        "golem.node.debug.subnet": daemon.subnet,
        "golem.srv.comp.expiration": expiration_ms,
        "golem.srv.comp.task_package": TASK_PACKAGE,
        "golem.srv.comp.vm.package_format": "gvmkit-squash",
        "golem.com.payment.debit-notes.accept-timeout?": 240,
        "golem.com.payment.chosen-platform": platform,
        f"golem.com.payment.platform.{platform}.address": daemon.requestor_id,
    }


def demand_constraints(daemon: ContractDaemon) -> str:
    platform = daemon.payment_platform
    return (
        "(&(golem.inf.mem.gib>=0.5)(golem.inf.storage.gib>=2.0)(golem.runtime.name=vm)"
        f"(golem.node.debug.subnet={daemon.subnet})"
        f"(golem.com.payment.platform.{platform}.address=*)"
        "(golem.com.pricing.model=linear))"
    )


async def next_proposal(
    client: GolemClient,
    subscription: str,
    *,
    state: ProposalState,
    prev: str | None = None,
    within: float = 15.0,
) -> ProposalEvent:
    """Poll the demand until a proposal in `state` arrives (answering `prev`, if given)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        events = await client.market.collect_demand_events(subscription, timeout=1.0)
        for event in events:
            if not isinstance(event, ProposalEvent) or event.proposal.state != state:
                continue
            if prev is None or event.proposal.prev_proposal_id == prev:
                return event
    raise AssertionError(f"no {state} proposal on {subscription} within {within} s")


@dataclass(frozen=True)
class Negotiated:
    subscription: str
    agreement_id: str
    provider_id: str


async def negotiate_agreement(client: GolemClient, daemon: ContractDaemon) -> Negotiated:
    """Demand -> offer proposal -> counter -> provider draft -> agreement -> approved."""
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
    await client.market.confirm_agreement(agreement_id)
    await client.market.wait_for_approval(agreement_id, timeout=15)
    return Negotiated(subscription, agreement_id, draft.proposal.issuer_id)


async def wait_invoice_for(
    client: GolemClient, agreement_id: str, since: datetime, *, within: float = INVOICE_WAIT_S
) -> Invoice:
    """The first invoice received after `since` that bills `agreement_id`."""
    deadline = time.monotonic() + within
    after = since
    while time.monotonic() < deadline:
        try:
            events = await client.payment.collect_invoice_events(after, timeout=1.0)
        except GolemTimeout:
            continue
        for event in events:
            after = max(after, event.event_date)
            if event.event_type != InvoiceEventType.RECEIVED:
                continue
            invoice = await client.payment.get_invoice(event.invoice_id)
            if invoice.agreement_id == agreement_id:
                return invoice
        await asyncio.sleep(0)
    raise AssertionError(f"no invoice for agreement {agreement_id} within {within} s")
