"""The payment processor's supervision: retries per document, bounded concurrency, restarts.

The Golem client is faked at its boundary (a few payment calls recording what they were
asked); the processor's own scheduling and decisions are what is tested.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from golem_operator.golem import GolemServerError
from golem_operator.requestor.payments import (
    Decision,
    Document,
    PaymentProcessor,
    Retired,
)
from golem_operator.requestor.supervision import Supervisor


@dataclass
class Note:
    agreement_id: str
    total_amount_due: Decimal
    status: str = "RECEIVED"

    @property
    def amount(self) -> Decimal:  # invoices call it `amount`
        return self.total_amount_due


@dataclass
class FakePayment:
    notes: dict[str, Note]
    fail_first: dict[str, int] = field(default_factory=dict)
    delay: float = 0.0
    accepted: list[str] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    fetching: int = 0
    most_fetching: int = 0
    concurrent_same: int = 0
    _in_flight: set[str] = field(default_factory=set)

    async def get_debit_note(self, doc_id: str) -> Note:
        if doc_id in self._in_flight:
            self.concurrent_same += 1
        self._in_flight.add(doc_id)
        self.fetching += 1
        self.most_fetching = max(self.most_fetching, self.fetching)
        try:
            await asyncio.sleep(self.delay)
            if self.fail_first.get(doc_id, 0) > 0:
                self.fail_first[doc_id] -= 1
                raise GolemServerError("503 injected", status=503, method="GET", path="/x")
            return self.notes[doc_id]
        finally:
            self.fetching -= 1
            self._in_flight.discard(doc_id)

    get_invoice = get_debit_note

    async def accept_debit_note(self, doc_id: str, amount: Decimal, allocation: str) -> None:
        self.notes[doc_id].status = "ACCEPTED"
        self.accepted.append(doc_id)

    accept_invoice = accept_debit_note

    async def reject_debit_note(
        self, doc_id: str, reason: str, accepted: Decimal, message: str = ""
    ) -> None:
        self.notes[doc_id].status = "REJECTED"
        self.rejected.append((doc_id, message))

    reject_invoice = reject_debit_note

    async def get_allocation(self, allocation_id: str) -> Any:
        raise AssertionError("no allocation is looked up in these tests")


@dataclass
class FakeClient:
    payment: FakePayment


class Owner:
    def __init__(self, accept: bool = True, allocation: str | None = "alloc") -> None:
        self.accept = accept
        self.allocation = allocation
        self.recorded: list[tuple[str, bool]] = []

    def decide(self, document: Document) -> Decision:
        return Decision(self.accept, "judged", self.allocation)

    async def paid(self, document: Document, decision: Decision) -> None:
        self.recorded.append((document.id, decision.accept))


async def wait_until(predicate: Any, within: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def processor(payment: FakePayment, owners: dict[str, Any], **kw: Any) -> PaymentProcessor:
    return PaymentProcessor(FakeClient(payment), owners.get, **kw)  # type: ignore[arg-type]


async def test_a_failing_document_is_retried_and_does_not_stop_the_others() -> None:
    notes = {f"n{i}": Note("ag", Decimal("0.1")) for i in range(5)}
    payment = FakePayment(notes, fail_first={"n0": 2})
    owner = Owner()
    proc = processor(payment, {"ag": owner})
    for doc_id in notes:
        proc.submit("debit note", doc_id)
    await wait_until(lambda: len(owner.recorded) == 5)
    assert sorted(payment.accepted) == sorted(notes)
    assert payment.accepted[-1] == "n0"  # the others went ahead while it waited to retry
    await proc.close()


async def test_documents_are_handled_concurrently_within_the_bound_and_never_twice() -> None:
    notes = {f"n{i}": Note("ag", Decimal("0.1")) for i in range(12)}
    payment = FakePayment(notes, delay=0.05)
    owner = Owner()
    proc = processor(payment, {"ag": owner}, concurrency=4)
    for _ in range(3):  # the same events seen again (a restarted poll) change nothing
        for doc_id in notes:
            proc.submit("debit note", doc_id)
    await wait_until(lambda: len(owner.recorded) == 12)
    assert payment.most_fetching == 4
    assert payment.concurrent_same == 0
    assert sorted(payment.accepted) == sorted(notes)  # each accepted once
    await proc.close()


async def test_an_accept_without_an_allocation_is_a_rejection_not_a_payment() -> None:
    payment = FakePayment({"inv": Note("ag", Decimal("0.1"))})
    owner = Owner(accept=True, allocation=None)
    proc = processor(payment, {"ag": owner})
    proc.submit("invoice", "inv")
    await wait_until(lambda: owner.recorded)
    assert owner.recorded == [("inv", False)]
    assert payment.accepted == [] and "allocation" in payment.rejected[0][1]
    await proc.close()


async def test_a_document_of_a_deleted_service_is_rejected_with_the_reason() -> None:
    payment = FakePayment({"inv": Note("gone", Decimal("0.001"))})
    proc = processor(payment, {})
    proc.retire(
        Retired(
            agreement_id="gone",
            service="ns/svc",
            price=None,
            approved_at=None,
            terminated_at=None,
            allocation_id=None,
            reason="the service ns/svc was deleted and its allocation released",
        )
    )
    proc.submit("invoice", "inv")
    await wait_until(lambda: payment.rejected)
    assert payment.accepted == []
    await proc.close()


async def test_an_unowned_document_waits_for_its_owner() -> None:
    payment = FakePayment({"n": Note("later", Decimal("0.1"))})
    owners: dict[str, Any] = {}
    proc = processor(payment, owners)
    proc.submit("debit note", "n")
    await asyncio.sleep(0.3)
    assert payment.accepted == [] and payment.rejected == []
    owners["later"] = owner = Owner()
    proc.owners_changed()
    await wait_until(lambda: owner.recorded)
    assert payment.accepted == ["n"]
    await proc.close()


async def test_a_dying_task_is_restarted_and_reported_while_down() -> None:
    supervisor = Supervisor("the daemon")
    runs: list[int] = []
    recovered = asyncio.Event()

    async def loop(sup: Supervisor, name: str) -> None:
        runs.append(1)
        if len(runs) < 3:
            raise RuntimeError("boom")
        sup.healthy(name)
        recovered.set()
        await asyncio.Event().wait()

    supervisor.spawn("payments-invoices", loop)
    await wait_until(lambda: supervisor.problem() is not None)
    reason, message = supervisor.problem() or ("", "")
    assert reason == "PaymentsStalled" and "payments-invoices" in message and "boom" in message
    await asyncio.wait_for(recovered.wait(), 10)
    assert supervisor.problem() is None and len(runs) == 3
    await supervisor.close()
