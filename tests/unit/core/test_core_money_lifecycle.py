"""Termination times and documents of agreements no service holds (pure parts of payments)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from core_builders import T0, at, make_instance, make_spec

from golem_operator.api.status import GolemServiceStatus, Price
from golem_operator.api.status import InstanceState as S
from golem_operator.core.payments import (
    GRACE_SECONDS,
    LinearPrice,
    check_unowned,
    life_seconds,
    next_backoff,
)
from golem_operator.core.states import Event as E
from golem_operator.core.transactions import (
    agreement_end,
    mark_terminated,
    release_golem_objects,
    summarize,
    transition,
)

D = Decimal
PRICE = LinearPrice(start=D("0.01"), cpu_per_sec=D("0.001"), env_per_sec=D("0.0005"), cpu_threads=2)


def test_reaching_terminated_records_the_time_once() -> None:
    instance = make_instance("a-1", S.STOPPING, agreementId="ag", approvedAt=at(0))
    transition(instance, E.STOP_FINISHED, make_spec(), T0 + timedelta(seconds=90))
    assert instance.state is S.TERMINATED
    assert instance.terminated_at == at(90)
    assert not instance.settled  # its invoice is still due
    mark_terminated(instance, T0 + timedelta(seconds=500))
    assert instance.terminated_at == at(90)


def test_a_terminated_instance_without_agreement_is_settled_with_its_time() -> None:
    instance = make_instance("a-1", S.PENDING)
    mark_terminated(instance, T0)
    assert instance.settled and instance.terminated_at == at(0)


def test_the_agreement_end_is_the_recorded_termination_not_now() -> None:
    now = T0 + timedelta(hours=3)
    ended = make_instance("a-1", S.TERMINATED, terminatedAt=at(120), lastTransitionTime=at(200))
    assert agreement_end(ended, now) == T0 + timedelta(seconds=120)
    # Written before terminatedAt existed: the transition into Terminated.
    legacy = make_instance("a-2", S.TERMINATED, lastTransitionTime=at(200))
    assert agreement_end(legacy, now) == T0 + timedelta(seconds=200)
    live = make_instance("a-3", S.RUNNING, terminatedAt=at(120))
    assert agreement_end(live, now) == now


def test_releasing_an_agreement_forgets_its_termination() -> None:
    instance = make_instance("a-1", S.TERMINATED, agreementId="ag", terminatedAt=at(5))
    release_golem_objects(instance)
    assert instance.terminated_at is None and instance.agreement_id is None


def test_a_waiting_deletion_shows_in_progressing() -> None:
    status = GolemServiceStatus(
        instances=[make_instance("a-1", S.TERMINATED, agreementId="ag", terminatedAt=at(0))]
    )
    summarize(
        status,
        service="a",
        replicas=0,
        generation=1,
        now=T0,
        deleting=True,
        progress=("AwaitingInvoices", "waiting for 1 invoice"),
    )
    progressing = next(c for c in status.conditions if c.type == "Progressing")
    assert (progressing.status, progressing.reason) == ("True", "AwaitingInvoices")
    summarize(status, service="a", replicas=0, generation=1, now=T0, deleting=True)
    progressing = next(c for c in status.conditions if c.type == "Progressing")
    assert progressing.reason != "AwaitingInvoices"


def test_life_seconds_is_never_negative() -> None:
    assert life_seconds(T0, T0 + timedelta(seconds=42)) == D(42)
    assert life_seconds(T0, T0 - timedelta(seconds=42)) == D(0)


def test_an_unowned_invoice_within_prices_is_paid_only_from_a_live_allocation() -> None:
    cost = PRICE.max_cost(D(100))
    paid = check_unowned(
        amount=cost,
        price=PRICE,
        elapsed_seconds=D(100),
        allocation_left=D(1),
        why_unowned="the service was deleted",
    )
    assert paid.accept and paid.increment == cost
    released = check_unowned(
        amount=cost,
        price=PRICE,
        elapsed_seconds=D(100),
        allocation_left=None,
        why_unowned="the service x/y was deleted and its allocation released",
    )
    assert not released.accept
    assert "was deleted and its allocation released" in released.reason


def test_an_unowned_invoice_above_the_prices_is_rejected_for_the_prices() -> None:
    too_much = PRICE.max_cost(D(100) + GRACE_SECONDS) + D("0.001")
    for allocation_left in (D(10), None):
        verdict = check_unowned(
            amount=too_much,
            price=PRICE,
            elapsed_seconds=D(100),
            allocation_left=allocation_left,
            why_unowned="gone",
        )
        assert not verdict.accept and "exceeds the agreed prices" in verdict.reason


def test_an_unowned_invoice_beyond_the_allocation_is_rejected() -> None:
    verdict = check_unowned(
        amount=PRICE.max_cost(D(100)),
        price=PRICE,
        elapsed_seconds=D(100),
        allocation_left=D("0.001"),
        why_unowned="gone",
    )
    assert not verdict.accept and "budget" in verdict.reason


def test_an_unowned_invoice_without_usable_prices_is_rejected() -> None:
    verdict = check_unowned(
        amount=D(0), price=None, elapsed_seconds=D(1), allocation_left=D(1), why_unowned="gone"
    )
    assert not verdict.accept and "linear prices" in verdict.reason


def test_backoff_doubles_up_to_its_cap() -> None:
    delays = [0.5]
    for _ in range(8):
        delays.append(next_backoff(delays[-1], cap=10.0))
    assert delays[:5] == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert max(delays) == 10.0


def test_status_keeps_terminated_at_through_the_wire_format() -> None:
    instance = make_instance("a-1", S.TERMINATED, terminatedAt=at(3), price=Price().model_dump())
    dumped = instance.model_dump(by_alias=True, exclude_none=True)
    assert dumped["terminatedAt"] == at(3)
