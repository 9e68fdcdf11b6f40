"""Pure money arithmetic of the localnet providers: linear prices, amounts as yagna strings.

Called by `localnet.payments` when it issues debit notes and invoices and checks acceptances
against allocations, and by `localnet.exeunit` for an activity's cost.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation

from golem_operator.localnet.config import Prices

_QUANTUM = Decimal("1e-18")  # GLM has 18 decimals
# Enough digits to print any amount a request may carry (e.g. 1e30 in a refused allocation).
_WIDE = Context(prec=200)


def activity_cost(prices: Prices, *, cpu_seconds: float, duration_seconds: float) -> Decimal:
    """start + per-CPU-hour x CPU hours + per-env-hour x hours, rounded to 18 decimals."""
    cost = (
        prices.start
        + prices.per_cpu_hour * Decimal(str(cpu_seconds)) / 3600
        + prices.per_env_hour * Decimal(str(duration_seconds)) / 3600
    )
    return cost.quantize(_QUANTUM, rounding=ROUND_HALF_UP)


def format_amount(amount: Decimal) -> str:
    """A decimal string without exponent or trailing zeros ("0", "0.0125")."""
    text = format(amount.quantize(_QUANTUM, rounding=ROUND_HALF_UP, context=_WIDE), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def parse_amount(text: object) -> Decimal:
    """A non-negative amount from a JSON string or number; ValueError otherwise."""
    try:
        amount = Decimal(str(text))
    except (InvalidOperation, ValueError):
        raise ValueError(f"not an amount: {text!r}") from None
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"not an amount: {text!r}")
    return amount
