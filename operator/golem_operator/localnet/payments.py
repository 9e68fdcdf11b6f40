"""Payments of the simulated network: allocations, debit notes and invoices.

`Payments` plays every provider's payment side: a debit note per activity every negotiated
interval, an invoice per ended agreement, and settlement when the requestor accepts one.
Debit notes and invoices go through one code path parameterised by `DocumentKind`: they
differ only in their names, the activity or agreement they bill, and a few JSON fields.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from golem_operator.localnet import pricing
from golem_operator.localnet.events import EventLog, iso, stamp
from golem_operator.localnet.model import (
    DEBIT_NOTE,
    DOCUMENT_KINDS,
    INVOICE,
    P_ACCEPT_TIMEOUT,
    P_PAYMENT_TIMEOUT,
    USAGE_VECTOR,
    Activity,
    Agreement,
    Allocation,
    ApiError,
    Document,
    DocumentKind,
    Payment,
    ProblemError,
    new_document_id,
)
from golem_operator.localnet.runtime import Part, Runtime

if TYPE_CHECKING:
    from golem_operator.localnet.exeunit import ExeUnits
    from golem_operator.localnet.market import Market

REJECTION_REASONS = ("UNSOLICITED_SERVICE", "BAD_SERVICE", "INCORRECT_AMOUNT")


class Payments(Part):
    """Allocations, payment documents of both kinds, their events, and settlements."""

    market: Market
    exeunits: ExeUnits

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime)
        self.allocations: dict[str, Allocation] = {}
        self.documents: dict[DocumentKind, dict[str, Document]] = {k: {} for k in DOCUMENT_KINDS}
        self.events: dict[DocumentKind, EventLog] = {k: EventLog() for k in DOCUMENT_KINDS}
        self.payments: list[Payment] = []

    # ------------------------------------------------------------ provider side
    async def bill_activity(self, activity: Activity) -> None:
        """The provider's debit notes for one activity, until it ends; an overdue
        acceptance (when enforced) ends the agreement."""
        agreement = activity.agreement
        while not activity.terminated:
            await asyncio.sleep(agreement.debit_note_interval)
            await activity.provider.react()
            if activity.terminated or agreement.state != "Approved":
                return
            if self._debit_note_overdue(activity):
                await self.market.terminate_agreement(
                    agreement,
                    "Provider",
                    {"message": "Requestor did not accept a debit note in time"},
                )
                return
            self._issue_debit_note(activity)

    def _debit_note_overdue(self, activity: Activity) -> bool:
        accept_timeout = activity.agreement.negotiated_seconds(P_ACCEPT_TIMEOUT)
        if accept_timeout is None or not self.config.enforce_debit_note_acceptance:
            return False
        notes = self.documents[DEBIT_NOTE]
        for note_id in activity.debit_notes:
            note = notes[note_id]
            if note.status != "ACCEPTED":
                age = (stamp() - note.timestamp).total_seconds()
                if age > accept_timeout:
                    return True
        return False

    def _issue_debit_note(self, activity: Activity) -> Document:
        agreement = activity.agreement
        moment = stamp()
        payment_timeout = agreement.negotiated_seconds(P_PAYMENT_TIMEOUT)
        note = Document(
            kind=DEBIT_NOTE,
            id=new_document_id(),
            agreement=agreement,
            amount=self.exeunits.activity_cost(activity),
            timestamp=moment,
            activity=activity,
            usage=self.exeunits.usage(activity),
            due=moment + timedelta(seconds=payment_timeout) if payment_timeout else None,
            previous_id=activity.debit_notes[-1] if activity.debit_notes else None,
        )
        activity.debit_notes.append(note.id)
        return self._receive(note)

    def invoice_when_due(self, agreement: Agreement) -> None:
        """Invoice an ended agreement now, later or never, as the provider's faults say."""
        faults = agreement.provider.faults
        if faults.never_invoice:
            return
        if faults.invoice_delay_seconds is not None:
            self.spawn(self._invoice_later(agreement, faults.invoice_delay_seconds))
            return
        self._issue_invoice(agreement)

    async def _invoice_later(self, agreement: Agreement, delay: float) -> None:
        await asyncio.sleep(delay)
        self._issue_invoice(agreement)

    def _issue_invoice(self, agreement: Agreement) -> Document:
        moment = stamp()
        activities = [self.exeunits.activities[a] for a in agreement.activities]
        amount = sum((self.exeunits.activity_cost(a) for a in activities), Decimal(0))
        amount += agreement.provider.faults.invoice_surcharge
        invoice = Document(
            kind=INVOICE,
            id=new_document_id(),
            agreement=agreement,
            amount=amount,
            timestamp=moment,
            activity_ids=[a.id for a in activities],
            due=moment + timedelta(hours=1),
        )
        return self._receive(invoice)

    def _receive(self, document: Document) -> Document:
        """Deliver an issued document to the requestor: stored, and a Received event."""
        kind = document.kind
        self.documents[kind][document.id] = document
        self._event(kind, "ReceivedEvent", document, document.timestamp)
        return document

    def _event(
        self,
        kind: DocumentKind,
        suffix: str,
        document: Document,
        moment: Any,
        extra: dict[str, Any] | None = None,
    ) -> None:
        event = {
            "eventType": f"{kind.event_prefix}{suffix}",
            "eventDate": iso(moment),
            kind.id_key: document.id,
        }
        self.events[kind].append(moment, {**event, **(extra or {})})

    # ----------------------------------------------------------- requestor side
    def document(self, kind: DocumentKind, document_id: str) -> Document:
        document = self.documents[kind].get(document_id)
        if document is None:
            raise ApiError(404, None)  # yagna: 404 `{"message": null}`
        return document

    def document_json(self, document: Document) -> dict[str, Any]:
        provider = document.agreement.provider
        body: dict[str, Any] = {
            "issuerId": provider.node_id,
            "recipientId": self.requestor_id,
            "payeeAddr": provider.node_id,
            "payerAddr": self._payer_address(),
            "paymentPlatform": provider.spec.payment_platform,
            "timestamp": iso(document.timestamp),
            "agreementId": document.agreement.id,
            "status": document.status,
            document.kind.id_key: document.id,
        }
        if document.kind is DEBIT_NOTE:
            assert document.activity is not None
            body["activityId"] = document.activity.id
            body["totalAmountDue"] = pricing.format_amount(document.amount)
            body["usageCounterVector"] = dict(zip(USAGE_VECTOR, document.usage or [], strict=False))
            if document.previous_id is not None:
                body["previousDebitNoteId"] = document.previous_id
            if document.due is not None:
                body["paymentDueDate"] = iso(document.due)
        else:
            body["activityIds"] = document.activity_ids
            body["amount"] = pricing.format_amount(document.amount)
            body["paymentDueDate"] = iso(document.due or document.timestamp)
        return body

    def _payer_address(self) -> str:
        return self.requestor_id

    def create_allocation(self, body: dict[str, Any]) -> Allocation:
        try:
            total = pricing.parse_amount(body.get("totalAmount"))
        except ValueError as error:
            raise ApiError(400, f"Invalid totalAmount: {error}") from None
        requested_platform = body.get("paymentPlatform", self.config.payment_platform)
        platform = requested_platform
        if isinstance(platform, dict):
            parts = [platform.get("driver", "erc20"), platform.get("network", "holesky")]
            platform = "-".join([*parts, platform.get("token") or "tglm"])
        # Errors as yagna 0.17.6 words them: problem JSON (RFC 7807) under /allocations.
        echoed = {
            "address": body.get("address"),
            "deposit": body.get("deposit"),
            "extendTimeout": body.get("extendTimeout"),
            "makeDeposit": body.get("makeDeposit", False),
            "paymentPlatform": requested_platform,
            "timeout": body.get("timeout"),
            "totalAmount": pricing.format_amount(total),
        }
        if platform != self.config.payment_platform:
            raise ProblemError(
                400,
                {
                    "type": "/payment-api/v1/allocations/bad-payment-platform",
                    "detail": "Payment platform doesn't parse",
                    "parseError": f"Payment platform {platform} is not served by this localnet "
                    f"(only {self.config.payment_platform})",
                    "requestBody": echoed,
                    "requestedPaymentPlatform": requested_platform,
                },
            )
        address = body.get("address", self.requestor_id)
        if address != self.requestor_id:
            raise ProblemError(
                500,
                {
                    "type": "/payment-api/v1/allocations/internal-error",
                    "detail": "Unhandled internal error",
                    "internalError": "Failed to initialize account on driver: erc20 due to "
                    f"error Account {address} not found in active accounts",
                    "requestBody": echoed,
                },
            )
        live = [a for a in self.allocations.values() if not a.released]
        reserved = sum((a.remaining for a in live), Decimal(0))
        funds = self.config.requestor.funds
        if total + reserved > funds:
            raise ProblemError(
                400,
                {
                    "type": "/payment-api/v1/allocations/validation-error",
                    "detail": "Insufficient funds to create the allocation. Top up your account "
                    "or release all existing allocations to unlock the funds via "
                    "`yagna payment release-allocations`",
                    "instance": "/payment-api/v1/allocations/validation-error/"
                    "insufficient-account-funds",
                    "address": self.requestor_id,
                    "availableFunds": pricing.format_amount(funds - reserved),
                    "paymentPlatform": platform,
                    "requestBody": echoed,
                    "requestedFunds": pricing.format_amount(total),
                    "reservedFunds": pricing.format_amount(reserved),
                },
            )
        allocation = Allocation(
            id=new_document_id(),
            address=self.requestor_id,
            platform=str(platform),
            total=total,
            timestamp=stamp(),
            timeout=body.get("timeout") if isinstance(body.get("timeout"), str) else None,
            make_deposit=bool(body.get("makeDeposit", False)),
        )
        self.allocations[allocation.id] = allocation
        return allocation

    def allocation(self, allocation_id: str) -> Allocation:
        allocation = self.allocations.get(allocation_id)
        if allocation is None or allocation.released:
            raise ApiError(404, None)  # yagna: 404 `{"message": null}`
        return allocation

    def release_allocation(self, allocation_id: str) -> None:
        allocation = self.allocations.get(allocation_id)
        if allocation is None:
            raise ApiError(404, None)
        if allocation.released:
            raise ApiError(410, f"Allocation {allocation_id} has been already released")
        allocation.released = True
        allocation.updated = stamp()

    def accept(self, document: Document, body: dict[str, Any]) -> None:
        try:
            amount = pricing.parse_amount(body.get("totalAmountAccepted"))
        except ValueError as error:
            raise ApiError(400, f"Invalid totalAmountAccepted: {error}") from None
        allocation_id = body.get("allocationId")
        if not isinstance(allocation_id, str):
            raise ApiError(400, "allocationId is required")
        allocation = self.allocations.get(allocation_id)
        if allocation is None or allocation.released:
            raise ApiError(400, f"Allocation [{allocation_id}] not found.")
        if allocation.platform != document.agreement.provider.spec.payment_platform:
            raise ApiError(400, f"Allocation [{allocation_id}] uses another payment platform")
        if amount != document.amount:
            raise ApiError(
                400,
                f"Invalid amount accepted: {pricing.format_amount(amount)}, "
                f"due: {pricing.format_amount(document.amount)}",
            )
        if document.status == "ACCEPTED":
            return  # idempotent: never pay twice
        owed = Decimal(0)
        activity = document.activity
        if document.kind is INVOICE:
            owed = document.amount - document.agreement.paid
        elif document.due is not None and activity is not None:
            owed = document.amount - activity.paid
        owed = max(owed, Decimal(0))
        if owed > allocation.remaining:
            raise ApiError(
                400,
                f"Not enough funds in allocation [{allocation_id}]: "
                f"requested {pricing.format_amount(owed)}, "
                f"remaining {pricing.format_amount(allocation.remaining)}",
            )
        document.status = "ACCEPTED"
        document.accepted_amount = amount
        document.allocation_id = allocation_id
        document.paid_now = owed
        if owed > 0:
            allocation.spent += owed
            document.agreement.paid += owed
            if activity is not None:
                activity.paid += owed
            self.payments.append(
                Payment(
                    document_id=document.id,
                    kind=document.kind.name,
                    agreement_id=document.agreement.id,
                    activity_id=activity.id if activity is not None else None,
                    allocation_id=allocation_id,
                    amount=owed,
                    timestamp=stamp(),
                )
            )

    def reject(self, document: Document, body: dict[str, Any]) -> None:
        if document.status == "ACCEPTED":
            raise ApiError(400, "An accepted document cannot be rejected")
        reason = body.get("rejectionReason")
        if reason not in REJECTION_REASONS:
            raise ApiError(400, f"Invalid rejectionReason: {reason!r}")
        document.status = "REJECTED"
        document.rejection = body
        self._event(document.kind, "RejectedEvent", document, stamp(), {"rejection": body})
