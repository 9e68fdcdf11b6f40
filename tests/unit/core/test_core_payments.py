"""Money rules: linear prices from offers, caps, the most an agreement costs, payability."""

from __future__ import annotations

from decimal import Decimal, localcontext
from typing import Any

import pytest
from core_builders import offer_properties
from hypothesis import given, settings
from hypothesis import strategies as st

from golem_operator.api.status import Price
from golem_operator.core.payments import (
    EPSILON,
    GRACE_SECONDS,
    LinearPrice,
    PriceCaps,
    Verdict,
    check_payable,
    most_cost,
)

CPU = "golem.usage.cpu_sec"
DUR = "golem.usage.duration_sec"
D = Decimal

# --- LinearPrice.from_offer -------------------------------------------------------------------


def test_from_offer_reads_cpu_duration_start_in_the_vector_order() -> None:
    price = LinearPrice.from_offer(offer_properties([0.0001, 0.00002, 0.05], threads=4))
    assert price == LinearPrice(
        start=D("0.05"), cpu_per_sec=D("0.0001"), env_per_sec=D("0.00002"), cpu_threads=4
    )


def test_from_offer_follows_another_order_of_the_usage_vector() -> None:
    props = offer_properties([0.00002, 0.0001, 0.05], extra={"golem.com.usage.vector": [DUR, CPU]})
    price = LinearPrice.from_offer(props)
    assert (price.cpu_per_sec, price.env_per_sec, price.start) == (
        D("0.0001"),
        D("0.00002"),
        D("0.05"),
    )


def test_from_offer_defaults_to_the_standard_vector_when_absent() -> None:
    props = offer_properties([1, 2, 3])
    del props["golem.com.usage.vector"]
    price = LinearPrice.from_offer(props)
    assert (price.cpu_per_sec, price.env_per_sec, price.start) == (D(1), D(2), D(3))


def test_from_offer_with_a_duration_only_vector_has_no_cpu_price() -> None:
    props = offer_properties([0.001, 0.5], extra={"golem.com.usage.vector": [DUR]})
    price = LinearPrice.from_offer(props)
    assert (price.cpu_per_sec, price.env_per_sec, price.start) == (D(0), D("0.001"), D("0.5"))


def test_from_offer_accepts_unknown_counters_priced_at_zero() -> None:
    vector = [CPU, "golem.usage.storage_gib", DUR]
    price = LinearPrice.from_offer(
        offer_properties([0.1, 0, 0.2, 0.3], extra={"golem.com.usage.vector": vector})
    )
    assert (price.cpu_per_sec, price.env_per_sec, price.start) == (D("0.1"), D("0.2"), D("0.3"))


def test_from_offer_refuses_unknown_counters_with_a_price() -> None:
    vector = [CPU, "golem.usage.storage_gib", DUR]
    with pytest.raises(ValueError, match=r"golem\.usage\.storage_gib"):
        LinearPrice.from_offer(
            offer_properties([0.1, 0.5, 0.2, 0.3], extra={"golem.com.usage.vector": vector})
        )


def test_from_offer_keeps_decimal_digits_not_binary_floats() -> None:
    price = LinearPrice.from_offer(offer_properties([0.1, 0.2, 0.3]))
    assert str(price.cpu_per_sec) == "0.1"
    assert price.cpu_per_sec + price.env_per_sec == price.start  # false in binary floats


@pytest.mark.parametrize(
    "coeffs",
    [
        None,
        "0.1,0.2,0.3",
        {"cpu": 1},
        [],
        [0.1, 0.2],  # one short: no start price
        [0.1, 0.2, 0.3, 0.4],  # one too many
        [-0.1, 0.2, 0.3],
        [0.1, -0.2, 0.3],
        [0.1, 0.2, -0.3],
        ["abc", 0.2, 0.3],
        [None, 0.2, 0.3],
        [True, 0.2, 0.3],
        [[0.1], 0.2, 0.3],
        [float("nan"), 0.2, 0.3],
        [0.1, float("inf"), 0.3],
        [0.1, 0.2, "Infinity"],
        [0.1, 0.2, "-0.3"],
    ],
)
def test_bad_coeffs_raise_value_error(coeffs: Any) -> None:
    props = offer_properties([0, 0, 0])
    props["golem.com.pricing.model.linear.coeffs"] = coeffs
    with pytest.raises(ValueError):
        LinearPrice.from_offer(props)


def test_missing_coeffs_raise_value_error() -> None:
    props = offer_properties([0, 0, 0])
    del props["golem.com.pricing.model.linear.coeffs"]
    with pytest.raises(ValueError, match="coeffs"):
        LinearPrice.from_offer(props)


@pytest.mark.parametrize("vector", ["golem.usage.cpu_sec", [CPU, CPU], [CPU, 7], None])
def test_bad_usage_vectors_raise_value_error(vector: Any) -> None:
    with pytest.raises(ValueError):
        LinearPrice.from_offer(
            offer_properties([0, 0, 0], extra={"golem.com.usage.vector": vector})
        )


def test_a_model_other_than_linear_is_refused() -> None:
    with pytest.raises(ValueError, match="linear"):
        LinearPrice.from_offer(
            offer_properties([0, 0, 0], extra={"golem.com.pricing.model": "fixed"})
        )


@pytest.mark.parametrize(
    ("threads", "expected"),
    [(8, 8), (2.0, 2), (1, 1), (0, 1), (-3, 1), ("4", 1), (None, 1), (float("inf"), 1)],
)
def test_thread_count(threads: Any, expected: int) -> None:
    props = offer_properties([0, 0, 0])
    props["golem.inf.cpu.threads"] = threads
    assert LinearPrice.from_offer(props).cpu_threads == expected


def test_status_round_trip_uses_per_hour_prices() -> None:
    price = LinearPrice(D("0.05"), D("0.0001"), D("0.00002"), 4)
    status = price.to_status()
    assert D(status.cpu_per_hour) == D("0.36")
    assert D(status.env_per_hour) == D("0.072")
    assert (D(status.start), status.cpu_threads) == (D("0.05"), 4)
    again = LinearPrice.from_status(Price.model_validate(status.model_dump(by_alias=True)))
    assert again == price


# --- max_cost and caps ------------------------------------------------------------------------


def test_max_cost_counts_every_thread_busy() -> None:
    price = LinearPrice(
        start=D("0.5"), cpu_per_sec=D("0.001"), env_per_sec=D("0.002"), cpu_threads=4
    )
    assert price.max_cost(D(0)) == D("0.5")
    assert price.max_cost(D(100)) == D("0.5") + 100 * (D("0.002") + 4 * D("0.001"))
    assert price.max_cost(D(-50)) == D("0.5")  # no negative life


def test_max_cost_keeps_tiny_amounts_next_to_huge_ones() -> None:
    price = LinearPrice(D("100000000000000000"), D(0), D("0.000000000000000001"), 1)
    assert price.max_cost(D(1)) == D("100000000000000000.000000000000000001")


CAPS = PriceCaps(start=D("0.1"), cpu_per_hour=D("0.36"), env_per_hour=D("0.072"))


def test_a_price_at_the_caps_passes() -> None:
    assert CAPS.violation(LinearPrice(D("0.1"), D("0.0001"), D("0.00002"))) is None
    assert PriceCaps().violation(LinearPrice(D(10**6), D(10**6), D(10**6))) is None


@pytest.mark.parametrize(
    ("price", "field", "cap"),
    [
        (LinearPrice(D("0.100000000000000001"), D(0), D(0)), "start", "maxStartPrice"),
        (LinearPrice(D(0), D("0.0001000001"), D(0)), "cpu_per_hour", "maxCpuPerHour"),
        (LinearPrice(D(0), D(0), D("0.0000200001")), "env_per_hour", "maxEnvPerHour"),
    ],
)
def test_a_violation_names_the_cap(price: LinearPrice, field: str, cap: str) -> None:
    reason = CAPS.violation(price)
    assert reason is not None and cap in reason
    # The one cap alone catches it; the others alone do not.
    assert PriceCaps(**{field: getattr(CAPS, field)}).violation(price) == reason
    others = {f: getattr(CAPS, f) for f in ("start", "cpu_per_hour", "env_per_hour") if f != field}
    assert PriceCaps(**others).violation(price) is None


# --- check_payable ----------------------------------------------------------------------------

#: 1 GLM to start, 0.001 GLM per second of life, nothing per CPU second.
SIMPLE = LinearPrice(start=D(1), cpu_per_sec=D(0), env_per_sec=D("0.001"))


def payable(
    amount: str,
    accepted: str = "0",
    budget: str = "100",
    elapsed: int = 1000,
    price: LinearPrice = SIMPLE,
    what: str = "debit note",
) -> Verdict:
    return check_payable(
        amount=D(amount),
        price=price,
        elapsed_seconds=D(elapsed),
        accepted_so_far=D(accepted),
        budget_left=D(budget),
        what=what,
    )


def test_ceiling_includes_the_grace_seconds() -> None:
    assert GRACE_SECONDS == 15  # 1 + (1000 + 15) * 0.001 = 2.015 below
    verdict = payable("2.015")
    assert verdict.accept and verdict.increment == D("2.015")
    assert not payable("2.015", elapsed=999).accept  # one second less of life


def test_accepts_within_the_prices_and_gives_the_increment() -> None:
    verdict = payable("2")
    assert verdict.accept and verdict.increment == D(2)
    assert "within" in verdict.reason


def test_rejects_above_the_agreed_prices_and_says_so() -> None:
    verdict = payable("2.016")
    assert not verdict.accept and verdict.increment == 0
    assert "agreed prices" in verdict.reason and "2.015" in verdict.reason
    assert verdict.reason.startswith("debit note")
    assert payable("2.016", what="invoice").reason.startswith("invoice")


def test_rounding_slack_is_tiny() -> None:
    assert payable(str(D("2.015") + EPSILON)).accept
    assert not payable(str(D("2.015") + 2 * EPSILON)).accept


def test_cpu_time_is_priced_for_every_thread() -> None:
    price = LinearPrice(start=D(0), cpu_per_sec=D("0.001"), env_per_sec=D(0), cpu_threads=4)
    # 4 threads busy for 985 + 15 s = 4 GLM at most.
    assert payable("4", elapsed=985, price=price).accept
    assert not payable("4.01", elapsed=985, price=price).accept


def test_rejects_above_the_budget() -> None:
    verdict = payable("2", budget="1.5")
    assert not verdict.accept and "budget" in verdict.reason
    assert "1.5" in verdict.reason


def test_the_budget_has_no_slack() -> None:
    assert payable("2", budget="2").accept
    assert not payable("2", budget="1.999999999999999999").accept


def test_cumulative_notes_give_the_increment() -> None:
    verdict = payable("2", accepted="1.5", budget="0.5")
    assert verdict.accept and verdict.increment == D("0.5")


@pytest.mark.parametrize("amount", ["1.5", "1.2", "0"])
def test_a_repeated_or_older_note_adds_nothing(amount: str) -> None:
    verdict = payable(amount, accepted="1.5", budget="0")
    assert verdict.accept and verdict.increment == 0


def test_negative_amounts_are_rejected() -> None:
    verdict = payable("-0.000000000000000001")
    assert not verdict.accept and "negative" in verdict.reason


def test_absurd_precision_is_exact() -> None:
    tiny = "0.000000000000000001"
    price = LinearPrice(D(0), D(0), D(tiny))
    verdict = payable(tiny, budget=tiny, price=price, elapsed=0)
    assert verdict.accept and verdict.increment == D(tiny)
    assert not payable(tiny, budget="0", price=price, elapsed=0).accept
    # 36 significant digits: the default 28-digit context would round the increment away.
    big = "100000000000000000.000000000000000001"
    price = LinearPrice(D(big), D(0), D(0))
    assert not payable(big, budget="100000000000000000", price=price).accept
    verdict = payable(big, accepted="100000000000000000", budget=tiny, price=price)
    assert verdict.accept and verdict.increment == D(tiny)


# --- properties -------------------------------------------------------------------------------

amounts = st.decimals(min_value=0, max_value=50, places=18, allow_nan=False, allow_infinity=False)


@settings(max_examples=300, deadline=None)
@given(
    budget=st.decimals(min_value=0, max_value=20, places=18),
    notes=st.lists(st.tuples(st.integers(0, 2), amounts, st.integers(0, 20000)), max_size=30),
)
def test_accepted_increments_never_exceed_the_budget(
    budget: Decimal, notes: list[tuple[int, Decimal, int]]
) -> None:
    """Any sequence of notes over three agreements: what is accepted stays within the budget."""
    prices = [
        SIMPLE,
        LinearPrice(D("0.2"), D("0.0003"), D("0.0001"), 2),
        LinearPrice(D(0), D(0), D(0)),
    ]
    accepted = [D(0)] * 3
    with localcontext() as ctx:
        ctx.prec = 100
        total = D(0)
        for agreement, amount, elapsed in notes:
            verdict = check_payable(
                amount=amount,
                price=prices[agreement],
                elapsed_seconds=D(elapsed),
                accepted_so_far=accepted[agreement],
                budget_left=budget - total,
            )
            assert verdict.increment >= 0
            if verdict.accept:
                total += verdict.increment
                accepted[agreement] = max(accepted[agreement], amount)
                ceiling = prices[agreement].max_cost(D(elapsed) + GRACE_SECONDS)
                assert accepted[agreement] <= ceiling + EPSILON
            else:
                assert verdict.increment == 0
            assert total <= budget
        assert total == sum(accepted)


@settings(max_examples=60)
@given(
    start=st.decimals(0, 10, places=4),
    cpu=st.decimals(0, 10, places=4),
    env=st.decimals(0, 10, places=4),
    threads=st.integers(1, 64),
    seconds=st.integers(-10, 10**6),
)
def test_most_cost_of_a_recorded_price_is_its_max_cost(
    start: Decimal, cpu: Decimal, env: Decimal, threads: int, seconds: int
) -> None:
    # Kept per (price, seconds): asked twice, the same as pricing the record afresh.
    price = Price.model_validate(
        {"start": str(start), "cpuPerHour": str(cpu), "envPerHour": str(env), "cpuThreads": threads}
    )
    expected = LinearPrice.from_status(price).max_cost(Decimal(seconds))
    assert most_cost(price, Decimal(seconds)) == expected
    assert most_cost(price, Decimal(seconds)) == expected
