"""The allocation's size for a budget, the mark of a new allocation, and the activity window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from golem_operator.core.market import ACTIVITY_WINDOW, activity_window_missed, draft_problem
from golem_operator.core.payments import (
    ALLOCATION_LIFETIME,
    allocation_mark,
    allocation_size,
    carries_mark,
    find_marked,
)

D = Decimal
NOW = datetime(2026, 12, 3, 9, 0, 0, 123456, tzinfo=UTC)
PLATFORM = "erc20-holesky-tglm"
ADDRESS = "0xAbC0000000000000000000000000000000000001"


def test_a_raised_budget_raises_the_allocation_by_as_much() -> None:
    # Created at 1.0 with nothing spent; 0.3 accepted since (the allocation paid it too).
    size = allocation_size(
        budget=D("2.0"), spent=D("0.3"), committed=D("0.2"), allocation_spent=D("0.3")
    )
    assert size.total == D("2.0")
    assert size.shortfall == 0


def test_a_lowered_budget_lowers_the_allocation_but_never_below_what_is_committed() -> None:
    lowered = allocation_size(
        budget=D("0.6"), spent=D("0.3"), committed=D("0.2"), allocation_spent=D("0.3")
    )
    assert (lowered.total, lowered.shortfall) == (D("0.6"), 0)
    below = allocation_size(
        budget=D("0.4"), spent=D("0.3"), committed=D("0.2"), allocation_spent=D("0.3")
    )
    # Open agreements may still cost 0.2: the allocation keeps it, and says by how much the
    # budget falls short.
    assert below.total == D("0.5")
    assert below.shortfall == D("0.1")
    under_spent = allocation_size(
        budget=D("0.1"), spent=D("0.3"), committed=D("0"), allocation_spent=D("0.3")
    )
    assert under_spent.total == D("0.3")  # the daemon refuses a total below its spent amount
    assert under_spent.shortfall == D("0.2")


amounts = st.decimals(min_value=0, max_value=1000, places=6, allow_nan=False)


@given(budget=amounts, spent=amounts, committed=amounts, paid=amounts)
def test_the_size_covers_what_was_paid_and_what_is_owed(
    budget: Decimal, spent: Decimal, committed: Decimal, paid: Decimal
) -> None:
    size = allocation_size(budget=budget, spent=spent, committed=committed, allocation_spent=paid)
    assert size.total >= paid + committed
    assert size.total >= paid + budget - spent
    assert size.shortfall == max(spent + committed - budget, 0)
    if size.shortfall == 0 and budget >= spent:
        assert size.total == paid + budget - spent


def test_the_mark_is_a_year_ahead_at_millisecond_precision() -> None:
    mark = allocation_mark(NOW, 437)
    assert mark - (NOW + ALLOCATION_LIFETIME) < timedelta(seconds=1)
    assert mark.microsecond == 437_000
    assert carries_mark(mark + timedelta(microseconds=300), mark)  # the daemon's rounding
    assert not carries_mark(allocation_mark(NOW, 438), mark)
    assert not carries_mark(None, mark)


def test_find_marked_matches_expiry_platform_and_address() -> None:
    mark = allocation_mark(NOW, 5)
    listed = [
        ("mine", mark, PLATFORM, ADDRESS.lower()),
        ("other-time", allocation_mark(NOW, 6), PLATFORM, ADDRESS),
        ("other-platform", mark, "erc20-polygon-glm", ADDRESS),
        ("other-address", mark, PLATFORM, "0x" + "1" * 40),
        ("no-expiry", None, PLATFORM, ADDRESS),
    ]
    assert find_marked(listed, mark, platform=PLATFORM, address=ADDRESS) == ["mine"]


@pytest.mark.parametrize(
    ("age", "missed"),
    [(None, False), (timedelta(0), False), (ACTIVITY_WINDOW, False), (ACTIVITY_WINDOW * 2, True)],
)
def test_activity_window(age: timedelta | None, missed: bool) -> None:
    approved = None if age is None else (NOW - age).isoformat(timespec="seconds")
    # Seconds precision of approvedAt: judged against the second it was recorded in.
    now = NOW.replace(microsecond=0)
    assert activity_window_missed(approved, now) is missed


def test_a_draft_must_keep_the_terms_long_agreements_need() -> None:
    deadline = {"golem.com.payment.debit-notes.accept-timeout?": 240}
    both = {**deadline, "golem.com.scheme.payu.payment-timeout-sec?": 600}
    assert draft_problem({}, timedelta(minutes=30)) is None
    assert "accept-timeout" in (draft_problem({}, timedelta(minutes=31)) or "")
    assert draft_problem(deadline, timedelta(hours=9)) is None
    assert "payment-timeout" in (draft_problem(deadline, timedelta(hours=10)) or "")
    assert draft_problem(both, timedelta(hours=10)) is None
