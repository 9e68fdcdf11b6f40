"""Local network market states, provider faults, debit notes, invoices and the audit view."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

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

M = "/market-api/v1"
P = "/payment-api/v1"


async def test_demand_gets_one_initial_proposal_per_matching_provider(
    yagna: httpx.AsyncClient,
) -> None:
    body = await demand_body(yagna)
    demand_id = (await yagna.post(f"{M}/demands", json=body)).json()
    events = await collect(yagna, demand_id, want=2)
    names = sorted(e["proposal"]["properties"]["golem.node.id.name"] for e in events)
    assert names == ["prov-1", "prov-2"]
    assert {e["proposal"]["state"] for e in events} == {"Initial"}
    coeffs = events[0]["proposal"]["properties"]["golem.com.pricing.model.linear.coeffs"]
    assert coeffs == [0.1 / 3600, 0.02 / 3600, 0.0]

    unmatched = await demand_body(yagna, constraints="(golem.inf.mem.gib>=1000)")
    other = (await yagna.post(f"{M}/demands", json=unmatched)).json()
    empty = await yagna.get(f"{M}/demands/{other}/events", params={"timeout": 0.3})
    assert (empty.status_code, empty.json()) == (200, [])

    assert (await yagna.delete(f"{M}/demands/{demand_id}")).status_code == 204
    again = await yagna.delete(f"{M}/demands/{demand_id}")
    assert again.status_code == 404
    assert again.json() == {"message": f"Demand [{demand_id}] not found."}


async def test_agreement_needs_a_negotiated_proposal(yagna: httpx.AsyncClient) -> None:
    body = await demand_body(yagna)
    demand_id = (await yagna.post(f"{M}/demands", json=body)).json()
    initial = (await collect(yagna, demand_id, want=1))[0]["proposal"]
    valid_to = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    premature = await yagna.post(
        f"{M}/agreements", json={"proposalId": initial["proposalId"], "validTo": valid_to}
    )
    assert premature.status_code == 400
    assert "No negotiation with Provider took place" in premature.json()["message"]
    rejected = await yagna.post(
        f"{M}/demands/{demand_id}/proposals/{initial['proposalId']}/reject",
        json={"message": "no thanks"},
    )
    assert rejected.status_code == 204
    countered = await yagna.post(
        f"{M}/demands/{demand_id}/proposals/{initial['proposalId']}", json=body
    )
    assert countered.status_code == 410


async def test_provider_rejects_a_counter_proposal_with_a_foreign_platform(
    yagna: httpx.AsyncClient,
) -> None:
    body = await demand_body(yagna)
    demand_id = (await yagna.post(f"{M}/demands", json=body)).json()
    initial = (await collect(yagna, demand_id, want=1))[0]["proposal"]
    body["properties"]["golem.com.payment.chosen-platform"] = "erc20-polygon-glm"
    counter = await yagna.post(
        f"{M}/demands/{demand_id}/proposals/{initial['proposalId']}", json=body
    )
    events = [
        e for e in await collect(yagna, demand_id, want=2) if e["eventType"] != "ProposalEvent"
    ]
    assert events[0]["eventType"] == "ProposalRejectedEvent"
    assert events[0]["proposalId"] == counter.json()
    assert "erc20-polygon-glm" in events[0]["reason"]["message"]


async def test_agreement_states_and_events(yagna: httpx.AsyncClient) -> None:
    start = datetime.now(UTC).isoformat()
    deal = await negotiate(yagna)
    agreement = (await yagna.get(f"{M}/agreements/{deal.agreement_id}")).json()
    assert agreement["state"] == "Approved"
    assert agreement["offer"]["properties"]["golem.node.id.name"] == deal.provider_name
    again = await yagna.post(f"{M}/agreements/{deal.agreement_id}/confirm")
    assert again.status_code == 410
    await yagna.post(f"{M}/agreements/{deal.agreement_id}/terminate", json={"message": "bye"})
    events = (
        await yagna.get(f"{M}/agreementEvents", params={"afterTimestamp": start, "timeout": 1})
    ).json()
    assert [e["eventType"] for e in events] == [
        "AgreementApprovedEvent",
        "AgreementTerminatedEvent",
    ]
    assert events[1]["terminator"] == "Requestor"
    later = await yagna.get(
        f"{M}/agreementEvents", params={"afterTimestamp": events[1]["eventDate"], "timeout": 0.2}
    )
    assert later.json() == []
    twice = await yagna.post(f"{M}/agreements/{deal.agreement_id}/terminate", json=None)
    assert (twice.status_code, twice.json()) == (400, {"message": "Content type error"})
    twice = await yagna.post(
        f"{M}/agreements/{deal.agreement_id}/terminate", json={"message": "again"}
    )
    assert (twice.status_code, twice.json()["message"]) == (
        410,
        "Can't update Agreement state from Terminated to Terminated.",
    )


async def test_busy_provider_offers_again_after_its_agreement_ends(
    yagna: httpx.AsyncClient,
) -> None:
    first = await negotiate(yagna, provider="prov-1")
    body = await demand_body(yagna)
    demand_id = (await yagna.post(f"{M}/demands", json=body)).json()
    names = [
        e["proposal"]["properties"]["golem.node.id.name"]
        for e in await collect(yagna, demand_id, 2, 1)
    ]
    assert names == ["prov-2"]
    await yagna.post(f"{M}/agreements/{first.agreement_id}/terminate", json={"message": "x"})
    names = [
        e["proposal"]["properties"]["golem.node.id.name"]
        for e in await collect(yagna, demand_id, 1)
    ]
    assert names == ["prov-1"]


@pytest.mark.parametrize(
    "localnet",
    [
        localnet_config(
            providers=[{"name": "p", "faults": {"terminate_agreement_after_seconds": 0.5}}]
        )
    ],
    indirect=True,
)
async def test_provider_terminates_the_agreement(yagna: httpx.AsyncClient) -> None:
    start = datetime.now(UTC).isoformat()
    deal = await negotiate(yagna)
    activity_id = await running_activity(yagna, deal.agreement_id)
    events: list[dict[str, str]] = []
    after = start
    for _ in range(20):
        batch = (
            await yagna.get(f"{M}/agreementEvents", params={"afterTimestamp": after, "timeout": 1})
        ).json()
        events += batch
        after = batch[-1]["eventDate"] if batch else after
        if any(e["eventType"] == "AgreementTerminatedEvent" for e in events):
            break
    terminated = [e for e in events if e["eventType"] == "AgreementTerminatedEvent"]
    assert terminated and terminated[0]["terminator"] == "Provider"
    state = (await yagna.get(f"/activity-api/v1/activity/{activity_id}/state")).json()
    assert state["state"][0] == "Terminated"
    invoices = (await yagna.get(f"{P}/invoiceEvents", params={"afterTimestamp": start})).json()
    assert [e["eventType"] for e in invoices] == ["InvoiceReceivedEvent"]


async def test_injected_faults_and_crash(yagna: httpx.AsyncClient) -> None:
    deal = await negotiate(yagna)
    faults = await yagna.post(
        f"/_localnet/providers/{deal.provider_name}/faults",
        json={"fail_start": True, "fail_command": "boom"},
    )
    assert faults.status_code == 200
    created = await yagna.post("/activity-api/v1/activity", json={"agreementId": deal.agreement_id})
    activity_id = created.json()["activityId"]
    results = await exec_and_wait(yagna, activity_id, [{"deploy": {}}, {"start": {}}])
    assert [r["result"] for r in results] == ["Ok", "Error"]
    assert "injected" in results[1]["message"]

    await yagna.post(
        f"/_localnet/providers/{deal.provider_name}/faults", json={"fail_start": False}
    )
    assert (await exec_and_wait(yagna, activity_id, [{"start": {}}]))[0]["result"] == "Ok"
    failed = await exec_and_wait(
        yagna, activity_id, [{"run": {"entry_point": "/bin/echo", "args": ["boom"]}}]
    )
    assert failed[0]["result"] == "Error"
    bad = await yagna.post(
        f"/_localnet/providers/{deal.provider_name}/faults", json={"latency_seconds": -1}
    )
    assert bad.status_code == 400 and "latency_seconds" in bad.json()["message"]

    crashed = await yagna.post(f"/_localnet/activities/{activity_id}/crash")
    assert crashed.json()["state"] == ["Terminated", None]
    audit = (await yagna.get("/_localnet/audit")).json()
    assert audit["sandboxesAlive"] == 0


async def test_unresponsive_provider_hangs_activity_calls(yagna: httpx.AsyncClient) -> None:
    deal = await negotiate(yagna)
    activity_id = await running_activity(yagna, deal.agreement_id)
    await yagna.post(
        f"/_localnet/providers/{deal.provider_name}/faults", json={"unresponsive": True}
    )
    with pytest.raises(httpx.ReadTimeout):
        await yagna.get(f"/activity-api/v1/activity/{activity_id}/state", timeout=0.5)
    await yagna.post(
        f"/_localnet/providers/{deal.provider_name}/faults", json={"unresponsive": False}
    )
    state = await yagna.get(f"/activity-api/v1/activity/{activity_id}/state", timeout=2)
    assert state.json()["state"] == ["Ready", None]


@pytest.mark.parametrize(
    "localnet",
    [
        localnet_config(
            debit_note_interval_seconds=0.3,
            providers=[
                {
                    "name": "p",
                    "prices": {"start": "0.5", "per_cpu_hour": "36", "per_env_hour": "36"},
                }
            ],
        )
    ],
    indirect=True,
)
async def test_debit_notes_invoice_and_allocation_accounting(yagna: httpx.AsyncClient) -> None:
    start = datetime.now(UTC).isoformat()
    allocation = (
        await yagna.post(
            f"{P}/allocations",
            json={
                "totalAmount": "5",
                "makeDeposit": False,
                "paymentPlatform": "erc20-holesky-tglm",
            },
        )
    ).json()
    too_big = await yagna.post(f"{P}/allocations", json={"totalAmount": "100000"})
    assert too_big.status_code == 400
    decorations = (
        await yagna.get(
            f"{P}/demandDecorations", params={"allocationIds": allocation["allocationId"]}
        )
    ).json()
    assert "(golem.com.payment.platform.erc20-holesky-tglm.address=*)" in decorations["constraints"]

    deal = await negotiate(yagna, extra={"golem.com.scheme.payu.payment-timeout-sec?": 60})
    activity_id = await running_activity(yagna, deal.agreement_id)
    await asyncio.sleep(1.0)
    events = (await yagna.get(f"{P}/debitNoteEvents", params={"afterTimestamp": start})).json()
    assert len(events) >= 2
    notes = [(await yagna.get(f"{P}/debitNotes/{e['debitNoteId']}")).json() for e in events]
    amounts = [Decimal(n["totalAmountDue"]) for n in notes]
    assert amounts == sorted(amounts) and amounts[0] > Decimal("0.5")  # start fee + usage
    assert all(n["activityId"] == activity_id and "paymentDueDate" in n for n in notes)

    wrong = await yagna.post(
        f"{P}/debitNotes/{notes[0]['debitNoteId']}/accept",
        json={"totalAmountAccepted": "0.1", "allocationId": allocation["allocationId"]},
    )
    assert wrong.status_code == 400
    for note in notes:
        accepted = await yagna.post(
            f"{P}/debitNotes/{note['debitNoteId']}/accept",
            json={
                "totalAmountAccepted": note["totalAmountDue"],
                "allocationId": allocation["allocationId"],
            },
        )
        assert accepted.status_code == 200
    spent = Decimal(
        (await yagna.get(f"{P}/allocations/{allocation['allocationId']}")).json()["spentAmount"]
    )
    assert spent == amounts[-1]  # cumulative notes: paid once, not summed

    await yagna.delete(f"/activity-api/v1/activity/{activity_id}")
    await yagna.post(f"{M}/agreements/{deal.agreement_id}/terminate", json={"message": "done"})
    invoice_event = (
        await yagna.get(f"{P}/invoiceEvents", params={"afterTimestamp": start})
    ).json()[0]
    invoice = (await yagna.get(f"{P}/invoices/{invoice_event['invoiceId']}")).json()
    assert Decimal(invoice["amount"]) >= amounts[-1]
    accepted = await yagna.post(
        f"{P}/invoices/{invoice['invoiceId']}/accept",
        json={"totalAmountAccepted": invoice["amount"], "allocationId": allocation["allocationId"]},
    )
    assert accepted.status_code == 200
    twice = await yagna.post(
        f"{P}/invoices/{invoice['invoiceId']}/accept",
        json={"totalAmountAccepted": invoice["amount"], "allocationId": allocation["allocationId"]},
    )
    assert twice.status_code == 200
    audit = (await yagna.get("/_localnet/audit")).json()
    paid = sum(Decimal(p["amount"]) for p in audit["payments"])
    assert paid == Decimal(invoice["amount"])  # never paid twice
    assert Decimal(audit["allocations"][0]["spentAmount"]) == paid
    assert audit["invoices"][0]["status"] == "ACCEPTED"

    assert (await yagna.delete(f"{P}/allocations/{allocation['allocationId']}")).status_code == 200
    assert (await yagna.get(f"{P}/allocations/{allocation['allocationId']}")).status_code == 404


@pytest.mark.parametrize(
    "localnet",
    [localnet_config(debit_note_interval_seconds=0.2, providers=[{"name": "p"}])],
    indirect=True,
)
async def test_rejected_debit_notes_and_unaffordable_acceptance(yagna: httpx.AsyncClient) -> None:
    start = datetime.now(UTC).isoformat()
    allocation = (await yagna.post(f"{P}/allocations", json={"totalAmount": "0.000000001"})).json()
    deal = await negotiate(yagna, extra={"golem.com.scheme.payu.payment-timeout-sec?": 60})
    await running_activity(yagna, deal.agreement_id)
    await asyncio.sleep(0.5)
    events = (await yagna.get(f"{P}/debitNoteEvents", params={"afterTimestamp": start})).json()
    first, second = [
        (await yagna.get(f"{P}/debitNotes/{e['debitNoteId']}")).json() for e in events[:2]
    ]
    over = await yagna.post(
        f"{P}/debitNotes/{first['debitNoteId']}/accept",
        json={
            "totalAmountAccepted": first["totalAmountDue"],
            "allocationId": allocation["allocationId"],
        },
    )
    assert over.status_code == 400 and "Not enough funds" in over.json()["message"]
    rejected = await yagna.post(
        f"{P}/debitNotes/{second['debitNoteId']}/reject",
        json={"rejectionReason": "BAD_SERVICE", "totalAmountAccepted": "0", "message": "slow"},
    )
    assert rejected.status_code == 200
    audit = (await yagna.get("/_localnet/audit")).json()
    statuses = {d["debitNoteId"]: d["status"] for d in audit["debitNotes"]}
    assert statuses[first["debitNoteId"]] == "RECEIVED"
    assert statuses[second["debitNoteId"]] == "REJECTED"
    assert audit["payments"] == []


async def test_daemon_faults_answer_their_status_then_are_spent(yagna: httpx.AsyncClient) -> None:
    deal = await negotiate(yagna)
    path = f"{M}/agreements/{deal.agreement_id}/terminate"
    bad = await yagna.put("/_localnet/daemon-faults", json=[{"path": path, "status": 200}])
    assert bad.status_code == 400 and "status" in bad.json()["message"]
    faults = [{"path": f"{M}/agreements/*/terminate", "method": "POST", "status": 503, "count": 2}]
    set_ = await yagna.put("/_localnet/daemon-faults", json=faults)
    assert set_.json()[0]["left"] == 2
    # A GET of the same agreement is not faulted; the two terminates are, then the fault is spent.
    assert (await yagna.get(f"{M}/agreements/{deal.agreement_id}")).status_code == 200
    for _ in range(2):
        failed = await yagna.post(path, json={"message": "x"})
        assert failed.status_code == 503
        assert failed.json() == {"message": "Service temporarily unavailable (injected fault)"}
        state = (await yagna.get(f"{M}/agreements/{deal.agreement_id}")).json()["state"]
        assert state == "Approved"
    assert (await yagna.post(path, json={"message": "x"})).is_success
    state = (await yagna.get(f"{M}/agreements/{deal.agreement_id}")).json()["state"]
    assert state == "Terminated"
    assert (await yagna.get("/_localnet/daemon-faults")).json()[0]["left"] == 0
    assert (await yagna.put("/_localnet/daemon-faults", json=[])).json() == []
