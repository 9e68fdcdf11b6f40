"""The client contract suite, extended to exec and payments on the real provider software.

The project's `GolemClient` as requestor; the provider is a real ya-provider with exe-unit and
the project's runtime. Where tests/contract stops (no ExeUnit for the real daemon), this goes on:
deploy/start/run with real output, a failing command, destroy, debit notes accepted from an
allocation, the provider's own invoice after termination, accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from golem_operator.golem import (
    DebitNoteEventType,
    DocumentStatus,
    ExeScriptCommandResult,
    GolemClient,
    GolemGone,
    GolemNotFound,
    GolemTimeout,
    ProposalState,
)
from golem_operator.realnet.network import RealNetwork
from support.yagna_contract import (
    ContractDaemon,
    demand_constraints,
    demand_properties,
    next_proposal,
    wait_invoice_for,
)

pytestmark = pytest.mark.timeout(600)

DEBIT_NOTE_INTERVAL_S = 10


@pytest.fixture
async def client(realnet_daemon: ContractDaemon) -> AsyncIterator[GolemClient]:
    async with realnet_daemon.client() as golem:
        yield golem


def properties_for(daemon: ContractDaemon, network: RealNetwork) -> dict[str, Any]:
    properties = demand_properties(daemon)
    image = network.image_packages["golem/simple-service:latest"]
    properties["golem.srv.comp.task_package"] = image.task_package
    properties["golem.com.scheme.payu.debit-note.interval-sec?"] = DEBIT_NOTE_INTERVAL_S
    return properties


async def agree(
    client: GolemClient, daemon: ContractDaemon, network: RealNetwork
) -> tuple[str, str, str]:
    """Demand -> Initial offer -> counter -> Draft -> agreement approved by ya-provider."""
    properties = properties_for(daemon, network)
    constraints = demand_constraints(daemon)
    subscription = await client.market.subscribe_demand(properties, constraints)
    initial = await next_proposal(client, subscription, state=ProposalState.INITIAL, within=90)
    offer = initial.proposal.properties
    assert offer["golem.runtime.name"] == "vm"
    assert offer["golem.com.pricing.model"] == "linear"
    countered = await client.market.counter_proposal(
        subscription, initial.proposal.proposal_id, properties, constraints
    )
    draft = await next_proposal(
        client, subscription, state=ProposalState.DRAFT, prev=countered, within=60
    )
    agreement_id = await client.market.create_agreement(
        draft.proposal.proposal_id, datetime.now(UTC) + timedelta(minutes=10)
    )
    await client.market.confirm_agreement(agreement_id)
    await client.market.wait_for_approval(agreement_id, timeout=30)
    return subscription, agreement_id, draft.proposal.issuer_id


async def run_batch(
    client: GolemClient, activity_id: str, commands: list[dict[str, Any]], within: float = 120
) -> list[ExeScriptCommandResult]:
    batch = await client.activity.exec(activity_id, commands)
    deadline = time.monotonic() + within
    results: list[ExeScriptCommandResult] = []
    while time.monotonic() < deadline:
        with contextlib.suppress(GolemTimeout):
            results = await client.activity.get_exec_batch_results(activity_id, batch, timeout=5)
        if results and (results[-1].is_batch_finished or results[-1].result == "Error"):
            return results
    raise AssertionError(f"batch {batch} did not finish in {within} s: {results}")


def capture() -> dict[str, Any]:
    return {"stdout": {"atEnd": {}}, "stderr": {"atEnd": {}}}


async def test_exec_and_payments_against_the_real_provider(
    client: GolemClient, realnet_daemon: ContractDaemon, real_network: RealNetwork
) -> None:
    allocation = await client.payment.create_allocation(
        Decimal("1"),
        realnet_daemon.payment_platform,
        address=realnet_daemon.requestor_id,
        timeout=datetime.now(UTC) + timedelta(hours=1),
    )
    subscription, agreement_id, provider_id = await agree(client, realnet_daemon, real_network)
    assert provider_id in real_network.provider_ids.values()
    since = datetime.now(UTC)
    try:
        created = time.monotonic()
        activity_id = await client.activity.create_activity(agreement_id, timeout=60)
        results = await run_batch(
            client,
            activity_id,
            [
                {"deploy": {}},
                {"start": {}},
                {
                    "run": {
                        "entry_point": "/bin/sh",
                        "args": ["-c", "echo hello-from-real-provider; id -u; pwd; ls /golem/run"],
                        "capture": capture(),
                    }
                },
            ],
        )
        deployed_in = time.monotonic() - created
        assert [r.result for r in results] == ["Ok", "Ok", "Ok"], results
        out = (results[2].stdout or "").split()
        assert out[:3] == ["hello-from-real-provider", "1000", "/golem/work"], results[2]
        assert "simple_service.py" in out
        state = await client.activity.get_state(activity_id)
        assert state.current == "Ready", state

        # a failing command: the batch stops there with the exit code in the message
        failing = await run_batch(
            client,
            activity_id,
            [
                {
                    "run": {
                        "entry_point": "/bin/sh",
                        "args": ["-c", "echo oops >&2; exit 3"],
                        "capture": capture(),
                    }
                }
            ],
        )
        assert failing[-1].result == "Error", failing
        print(f"real failing-command result: {failing[-1]!r}")

        # debit notes at the negotiated cadence, accepted from the allocation
        accepted: list[str] = []
        deadline = time.monotonic() + 4 * DEBIT_NOTE_INTERVAL_S + 30
        after = since
        while len(accepted) < 2 and time.monotonic() < deadline:
            with contextlib.suppress(GolemTimeout):
                for event in await client.payment.collect_debit_note_events(after, timeout=5):
                    after = max(after, event.event_date)
                    if event.event_type != DebitNoteEventType.RECEIVED:
                        continue
                    note = await client.payment.get_debit_note(event.debit_note_id)
                    if note.agreement_id != agreement_id:
                        continue
                    await client.payment.accept_debit_note(
                        note.debit_note_id, note.total_amount_due, allocation.allocation_id
                    )
                    accepted.append(note.debit_note_id)
        assert len(accepted) >= 2, "fewer than two debit notes within four intervals"
        for note_id in accepted:
            note = await client.payment.get_debit_note(note_id)
            assert note.status == DocumentStatus.ACCEPTED, note

        await client.activity.destroy_activity(activity_id, timeout=30)
        gone = await client.activity.get_state(activity_id)
        assert gone.current == "Terminated", gone
    finally:
        terminated_at = datetime.now(UTC)
        with contextlib.suppress(GolemGone):
            await client.market.terminate_agreement(agreement_id, "contract test done")
        with contextlib.suppress(GolemNotFound):
            await client.market.unsubscribe_demand(subscription)

    invoice = await wait_invoice_for(
        client, agreement_id, terminated_at - timedelta(seconds=5), within=90
    )
    assert invoice.issuer_id == provider_id
    assert invoice.amount > 0
    await client.payment.accept_invoice(
        invoice.invoice_id, invoice.amount, allocation.allocation_id
    )
    settled = await client.payment.get_invoice(invoice.invoice_id)
    assert settled.status == DocumentStatus.ACCEPTED
    spent = await client.payment.get_allocation(allocation.allocation_id)
    assert spent.spent_amount >= invoice.amount
    await client.payment.release_allocation(allocation.allocation_id)
    print(f"figures: activity create + deploy/start/run {deployed_in:.1f} s")
    await asyncio.sleep(0)
