"""What a provider agent demands of an agreement before it drafts one. Pure.

Called by the network when a provider answers a counter-proposal. The rules are those of
yagna's provider agent with its defaults (its negotiator's agreement-expiration and
payment-timeout components): an agreement must end at least 5 minutes from now; one ending
more than 30 minutes from now needs a debit-note acceptance deadline; one ending 10 hours from
now or later needs mid-agreement payments (a payment timeout for debit notes). The refusal
texts follow the provider's.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from golem_operator.localnet.config import AgreementRules

P_EXPIRATION = "golem.srv.comp.expiration"
P_ACCEPT_TIMEOUT = "golem.com.payment.debit-notes.accept-timeout?"
P_PAYMENT_TIMEOUT = "golem.com.scheme.payu.payment-timeout-sec?"


def _span(seconds: float) -> str:
    """A duration as the provider prints it: 5m, 30m, 10h, 90s."""
    whole = int(seconds)
    if whole and whole % 3600 == 0:
        return f"{whole // 3600}h"
    if whole and whole % 60 == 0:
        return f"{whole // 60}m"
    return f"{whole}s"


def _set(properties: dict[str, Any], key: str) -> bool:
    value = properties.get(key)
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def refusal(properties: dict[str, Any], now: datetime, rules: AgreementRules) -> str | None:
    """Why a provider refuses to draft an agreement for these demand properties, or None."""
    raw = properties.get(P_EXPIRATION)
    if not isinstance(raw, int | float) or isinstance(raw, bool):
        return "Missing expiration key in Proposal"
    expires = datetime.fromtimestamp(raw / 1000, UTC)
    left = (expires - now).total_seconds()
    with_deadline = _set(properties, P_ACCEPT_TIMEOUT)
    limit = rules.max_expiration_without_deadline_seconds
    too_long = not with_deadline and limit > 0 and left > limit
    if left < rules.min_expiration_seconds or too_long:
        most = _span(limit) if not with_deadline and limit > 0 else "100years"
        return (
            f"Proposal expires at: {expires:%Y-%m-%d %H:%M:%S.%f UTC} which is less than "
            f"{_span(rules.min_expiration_seconds)} or more than {most} from now"
        )
    required = rules.payment_timeout_required_seconds
    if required > 0 and left >= required and not _set(properties, P_PAYMENT_TIMEOUT):
        return (
            f"Expiration time {expires.isoformat()} exceeds the {_span(required)} threshold of "
            "enforcing mid-agreement payments but the required property "
            f"'{P_PAYMENT_TIMEOUT}' was not present in the Demand"
        )
    return None


def no_activity_reason(timeout_seconds: float) -> dict[str, str]:
    """The reason a provider gives when it ends an agreement that got no activity in time."""
    return {
        "message": f"No activity created within {_span(timeout_seconds)}",
        "golem.provider.code": "NoActivity",
    }
