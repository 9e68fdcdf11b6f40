"""Payment API calls: allocations, demand decorations, debit notes and invoices."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest
from golem_fakes import FakeDaemon, error_reply, json_reply

from golem_operator.golem import (
    DebitNoteEventType,
    GolemBadRequest,
    GolemClient,
    GolemGone,
    GolemNotFound,
    InvoiceEventType,
    RejectionReason,
)

P = "/payment-api/v1"
REQUESTOR = "0x5a1c0d3e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c"
PROVIDER = "0x86a269498fb5270f20bdc6fdcf6039122b0d3b23"

ALLOCATION = {
    "allocationId": "al-1",
    "address": REQUESTOR,
    "paymentPlatform": "erc20-holesky-tglm",
    "totalAmount": "0.5",
    "spentAmount": "0",
    "remainingAmount": "0.5",
    "timestamp": "2024-05-06T07:00:00Z",
    "timeout": "2024-05-07T07:00:00Z",
    "makeDeposit": False,
    "createdTs": "2024-05-06T07:00:00Z",
    "updatedTs": "2024-05-06T07:00:00Z",
}

DEBIT_NOTE = {
    "debitNoteId": "dn-1",
    "issuerId": PROVIDER,
    "recipientId": REQUESTOR,
    "payeeAddr": PROVIDER,
    "payerAddr": REQUESTOR,
    "paymentPlatform": "erc20-holesky-tglm",
    "timestamp": "2024-05-06T07:30:00Z",
    "agreementId": "agr-1",
    "activityId": "act-1",
    "totalAmountDue": "0.000123456789012345678",
    "usageCounterVector": [60.0, 12.5],
    "paymentDueDate": "2024-05-06T08:30:00Z",
    "status": "RECEIVED",
}

INVOICE = {
    "invoiceId": "inv-1",
    "issuerId": PROVIDER,
    "recipientId": REQUESTOR,
    "payeeAddr": PROVIDER,
    "payerAddr": REQUESTOR,
    "paymentPlatform": "erc20-holesky-tglm",
    "timestamp": "2024-05-06T09:00:00Z",
    "agreementId": "agr-1",
    "activityIds": ["act-1"],
    "amount": "0.0042",
    "paymentDueDate": "2024-05-06T10:00:00Z",
    "status": "RECEIVED",
}


async def test_create_allocation_body_and_answer(daemon: FakeDaemon, client: GolemClient) -> None:
    daemon.route("POST", f"{P}/allocations", json_reply(201, ALLOCATION))

    allocation = await client.payment.create_allocation(
        Decimal("0.5"),
        "erc20-holesky-tglm",
        REQUESTOR,
        timeout=datetime(2024, 5, 7, 7, 0, tzinfo=UTC),
    )

    assert daemon.last_json() == {
        "totalAmount": "0.5",
        "paymentPlatform": "erc20-holesky-tglm",
        "address": REQUESTOR,
        "timeout": "2024-05-07T07:00:00.000000Z",
        "makeDeposit": False,
    }
    assert allocation.allocation_id == "al-1"
    assert allocation.total_amount == Decimal("0.5")
    assert allocation.remaining_amount == Decimal("0.5")
    assert allocation.payment_platform == "erc20-holesky-tglm"


async def test_create_allocation_without_optional_fields(
    daemon: FakeDaemon, client: GolemClient
) -> None:
    daemon.route("POST", f"{P}/allocations", json_reply(201, ALLOCATION))
    await client.payment.create_allocation("2", "erc20-holesky-tglm")
    assert daemon.last_json() == {
        "totalAmount": "2",
        "paymentPlatform": "erc20-holesky-tglm",
        "makeDeposit": False,
    }


async def test_create_allocation_insufficient_funds(
    daemon: FakeDaemon, client: GolemClient
) -> None:
    path = f"{P}/allocations"
    # yagna 0.17.6 answers a problem JSON here, not an ErrorMessage: its `detail` is the message.
    problem = {
        "type": "/payment-api/v1/allocations/validation-error",
        "detail": "Insufficient funds to create the allocation.",
        "instance": "/payment-api/v1/allocations/validation-error/insufficient-account-funds",
        "requestedFunds": "1000000",
    }
    daemon.route(
        "POST",
        path,
        httpx.Response(400, json=problem, headers={"content-type": "application/problem+json"}),
    )
    with pytest.raises(GolemBadRequest) as caught:
        await client.payment.create_allocation("1000000", "erc20-holesky-tglm")
    assert caught.value.message == "Insufficient funds to create the allocation."
    with pytest.raises(ValueError, match=">= 0"):
        await client.payment.create_allocation("-1", "erc20-holesky-tglm")
    with pytest.raises(ValueError, match="decimal"):
        await client.payment.create_allocation("lots", "erc20-holesky-tglm")
    assert len(daemon.calls("POST", path)) == 1


async def test_get_and_release_allocation(daemon: FakeDaemon, client: GolemClient) -> None:
    daemon.route("GET", f"{P}/allocations/al-1", json_reply(200, ALLOCATION))
    daemon.route("DELETE", f"{P}/allocations/al-1", httpx.Response(200))
    allocation = await client.payment.get_allocation("al-1")
    assert allocation.model_extra is not None and "createdTs" in allocation.model_extra
    await client.payment.release_allocation("al-1")
    assert daemon.last.method == "DELETE"


async def test_released_and_unknown_allocations(daemon: FakeDaemon, client: GolemClient) -> None:
    # yagna 0.17.6: a released or unknown allocation is 404 `{"message": null}`; releasing
    # again is 410.
    daemon.route("GET", f"{P}/allocations/al-1", json_reply(404, {"message": None}))
    gone = "Allocation al-1 has been already released"
    daemon.route("DELETE", f"{P}/allocations/al-1", error_reply(410, gone))
    with pytest.raises(GolemNotFound) as missing:
        await client.payment.get_allocation("al-1")
    assert missing.value.message == "Not Found"
    with pytest.raises(GolemGone) as again:
        await client.payment.release_allocation("al-1")
    assert again.value.message == gone


async def test_get_demand_decorations(daemon: FakeDaemon, client: GolemClient) -> None:
    daemon.route(
        "GET",
        f"{P}/demandDecorations",
        json_reply(
            200,
            {
                "properties": [
                    {"key": "golem.com.payment.chosen-platform", "value": "erc20-holesky-tglm"},
                    {
                        "key": "golem.com.payment.platform.erc20-holesky-tglm.address",
                        "value": REQUESTOR,
                    },
                ],
                "constraints": [
                    "(golem.com.payment.platform.erc20-holesky-tglm.address=*)",
                ],
            },
        ),
    )

    decoration = await client.payment.get_demand_decorations(["al-1", "al-2"])

    assert daemon.last.url.params["allocationIds"] == "al-1,al-2"
    assert decoration.properties_dict() == {
        "golem.com.payment.chosen-platform": "erc20-holesky-tglm",
        "golem.com.payment.platform.erc20-holesky-tglm.address": REQUESTOR,
    }
    assert decoration.constraints == ["(golem.com.payment.platform.erc20-holesky-tglm.address=*)"]
    with pytest.raises(ValueError, match="non-empty"):
        await client.payment.get_demand_decorations("al-1")


async def test_collect_debit_note_events(daemon: FakeDaemon, client: GolemClient) -> None:
    daemon.route(
        "GET",
        f"{P}/debitNoteEvents",
        json_reply(
            200,
            [
                {
                    "eventType": "DebitNoteReceivedEvent",
                    "eventDate": "2024-05-06T07:30:01Z",
                    "debitNoteId": "dn-1",
                },
                {
                    "eventType": "DebitNoteRejectedEvent",
                    "eventDate": "2024-05-06T07:31:00Z",
                    "debitNoteId": "dn-0",
                    "rejection": {
                        "rejectionReason": "INCORRECT_AMOUNT",
                        "totalAmountAccepted": "13.14000",
                    },
                },
            ],
        ),
    )

    events = await client.payment.collect_debit_note_events(
        datetime(2024, 5, 6, 7, 0, tzinfo=UTC), timeout=1.5, max_events=20
    )

    assert dict(daemon.last.url.params) == {
        "timeout": "1.5",
        "maxEvents": "20",
        "afterTimestamp": "2024-05-06T07:00:00.000000Z",
    }
    received, rejected = events
    assert received.event_type == DebitNoteEventType.RECEIVED
    assert received.debit_note_id == "dn-1"
    assert rejected.rejection is not None
    assert rejected.rejection.rejection_reason == RejectionReason.INCORRECT_AMOUNT
    assert rejected.rejection.total_amount_accepted == Decimal("13.14")


async def test_collect_invoice_events(daemon: FakeDaemon, client: GolemClient) -> None:
    daemon.route(
        "GET",
        f"{P}/invoiceEvents",
        json_reply(
            200,
            [
                {
                    "eventType": "InvoiceReceivedEvent",
                    "eventDate": "2024-05-06T09:00:01Z",
                    "invoiceId": "inv-1",
                }
            ],
        ),
    )
    events = await client.payment.collect_invoice_events(app_session_id="svc-7")
    assert daemon.last.url.params["appSessionId"] == "svc-7"
    assert [(e.event_type, e.invoice_id) for e in events] == [(InvoiceEventType.RECEIVED, "inv-1")]


async def test_get_debit_note_keeps_exact_amounts(daemon: FakeDaemon, client: GolemClient) -> None:
    daemon.route("GET", f"{P}/debitNotes/dn-1", json_reply(200, DEBIT_NOTE))
    note = await client.payment.get_debit_note("dn-1")
    assert note.total_amount_due == Decimal("0.000123456789012345678")
    assert note.activity_id == "act-1" and note.status == "RECEIVED"
    assert note.usage_counter_vector == [60.0, 12.5]


async def test_get_invoice(daemon: FakeDaemon, client: GolemClient) -> None:
    daemon.route("GET", f"{P}/invoices/inv-1", json_reply(200, INVOICE))
    invoice = await client.payment.get_invoice("inv-1")
    assert invoice.amount == Decimal("0.0042")
    assert invoice.activity_ids == ["act-1"]
    assert invoice.payment_due_date == datetime(2024, 5, 6, 10, 0, tzinfo=UTC)


async def test_accept_debit_note_and_invoice(daemon: FakeDaemon, client: GolemClient) -> None:
    daemon.route("POST", f"{P}/debitNotes/dn-1/accept", httpx.Response(200))
    daemon.route("POST", f"{P}/invoices/inv-1/accept", httpx.Response(200))

    await client.payment.accept_debit_note(
        "dn-1", Decimal("0.000123456789012345678"), "al-1", timeout=6
    )
    assert daemon.last_json() == {
        "totalAmountAccepted": "0.000123456789012345678",
        "allocationId": "al-1",
    }
    assert daemon.last.url.params["timeout"] == "6.0"

    await client.payment.accept_invoice("inv-1", "0.0042", "al-1")
    assert daemon.last_json() == {"totalAmountAccepted": "0.0042", "allocationId": "al-1"}


async def test_reject_debit_note_and_invoice(daemon: FakeDaemon, client: GolemClient) -> None:
    daemon.route("POST", f"{P}/debitNotes/dn-1/reject", httpx.Response(200))
    daemon.route("POST", f"{P}/invoices/inv-1/reject", httpx.Response(200))

    await client.payment.reject_debit_note("dn-1", RejectionReason.BAD_SERVICE, "0")
    assert daemon.last_json() == {"rejectionReason": "BAD_SERVICE", "totalAmountAccepted": "0"}

    await client.payment.reject_invoice(
        "inv-1", "INCORRECT_AMOUNT", Decimal("0.001"), message="above the price cap"
    )
    assert daemon.last_json() == {
        "rejectionReason": "INCORRECT_AMOUNT",
        "totalAmountAccepted": "0.001",
        "message": "above the price cap",
    }
