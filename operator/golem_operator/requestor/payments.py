"""Paying providers: debit notes and invoices of one Golem daemon, routed to their services.

One processor per daemon (the events are per identity, not per service). Each received
document gets its own task (at most one per document, at most `concurrency` working at once,
so one slow provider cannot hold the others past their acceptance deadline) that retries
every failure with backoff until the document is decided. It is handed to the service that
owns its agreement, which decides (``core.payments``) and records the result. A document of
an agreement no service holds waits a while for its owner (an operator restart adopts
services one by one); one of an agreement whose service was deleted (``Retired``), or that
stays unowned, is judged from the agreement itself and the allocation left for it
(``core.payments.check_unowned``): never paid blindly, never left undecided silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Literal, Protocol

from golem_operator.core.payments import LinearPrice, check_unowned, life_seconds, next_backoff
from golem_operator.crashpoints import crashpoint, failpoint
from golem_operator.golem import GolemClient, GolemError, GolemNotFound
from golem_operator.observability import metrics
from golem_operator.requestor.supervision import Supervisor

log = logging.getLogger(__name__)

DocumentKind = Literal["debit note", "invoice"]

#: How long a document waits for its service before it is judged as unowned (a restarted
#: operator adopts its services within this; an agreement nobody adopts is someone else's).
UNOWNED_WAIT = 600.0
#: Documents handled at once per daemon.
CONCURRENCY = 8
#: Retry delays of one document (failures) and of one waiting for its owner (woken early
#: when an agreement is registered).
FIRST_RETRY = 0.5
MAX_RETRY = 30.0
OWNER_POLL = 5.0


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


@dataclass(frozen=True)
class Retired:
    """An agreement whose service was deleted before its documents were all settled."""

    agreement_id: str
    service: str
    price: LinearPrice | None
    approved_at: datetime | None
    terminated_at: datetime | None
    #: The allocation still meant to pay for it, or None once released.
    allocation_id: str | None
    reason: str


class PaymentOwner(Protocol):
    """A service that owns agreements: it decides and records payments."""

    def decide(self, document: Document) -> Decision: ...

    def paid(self, document: Document, decision: Decision) -> Awaitable[None]: ...


Lookup = Callable[[str], PaymentOwner | None]


class PaymentProcessor:
    """Polls debit-note and invoice events and settles each document through its owner."""

    def __init__(
        self,
        client: GolemClient,
        lookup: Lookup,
        *,
        supervisor: Supervisor | None = None,
        unowned_wait: float = UNOWNED_WAIT,
        concurrency: int = CONCURRENCY,
    ) -> None:
        self.client = client
        self.lookup = lookup
        self.supervisor = supervisor or Supervisor("the Golem daemon")
        self.unowned_wait = unowned_wait
        self._limit = asyncio.Semaphore(concurrency)
        #: Documents decided (or settled before a restart and recorded): never handled again.
        self._done: set[str] = set()
        #: The task handling each document now: a document is never handled twice at once.
        self._handling: dict[str, asyncio.Task[None]] = {}
        #: Agreements of deleted services, judged without an owner.
        self.retired: dict[str, Retired] = {}
        since = datetime.now(UTC) - timedelta(hours=24)
        #: Where each poll resumes, also after its task was restarted.
        self._after: dict[DocumentKind, datetime] = {"debit note": since, "invoice": since}
        self._owner_changed = asyncio.Event()

    def start(self) -> None:
        self.supervisor.spawn(
            "payments-debit-notes", lambda sup, name: self._poll("debit note", sup, name)
        )
        self.supervisor.spawn(
            "payments-invoices", lambda sup, name: self._poll("invoice", sup, name)
        )

    async def close(self) -> None:
        await self.supervisor.close()
        for task in list(self._handling.values()):
            task.cancel()
        for task in list(self._handling.values()):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    @property
    def pending(self) -> int:
        """Documents being handled or waiting (for an owner or a retry)."""
        return len(self._handling)

    def retire(self, retired: Retired) -> None:
        """A deleted service's agreement: its late documents are judged without it."""
        self.retired[retired.agreement_id] = retired
        self.owners_changed()

    def owners_changed(self) -> None:
        """An agreement got (or lost) its owner: documents waiting for one look again."""
        self._owner_changed.set()

    async def _poll(self, kind: DocumentKind, supervisor: Supervisor, name: str) -> None:
        backoff = FIRST_RETRY
        while True:
            failpoint("payments-poll")
            try:
                if kind == "debit note":
                    dn_events = await self.client.payment.collect_debit_note_events(
                        self._after[kind], timeout=2.0, max_events=100
                    )
                    events = [(e.event_date, e.event_type, e.debit_note_id) for e in dn_events]
                else:
                    inv_events = await self.client.payment.collect_invoice_events(
                        self._after[kind], timeout=2.0, max_events=100
                    )
                    events = [(e.event_date, e.event_type, e.invoice_id) for e in inv_events]
                backoff = FIRST_RETRY
            except GolemError as error:
                log.info("collecting %s events failed: %s", kind, error)
                await asyncio.sleep(backoff)
                backoff = next_backoff(backoff, cap=10.0)
                continue
            supervisor.healthy(name)
            for date, event_type, doc_id in events:
                self._after[kind] = max(self._after[kind], date)
                if event_type.endswith("ReceivedEvent"):
                    self.submit(kind, doc_id)

    def submit(self, kind: DocumentKind, doc_id: str) -> None:
        """Handle a document in its own task, unless it is decided or being handled."""
        if doc_id in self._done or doc_id in self._handling:
            return
        task = asyncio.create_task(self._process(kind, doc_id), name=f"{kind} {doc_id}")
        self._handling[doc_id] = task
        task.add_done_callback(lambda _: self._handling.pop(doc_id, None))

    async def _process(self, kind: DocumentKind, doc_id: str) -> None:
        """Until the document is decided: every failure is logged and retried with backoff."""
        first_seen = time.monotonic()
        backoff = FIRST_RETRY
        #: Its agreement, once fetched: while nobody can claim it, wait without fetching again.
        agreement_id: str | None = None
        while doc_id not in self._done:
            waited = time.monotonic() - first_seen
            if agreement_id is not None and not self._claimable(agreement_id, waited):
                wait = OWNER_POLL
            else:
                try:
                    async with self._limit:
                        done, agreement_id = await self._handle(kind, doc_id, waited)
                    if done:
                        return
                    wait = OWNER_POLL  # waiting for its owner
                except asyncio.CancelledError:
                    raise
                except GolemNotFound:
                    log.warning("%s %s is gone from the daemon; nothing to decide", kind, doc_id)
                    return
                except Exception as error:  # a timeout, a 5xx, a bug: never the end of it
                    metrics.PAYMENT_DOCUMENT_RETRIES.labels(kind).inc()
                    log.warning(
                        "handling %s %s failed, retrying in %.1fs: %s: %s",
                        kind,
                        doc_id,
                        backoff,
                        type(error).__name__,
                        error,
                    )
                    wait = backoff
                    backoff = next_backoff(backoff, cap=MAX_RETRY)
            self._owner_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._owner_changed.wait(), wait)

    def _claimable(self, agreement_id: str, waited: float) -> bool:
        """Whether a document of this agreement can be decided (or recorded) now."""
        return (
            self.lookup(agreement_id) is not None
            or agreement_id in self.retired
            or waited >= self.unowned_wait
        )

    async def _fetch(self, kind: DocumentKind, doc_id: str) -> tuple[Document, str]:
        if kind == "debit note":
            note = await self.client.payment.get_debit_note(doc_id)
            return Document(kind, doc_id, note.agreement_id, note.total_amount_due), note.status
        invoice = await self.client.payment.get_invoice(doc_id)
        return Document(kind, doc_id, invoice.agreement_id, invoice.amount), invoice.status

    async def _handle(self, kind: DocumentKind, doc_id: str, waited: float) -> tuple[bool, str]:
        """One attempt: (decided or needing nothing more, its agreement)."""
        failpoint("payment-document")
        doc, status = await self._fetch(kind, doc_id)
        owner = self.lookup(doc.agreement_id)
        if status != "RECEIVED":
            # Accepted or rejected already (e.g. before a restart). A crash between settling
            # on Golem and recording it in status would leave status.spent short and the
            # invoice never marked settled: record it again (owners record idempotently).
            accepted = status in ("ACCEPTED", "SETTLED")
            if accepted or (status == "REJECTED" and kind == "invoice"):
                if owner is None:
                    if not self._claimable(doc.agreement_id, waited):
                        return False, doc.agreement_id
                else:
                    reason = "settled before the operator restarted"
                    await owner.paid(doc, Decision(accepted, reason))
            self._done.add(doc_id)
            return True, doc.agreement_id
        if owner is None:
            if not self._claimable(doc.agreement_id, waited):
                return False, doc.agreement_id  # its owner may not be adopted yet
            await self._settle_unowned(doc, self.retired.get(doc.agreement_id))
            return True, doc.agreement_id
        await self._settle(doc, owner)
        return True, doc.agreement_id

    async def _settle(self, doc: Document, owner: PaymentOwner) -> None:
        decision = owner.decide(doc)
        if decision.accept and not decision.allocation_id:
            # Paying needs an allocation; recording it paid without one would be a lie.
            decision = Decision(
                False,
                "no allocation left to pay from (the service's allocation was released)",
                None,
                decision.accepted_so_far,
            )
        await self._send(doc, decision)
        self._done.add(doc.id)
        metrics.PAYMENT_DOCUMENTS.labels(
            doc.kind, "accepted" if decision.accept else "rejected"
        ).inc()
        await owner.paid(doc, decision)

    async def _send(self, doc: Document, decision: Decision) -> None:
        """Accept or reject on Golem (raises GolemError: the caller retries)."""
        if decision.accept:
            assert decision.allocation_id is not None
            if doc.kind == "debit note":
                await self.client.payment.accept_debit_note(
                    doc.id, doc.amount, decision.allocation_id
                )
                crashpoint("debit-note-accepted")
            else:
                await self.client.payment.accept_invoice(doc.id, doc.amount, decision.allocation_id)
                crashpoint("invoice-accepted")
        elif doc.kind == "debit note":
            await self.client.payment.reject_debit_note(
                doc.id, "INCORRECT_AMOUNT", decision.accepted_so_far, message=decision.reason
            )
        else:
            await self.client.payment.reject_invoice(
                doc.id, "INCORRECT_AMOUNT", decision.accepted_so_far, message=decision.reason
            )

    async def _settle_unowned(self, doc: Document, retired: Retired | None) -> None:
        """Judge a document no service can: from the agreement and what is left to pay it."""
        now = datetime.now(UTC)
        if retired is not None:
            price, approved, end = retired.price, retired.approved_at, retired.terminated_at
            why, allocation_id = retired.reason, retired.allocation_id
        else:
            agreement = await self.client.market.get_agreement(doc.agreement_id)
            try:
                price = LinearPrice.from_offer(agreement.offer.properties)
            except ValueError:
                price = None
            # Its termination time is not known here: the most lenient end; the allocation
            # (none is known for an agreement nobody holds) decides.
            approved, end = agreement.approved_date, None
            why = f"no service holds agreement {doc.agreement_id} (deleted while unwatched?)"
            allocation_id = None
        allocation_left: Decimal | None = None
        if allocation_id is not None:
            try:
                allocation = await self.client.payment.get_allocation(allocation_id)
                allocation_left = allocation.remaining_amount
            except GolemNotFound:
                allocation_id = None
        elapsed = life_seconds(approved, end or now) if approved is not None else Decimal(0)
        verdict = check_unowned(
            amount=doc.amount,
            price=price,
            elapsed_seconds=elapsed,
            allocation_left=allocation_left,
            why_unowned=why,
            what=doc.kind,
        )
        decision = Decision(verdict.accept, verdict.reason, allocation_id, Decimal(0))
        await self._send(doc, decision)
        self._done.add(doc.id)
        outcome = "unowned-accepted" if verdict.accept else "unowned-rejected"
        metrics.PAYMENT_DOCUMENTS.labels(doc.kind, outcome).inc()
        log.warning(
            "%s %s for %s GLM of agreement %s, which no service holds: %s (%s)",
            doc.kind,
            doc.id,
            doc.amount,
            doc.agreement_id,
            "accepted" if verdict.accept else "rejected",
            verdict.reason,
        )

    async def reconcile_received(self, agreement_ids: set[str]) -> None:
        """Owners of these agreements were adopted: documents waiting for them go ahead."""
        del agreement_ids
        self.owners_changed()
