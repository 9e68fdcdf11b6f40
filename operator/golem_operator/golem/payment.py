"""Payment API of yagna, requestor side (payment-api.yaml, base path /payment-api/v1).

`GolemClient.payment` is a `PaymentApi`. The operator reserves a budget as an allocation,
decorates its demand with the allocation's payment properties, follows debit-note and
invoice events, accepts (or rejects) them against the allocation, and releases the
allocation when the service is gone.

`timeout` arguments in seconds are the daemon-side wait, sent as the `timeout` query
parameter (hence the ASYNC109 waivers); the client's own deadline is that wait plus
`GolemConfig.request_timeout`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Final, Generic, TypeVar

from pydantic import TypeAdapter

from golem_operator.golem.models import (
    Acceptance,
    Allocation,
    DebitNote,
    DebitNoteEvent,
    Invoice,
    InvoiceEvent,
    MarketDecoration,
    NewAllocation,
    Rejection,
    RejectionReason,
)
from golem_operator.golem.requesting import (
    Requester,
    check_ack_timeout,
    check_max_events,
    check_poll_timeout,
    parse_adapted,
    parse_model,
    wire_datetime,
)

BASE: Final = "/payment-api/v1"

_ALLOCATIONS: Final = TypeAdapter(list[Allocation])

DocumentT = TypeVar("DocumentT", DebitNote, Invoice)
EventT = TypeVar("EventT", DebitNoteEvent, InvoiceEvent)


@dataclass(frozen=True)
class DocumentKind(Generic[DocumentT, EventT]):
    """Debit notes or invoices: the names and models one code path is parameterised by."""

    label: str  #: "debit note", "invoice" (error texts)
    collection: str  #: path segment: "debitNotes", "invoices"
    id_param: str  #: path parameter: "debitNoteId", "invoiceId"
    events_path: str  #: "debitNoteEvents", "invoiceEvents"
    model: type[DocumentT]
    events: TypeAdapter[list[EventT]]


DEBIT_NOTES: Final = DocumentKind(
    "debit note",
    "debitNotes",
    "debitNoteId",
    "debitNoteEvents",
    DebitNote,
    TypeAdapter(list[DebitNoteEvent]),
)
INVOICES: Final = DocumentKind(
    "invoice", "invoices", "invoiceId", "invoiceEvents", Invoice, TypeAdapter(list[InvoiceEvent])
)

Amount = Decimal | str
"""A GLM amount; floats are refused because they cannot hold exact decimal amounts."""


def _amount(value: Amount) -> Decimal:
    if isinstance(value, float):
        raise TypeError("amounts must be Decimal or str, not float")
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"not a decimal amount: {value!r}") from None
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"amount must be finite and >= 0, got {value!r}")
    return amount


def _event_params(
    after_timestamp: datetime | None, timeout: float, max_events: int, app_session_id: str | None
) -> dict[str, str | int | float]:
    params: dict[str, str | int | float] = {
        "timeout": timeout,
        "maxEvents": check_max_events(max_events),
    }
    if after_timestamp is not None:
        params["afterTimestamp"] = wire_datetime(after_timestamp)
    if app_session_id is not None:
        params["appSessionId"] = app_session_id
    return params


class PaymentApi:
    """Requestor calls of the payment API."""

    def __init__(self, requester: Requester) -> None:
        self._requester = requester

    # --- allocations ---------------------------------------------------------------------

    async def create_allocation(
        self,
        total_amount: Amount,
        payment_platform: str,
        address: str | None = None,
        timeout: datetime | None = None,  # noqa: ASYNC109
        make_deposit: bool = False,
    ) -> Allocation:
        """POST /allocations: reserve `total_amount` on `payment_platform`.

        `payment_platform` is e.g. "erc20-holesky-tglm"; `address` defaults (daemon side) to
        the requestor's node id; `timeout` is when the allocation expires (a datetime, not
        a request timeout).
        """
        body = NewAllocation(
            total_amount=_amount(total_amount),
            payment_platform=payment_platform,
            address=address,
            timeout=timeout,
            make_deposit=make_deposit,
        ).to_wire()
        if timeout is not None:
            body["timeout"] = wire_datetime(timeout)
        response = await self._requester.request("POST", f"{BASE}/allocations", body=body)
        return parse_model(response, Allocation)

    async def get_allocation(self, allocation_id: str) -> Allocation:
        """GET /allocations/{id}."""
        response = await self._requester.request(
            "GET",
            f"{BASE}/allocations/{{allocationId}}",
            path_params={"allocationId": allocation_id},
        )
        return parse_model(response, Allocation)

    async def list_allocations(self, expiring_after: datetime | None = None) -> list[Allocation]:
        """GET /allocations: the requestor's allocations that are not released.

        `expiring_after` is sent as afterTimestamp, which yagna 0.17.6 compares with each
        allocation's expiry (timeout), not its creation time.
        """
        params = {"afterTimestamp": wire_datetime(expiring_after)} if expiring_after else None
        response = await self._requester.request("GET", f"{BASE}/allocations", params=params)
        return parse_adapted(response, _ALLOCATIONS, "list of allocations")

    async def amend_allocation(
        self,
        allocation_id: str,
        total_amount: Amount | None = None,
        timeout: datetime | None = None,  # noqa: ASYNC109
    ) -> Allocation:
        """PUT /allocations/{id}: change the total (never below what was spent) or expiry.

        yagna answers 400 when the new total is below the spent amount or the expiry is in
        the past, 410 (`GolemGone`) when the allocation was released.
        """
        body: dict[str, str] = {}
        if total_amount is not None:
            body["totalAmount"] = str(_amount(total_amount))
        if timeout is not None:
            body["timeout"] = wire_datetime(timeout)
        response = await self._requester.request(
            "PUT",
            f"{BASE}/allocations/{{allocationId}}",
            path_params={"allocationId": allocation_id},
            body=body,
        )
        return parse_model(response, Allocation)

    async def release_allocation(self, allocation_id: str) -> None:
        """DELETE /allocations/{id}: give back what is left.

        Raises `GolemGone` (410) when it was already released, `GolemNotFound` (404) when
        the daemon never had it.
        """
        await self._requester.request(
            "DELETE",
            f"{BASE}/allocations/{{allocationId}}",
            path_params={"allocationId": allocation_id},
        )

    async def get_demand_decorations(self, allocation_ids: Sequence[str]) -> MarketDecoration:
        """GET /demandDecorations: properties and constraints a demand paid by these
        allocations must carry."""
        if isinstance(allocation_ids, str) or not allocation_ids:
            raise ValueError("allocation_ids must be a non-empty sequence of ids")
        response = await self._requester.request(
            "GET",
            f"{BASE}/demandDecorations",
            params={"allocationIds": ",".join(allocation_ids)},
        )
        return parse_model(response, MarketDecoration)

    # --- debit notes and invoices: one path, parameterised by DocumentKind ---------------

    async def collect_document_events(
        self,
        kind: DocumentKind[DocumentT, EventT],
        after_timestamp: datetime | None = None,
        *,
        timeout: float = 5.0,  # noqa: ASYNC109
        max_events: int = 10,
        app_session_id: str | None = None,
    ) -> list[EventT]:
        """GET /debitNoteEvents or /invoiceEvents: long-poll for events after `after_timestamp`."""
        wait = check_poll_timeout(timeout)
        response = await self._requester.request(
            "GET",
            f"{BASE}/{kind.events_path}",
            params=_event_params(after_timestamp, wait, max_events, app_session_id),
            wait=wait,
        )
        return parse_adapted(response, kind.events, f"list of {kind.label} events")

    async def get_document(
        self, kind: DocumentKind[DocumentT, EventT], document_id: str
    ) -> DocumentT:
        """GET /debitNotes/{id} or /invoices/{id}."""
        response = await self._requester.request(
            "GET",
            f"{BASE}/{kind.collection}/{{{kind.id_param}}}",
            path_params={kind.id_param: document_id},
        )
        return parse_model(response, kind.model)

    async def accept_document(
        self,
        kind: DocumentKind[DocumentT, EventT],
        document_id: str,
        amount: Amount,
        allocation_id: str,
        *,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> None:
        """POST /{debitNotes|invoices}/{id}/accept: accept `amount` (the amount due) from the
        allocation; waits up to `timeout` for the provider's acknowledgement."""
        body = Acceptance(total_amount_accepted=_amount(amount), allocation_id=allocation_id)
        await self._post_acknowledged(kind, document_id, "accept", body, timeout)

    async def reject_document(
        self,
        kind: DocumentKind[DocumentT, EventT],
        document_id: str,
        reason: RejectionReason | str,
        amount: Amount,
        *,
        message: str | None = None,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> None:
        """POST /{debitNotes|invoices}/{id}/reject: refuse the document, accepting only
        `amount`."""
        body = Rejection(
            rejection_reason=str(reason), total_amount_accepted=_amount(amount), message=message
        )
        await self._post_acknowledged(kind, document_id, "reject", body, timeout)

    # The per-kind names the operator calls.

    async def collect_debit_note_events(
        self,
        after_timestamp: datetime | None = None,
        *,
        timeout: float = 5.0,  # noqa: ASYNC109
        max_events: int = 10,
        app_session_id: str | None = None,
    ) -> list[DebitNoteEvent]:
        """GET /debitNoteEvents."""
        return await self.collect_document_events(
            DEBIT_NOTES,
            after_timestamp,
            timeout=timeout,
            max_events=max_events,
            app_session_id=app_session_id,
        )

    async def collect_invoice_events(
        self,
        after_timestamp: datetime | None = None,
        *,
        timeout: float = 5.0,  # noqa: ASYNC109
        max_events: int = 10,
        app_session_id: str | None = None,
    ) -> list[InvoiceEvent]:
        """GET /invoiceEvents."""
        return await self.collect_document_events(
            INVOICES,
            after_timestamp,
            timeout=timeout,
            max_events=max_events,
            app_session_id=app_session_id,
        )

    async def get_debit_note(self, debit_note_id: str) -> DebitNote:
        """GET /debitNotes/{id}."""
        return await self.get_document(DEBIT_NOTES, debit_note_id)

    async def get_invoice(self, invoice_id: str) -> Invoice:
        """GET /invoices/{id}."""
        return await self.get_document(INVOICES, invoice_id)

    async def accept_debit_note(
        self,
        debit_note_id: str,
        amount: Amount,
        allocation_id: str,
        *,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> None:
        """POST /debitNotes/{id}/accept (its totalAmountDue)."""
        await self.accept_document(
            DEBIT_NOTES, debit_note_id, amount, allocation_id, timeout=timeout
        )

    async def accept_invoice(
        self,
        invoice_id: str,
        amount: Amount,
        allocation_id: str,
        *,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> None:
        """POST /invoices/{id}/accept (its amount)."""
        await self.accept_document(INVOICES, invoice_id, amount, allocation_id, timeout=timeout)

    async def reject_debit_note(
        self,
        debit_note_id: str,
        reason: RejectionReason | str,
        amount: Amount,
        *,
        message: str | None = None,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> None:
        """POST /debitNotes/{id}/reject."""
        await self.reject_document(
            DEBIT_NOTES, debit_note_id, reason, amount, message=message, timeout=timeout
        )

    async def reject_invoice(
        self,
        invoice_id: str,
        reason: RejectionReason | str,
        amount: Amount,
        *,
        message: str | None = None,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> None:
        """POST /invoices/{id}/reject."""
        await self.reject_document(
            INVOICES, invoice_id, reason, amount, message=message, timeout=timeout
        )

    async def _post_acknowledged(
        self,
        kind: DocumentKind[DocumentT, EventT],
        document_id: str,
        verb: str,
        body: Acceptance | Rejection,
        timeout: float,  # noqa: ASYNC109
    ) -> None:
        """POST an acceptance or rejection; the daemon waits up to `timeout` for the
        provider's acknowledgement."""
        wait = check_ack_timeout(timeout)
        await self._requester.request(
            "POST",
            f"{BASE}/{kind.collection}/{{{kind.id_param}}}/{verb}",
            path_params={kind.id_param: document_id},
            params={"timeout": wait},
            body=body.to_wire(),
            wait=wait,
        )
