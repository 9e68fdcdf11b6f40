"""Paying providers: debit notes and invoices of one Golem daemon, routed to their services.

One processor per daemon (the events are per identity, not per service). Each received note
is handed to the service that owns its agreement, which decides (``core.payments``) and
records the result; unknown agreements are retried for a while and never accepted blindly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Literal, Protocol

from golem_operator.crashpoints import crashpoint
from golem_operator.golem import GolemClient, GolemError, GolemNotFound

log = logging.getLogger(__name__)

DocumentKind = Literal["debit note", "invoice"]


@dataclass(frozen=True)
class Document:
    kind: DocumentKind
    id: str
    agreement_id: str
    amount: Decimal


@dataclass(frozen=True)
class Decision:
    accept: bool
    reason: str
    allocation_id: str | None = None
    #: What to report as accepted on rejection (what was accepted so far).
    accepted_so_far: Decimal = Decimal(0)


class PaymentOwner(Protocol):
    """A service that owns agreements: it decides and records payments."""

    def decide(self, document: Document) -> Decision: ...

    def paid(self, document: Document, decision: Decision) -> Awaitable[None]: ...


Lookup = Callable[[str], PaymentOwner | None]


class PaymentProcessor:
    """Polls debit-note and invoice events and settles them through their owners."""

    def __init__(self, client: GolemClient, lookup: Lookup) -> None:
        self.client = client
        self.lookup = lookup
        self._tasks: list[asyncio.Task[None]] = []
        self._orphans: dict[str, tuple[Document, datetime]] = {}
        self._done: set[str] = set()
        #: Documents settled on Golem before a restart, waiting for their owner to record them.
        self._unrecorded: dict[str, tuple[Document, bool, datetime]] = {}

    def start(self) -> None:
        since = datetime.now(UTC) - timedelta(hours=24)
        self._tasks = [
            asyncio.create_task(self._poll("debit note", since), name="debit-notes"),
            asyncio.create_task(self._poll("invoice", since), name="invoices"),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _poll(self, kind: DocumentKind, since: datetime) -> None:
        after = since
        backoff = 0.5
        while True:
            try:
                if kind == "debit note":
                    dn_events = await self.client.payment.collect_debit_note_events(
                        after, timeout=2.0, max_events=100
                    )
                    events = [(e.event_date, e.event_type, e.debit_note_id) for e in dn_events]
                else:
                    inv_events = await self.client.payment.collect_invoice_events(
                        after, timeout=2.0, max_events=100
                    )
                    events = [(e.event_date, e.event_type, e.invoice_id) for e in inv_events]
                backoff = 0.5
            except asyncio.CancelledError:
                raise
            except GolemError as error:
                log.info("collecting %s events failed: %s", kind, error)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            for date, event_type, doc_id in events:
                after = max(after, date)
                if event_type.endswith("ReceivedEvent") and doc_id not in self._done:
                    await self._handle(kind, doc_id)
            await self._retry_orphans()
            await self._record_unrecorded()

    async def _handle(self, kind: DocumentKind, doc_id: str) -> None:
        try:
            if kind == "debit note":
                note = await self.client.payment.get_debit_note(doc_id)
                doc = Document(kind, doc_id, note.agreement_id, note.total_amount_due)
                status = note.status
            else:
                invoice = await self.client.payment.get_invoice(doc_id)
                doc = Document(kind, doc_id, invoice.agreement_id, invoice.amount)
                status = invoice.status
        except GolemNotFound:
            return
        if status != "RECEIVED":
            self._done.add(doc_id)  # already accepted or rejected (e.g. before a restart)
            accepted = status in ("ACCEPTED", "SETTLED")
            if accepted or (status == "REJECTED" and kind == "invoice"):
                # A crash between settling on Golem and recording it in status would leave
                # status.spent short and the invoice never marked settled: record it again
                # (owners record idempotently).
                self._unrecorded[doc_id] = (doc, accepted, datetime.now(UTC))
                await self._record_unrecorded()
            return
        await self.settle(doc)

    async def _record_unrecorded(self) -> None:
        now = datetime.now(UTC)
        for doc_id, (doc, accepted, first_seen) in list(self._unrecorded.items()):
            owner = self.lookup(doc.agreement_id)
            if owner is None:
                if now - first_seen > timedelta(minutes=10):  # an agreement no one holds now
                    self._unrecorded.pop(doc_id)
                continue
            self._unrecorded.pop(doc_id)
            reason = "settled before the operator restarted"
            await owner.paid(doc, Decision(accepted, reason))

    async def settle(self, doc: Document) -> None:
        owner = self.lookup(doc.agreement_id)
        if owner is None:
            # The owner may not be adopted yet (operator restart): retry, never pay blindly.
            self._orphans.setdefault(doc.id, (doc, datetime.now(UTC)))
            return
        self._orphans.pop(doc.id, None)
        decision = owner.decide(doc)
        try:
            if decision.accept and decision.allocation_id:
                if doc.kind == "debit note":
                    await self.client.payment.accept_debit_note(
                        doc.id, doc.amount, decision.allocation_id
                    )
                    crashpoint("debit-note-accepted")
                else:
                    await self.client.payment.accept_invoice(
                        doc.id, doc.amount, decision.allocation_id
                    )
                    crashpoint("invoice-accepted")
            elif not decision.accept:
                if doc.kind == "debit note":
                    await self.client.payment.reject_debit_note(
                        doc.id,
                        "INCORRECT_AMOUNT",
                        decision.accepted_so_far,
                        message=decision.reason,
                    )
                else:
                    await self.client.payment.reject_invoice(
                        doc.id,
                        "INCORRECT_AMOUNT",
                        decision.accepted_so_far,
                        message=decision.reason,
                    )
        except GolemError as error:
            log.warning("settling %s %s failed: %s", doc.kind, doc.id, error)
            self._orphans.setdefault(doc.id, (doc, datetime.now(UTC)))
            return
        self._done.add(doc.id)
        await owner.paid(doc, decision)

    async def _retry_orphans(self) -> None:
        now = datetime.now(UTC)
        for doc_id, (doc, first_seen) in list(self._orphans.items()):
            if now - first_seen > timedelta(hours=1):
                log.warning(
                    "%s %s for unknown agreement %s left unpaid", doc.kind, doc_id, doc.agreement_id
                )
                self._orphans.pop(doc_id)
                continue
            if self.lookup(doc.agreement_id) is not None:
                await self.settle(doc)

    async def reconcile_received(self, agreement_ids: set[str]) -> None:
        """Settle documents still RECEIVED for these agreements (missed while down)."""
        for doc, _ in list(self._orphans.values()):
            if doc.agreement_id in agreement_ids:
                await self.settle(doc)
