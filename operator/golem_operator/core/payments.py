"""Money rules: linear prices, the most an agreement may cost, and whether to pay a note. Pure.

Called by the market (offer choice, budget) and by the payment processor (debit notes and
invoices). Amounts are Decimals, never floats. A debit note or invoice is accepted only when it
is within what the agreed prices allow for the time elapsed and within the budget. The
allocation's size follows the budget (``allocation_size``); an allocation created just before
a crash is found again by the mark it was created with (``allocation_mark``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Context, Decimal, InvalidOperation, localcontext
from typing import Any

from golem_operator.api.status import Price

#: Slack for clocks and rounding: a few seconds of life and a tiny absolute amount.
GRACE_SECONDS = Decimal(15)
EPSILON = Decimal("0.000000000001")
HOUR = Decimal(3600)

CPU_SEC = "golem.usage.cpu_sec"
DURATION_SEC = "golem.usage.duration_sec"

#: Enough digits for any GLM amount the API allows (18 integer + 18 decimal digits) and the
#: products of prices and seconds: money sums must not round (the default context keeps 28).
MONEY = Context(prec=80)


def _coefficient(value: Any) -> Decimal:
    """A finite, non-negative price coefficient from an offer; ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"price coefficient {value!r} is not a number")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"price coefficient {value!r} is not a number") from None
    if not number.is_finite():
        raise ValueError(f"price coefficient {value!r} is not finite")
    if number < 0:
        raise ValueError("negative price")
    return number


@dataclass(frozen=True)
class LinearPrice:
    """golem.com.pricing.model.linear: start + per-second coefficients over the usage vector."""

    start: Decimal
    cpu_per_sec: Decimal
    env_per_sec: Decimal
    cpu_threads: int = 1

    @classmethod
    def from_offer(cls, properties: dict[str, Any]) -> LinearPrice:
        """Read the price from an offer's properties; raises ValueError when unusable."""
        if properties.get("golem.com.pricing.model", "linear") != "linear":
            raise ValueError("pricing model is not linear")
        coeffs = properties.get("golem.com.pricing.model.linear.coeffs")
        usage = properties.get("golem.com.usage.vector", [CPU_SEC, DURATION_SEC])
        if not isinstance(usage, list) or not all(isinstance(u, str) for u in usage):
            raise ValueError("golem.com.usage.vector is not a list of counter names")
        if len(set(usage)) != len(usage):
            raise ValueError("golem.com.usage.vector names a counter twice")
        if not isinstance(coeffs, list) or len(coeffs) != len(usage) + 1:
            raise ValueError(
                "golem.com.pricing.model.linear.coeffs does not match the usage vector"
            )
        amounts = [_coefficient(c) for c in coeffs]
        per = dict(zip(usage, amounts[:-1], strict=True))
        unknown = set(per) - {CPU_SEC, DURATION_SEC}
        if unknown and any(per[u] != 0 for u in unknown):
            raise ValueError(f"unsupported usage counters: {sorted(unknown)}")
        threads = properties.get("golem.inf.cpu.threads", 1)
        usable_threads = isinstance(threads, int | float) and 1 <= threads < 1_000_000
        return cls(
            start=amounts[-1],
            cpu_per_sec=per.get(CPU_SEC, Decimal(0)),
            env_per_sec=per.get(DURATION_SEC, Decimal(0)),
            # A missing or absurd thread count prices one thread (the offer's minimum).
            cpu_threads=int(threads) if usable_threads else 1,
        )

    @classmethod
    def from_status(cls, price: Price) -> LinearPrice:
        return cls(
            start=Decimal(price.start),
            cpu_per_sec=Decimal(price.cpu_per_hour) / HOUR,
            env_per_sec=Decimal(price.env_per_hour) / HOUR,
            cpu_threads=price.cpu_threads,
        )

    def to_status(self) -> Price:
        return Price(
            start=str(self.start),
            cpu_per_hour=str(self.cpu_per_sec * HOUR),
            env_per_hour=str(self.env_per_sec * HOUR),
            cpu_threads=self.cpu_threads,
        )

    def max_cost(self, seconds: Decimal) -> Decimal:
        """The most an agreement can cost after `seconds` of life (every thread busy)."""
        seconds = max(seconds, Decimal(0))
        with localcontext(MONEY):
            return self.start + seconds * (self.env_per_sec + self.cpu_per_sec * self.cpu_threads)


def most_cost(price: Price, seconds: Decimal) -> Decimal:
    """The most an agreement at a recorded price can cost after `seconds` (see max_cost).

    Asked for every instance whenever the budget is judged, i.e. for each Pending instance:
    the result is kept per (price, seconds), which a service's instances mostly share.
    """
    return _most_cost(
        price.start, price.cpu_per_hour, price.env_per_hour, price.cpu_threads, seconds
    )


@functools.lru_cache(maxsize=4096)
def _most_cost(
    start: str, cpu_per_hour: str, env_per_hour: str, threads: int, seconds: Decimal
) -> Decimal:
    price = LinearPrice(
        start=Decimal(start),
        cpu_per_sec=Decimal(cpu_per_hour) / HOUR,
        env_per_sec=Decimal(env_per_hour) / HOUR,
        cpu_threads=threads,
    )
    return price.max_cost(seconds)


@dataclass(frozen=True)
class PriceCaps:
    """The spec's caps, per hour as users write them; None means no cap."""

    start: Decimal | None = None
    cpu_per_hour: Decimal | None = None
    env_per_hour: Decimal | None = None

    def violation(self, price: LinearPrice) -> str | None:
        """Why the price is above the caps, or None."""
        if self.start is not None and price.start > self.start:
            return f"start price {price.start} > maxStartPrice {self.start}"
        if self.cpu_per_hour is not None and price.cpu_per_sec * HOUR > self.cpu_per_hour:
            return f"CPU price {price.cpu_per_sec * HOUR}/h > maxCpuPerHour {self.cpu_per_hour}"
        if self.env_per_hour is not None and price.env_per_sec * HOUR > self.env_per_hour:
            return f"env price {price.env_per_sec * HOUR}/h > maxEnvPerHour {self.env_per_hour}"
        return None


@dataclass(frozen=True)
class Verdict:
    accept: bool
    reason: str
    #: The increment over what was already accepted for the agreement.
    increment: Decimal = Decimal(0)


def check_payable(
    *,
    amount: Decimal,
    price: LinearPrice,
    elapsed_seconds: Decimal,
    accepted_so_far: Decimal,
    budget_left: Decimal,
    what: str = "debit note",
) -> Verdict:
    """Whether a debit note or invoice of `amount` (cumulative for its agreement) is payable.

    elapsed_seconds: the agreement's life so far (approval until now, or until termination).
    accepted_so_far: what was already accepted for this agreement (debit notes are cumulative).
    budget_left: the service's budget minus everything accepted so far.
    """
    if amount < 0:
        return Verdict(False, f"{what} amount {amount} is negative")
    with localcontext(MONEY):
        ceiling = price.max_cost(elapsed_seconds + GRACE_SECONDS)
        tolerated = ceiling + EPSILON
        increment = amount - accepted_so_far
    if amount > tolerated:
        return Verdict(
            False,
            f"{what} amount {amount} exceeds the agreed prices: at most {ceiling.normalize()} "
            f"after {elapsed_seconds:.0f}s",
        )
    if increment <= 0:
        return Verdict(True, "already accepted", Decimal(0))
    # No slack here: the allocation holds exactly the budget, so the daemon would refuse more.
    if increment > budget_left:
        return Verdict(
            False, f"{what} would exceed the budget: {increment} due, {budget_left} left"
        )
    return Verdict(True, "within the agreed prices and the budget", increment)


def life_seconds(approved: datetime, end: datetime) -> Decimal:
    """Seconds an agreement may be billed for: from its approval to `end` (never negative)."""
    return Decimal(max((end - approved).total_seconds(), 0.0))


def check_unowned(
    *,
    amount: Decimal,
    price: LinearPrice | None,
    elapsed_seconds: Decimal,
    allocation_left: Decimal | None,
    why_unowned: str,
    what: str = "invoice",
) -> Verdict:
    """Whether to pay a document of an agreement that no service holds any more.

    Judged from the agreement itself (its agreed prices and life, read from Golem) and the
    allocation that would pay it: `allocation_left` is None when no allocation is left for it
    (the service was deleted and its allocation released). Nothing was accepted for it by
    anyone who still remembers, so the whole amount must fit.
    """
    if price is None:
        return Verdict(
            False, f"{what} of an agreement without usable linear prices ({why_unowned})"
        )
    verdict = check_payable(
        amount=amount,
        price=price,
        elapsed_seconds=elapsed_seconds,
        accepted_so_far=Decimal(0),
        budget_left=allocation_left if allocation_left is not None else Decimal(0),
        what=what,
    )
    if not verdict.accept and "exceeds the agreed prices" in verdict.reason:
        return verdict
    if allocation_left is None:
        return Verdict(False, f"{why_unowned}; no allocation is left to pay this {what}")
    return verdict


def next_backoff(current: float, *, cap: float) -> float:
    """The next retry delay: doubled, at most `cap`."""
    return min(current * 2, cap)


# --- the allocation ----------------------------------------------------------------------------

#: Allocations expire this long after they are created (they are released with the service).
ALLOCATION_LIFETIME = timedelta(days=365)


@dataclass(frozen=True)
class AllocationSize:
    """The total an allocation should have, and by how much the budget misses what is owed."""

    total: Decimal
    #: spent + committed - budget when positive: the budget is below what was already spent
    #: or promised to open agreements (the allocation keeps what they may still cost).
    shortfall: Decimal


def allocation_size(
    *, budget: Decimal, spent: Decimal, committed: Decimal, allocation_spent: Decimal
) -> AllocationSize:
    """The allocation's total for a budget: what the allocation already paid out plus what
    the budget leaves, never less than what open agreements may still cost (nor what was paid:
    the daemon refuses a total below its spent amount)."""
    left = budget - spent
    keep = max(left, committed, Decimal(0))
    return AllocationSize(
        total=allocation_spent + keep,
        shortfall=max(spent + committed - budget, Decimal(0)),
    )


def allocation_mark(now: datetime, entropy: int) -> datetime:
    """The expiry a new allocation is created with, doubling as its mark: a year ahead, at
    millisecond precision, its milliseconds drawn at random (entropy in [0, 1000)). The daemon
    keeps no free-form field on an allocation; its expiry is stored and listed as given."""
    base = (now + ALLOCATION_LIFETIME).replace(microsecond=0)
    return base + timedelta(milliseconds=entropy % 1000)


def carries_mark(timeout: datetime | None, mark: datetime) -> bool:
    """Whether an allocation's expiry is the mark (compared to the millisecond)."""
    if timeout is None:
        return False
    return abs((timeout - mark).total_seconds()) < 0.0005


def find_marked(
    allocations: list[tuple[str, datetime | None, str | None, str | None]],
    mark: datetime,
    *,
    platform: str,
    address: str,
) -> list[str]:
    """Ids of the allocations (id, expiry, platform, address) created with the mark."""
    return [
        allocation_id
        for allocation_id, timeout, their_platform, their_address in allocations
        if carries_mark(timeout, mark)
        and their_platform == platform
        and (their_address or "").lower() == address.lower()
    ]
