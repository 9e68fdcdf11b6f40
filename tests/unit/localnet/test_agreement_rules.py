"""The provider agent's agreement rules of the localnet (yagna's provider defaults)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from golem_operator.localnet.config import AgreementRules
from golem_operator.localnet.rules import (
    P_ACCEPT_TIMEOUT,
    P_EXPIRATION,
    P_PAYMENT_TIMEOUT,
    no_activity_reason,
    refusal,
)

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
RULES = AgreementRules()


def demand(seconds: float, **extra: Any) -> dict[str, Any]:
    return {P_EXPIRATION: int((NOW + timedelta(seconds=seconds)).timestamp() * 1000), **extra}


@pytest.mark.parametrize(
    ("properties", "problem"),
    [
        (demand(299), "less than 5m"),
        (demand(-10), "less than 5m"),
        (demand(300), None),
        (demand(1800), None),  # 30 minutes without a deadline: still fine
        (demand(1801), "more than 30m"),
        (demand(1801, **{P_ACCEPT_TIMEOUT: 240}), None),
        (demand(36000 - 1, **{P_ACCEPT_TIMEOUT: 240}), None),
        (demand(36000, **{P_ACCEPT_TIMEOUT: 240}), "mid-agreement payments"),
        (demand(36000, **{P_ACCEPT_TIMEOUT: 240, P_PAYMENT_TIMEOUT: 600}), None),
        ({}, "Missing expiration key"),
    ],
)
def test_refusal(properties: dict[str, Any], problem: str | None) -> None:
    verdict = refusal(properties, NOW, RULES)
    if problem is None:
        assert verdict is None
    else:
        assert verdict is not None and problem in verdict


def test_the_texts_are_the_providers() -> None:
    assert refusal(demand(60), NOW, RULES) == (
        "Proposal expires at: 2026-12-03 09:01:00.000000 UTC which is less than 5m or more "
        "than 30m from now"
    )
    assert no_activity_reason(90) == {
        "message": "No activity created within 90s",
        "golem.provider.code": "NoActivity",
    }


def test_a_rule_set_to_zero_is_off() -> None:
    lax = AgreementRules(
        min_expiration_seconds=0,
        max_expiration_without_deadline_seconds=0,
        payment_timeout_required_seconds=0,
    )
    assert refusal(demand(1), NOW, lax) is None
    assert refusal(demand(10**6), NOW, lax) is None
