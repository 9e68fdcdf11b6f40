"""Wire models: camelCase in and out, snake_case names, exact decimals, lenient extras."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from pydantic import ValidationError

from golem_operator.golem import (
    Acceptance,
    ActivityState,
    Allocation,
    DemandOfferBase,
    ExeScriptCommandResult,
    Rejection,
)


def test_acceptance_serializes_camel_case_with_decimal_strings() -> None:
    acceptance = Acceptance(total_amount_accepted=Decimal("1.10"), allocation_id="al-1")
    assert acceptance.to_wire() == {"totalAmountAccepted": "1.10", "allocationId": "al-1"}
    assert acceptance.model_dump_json() == '{"totalAmountAccepted":"1.10","allocationId":"al-1"}'


def test_models_accept_aliases_and_field_names() -> None:
    by_alias = Rejection.model_validate(
        {"rejectionReason": "BAD_SERVICE", "totalAmountAccepted": "0"}
    )
    by_name = Rejection.model_validate(
        {"rejection_reason": "BAD_SERVICE", "total_amount_accepted": "0"}
    )
    assert by_alias == by_name
    assert by_alias.message is None
    assert by_alias.to_wire() == {"rejectionReason": "BAD_SERVICE", "totalAmountAccepted": "0"}


def test_unknown_fields_are_kept() -> None:
    state = ActivityState.model_validate({"state": ["Deployed", "Ready"], "newField": 1})
    assert state.model_extra == {"newField": 1}
    assert (state.current, state.next) == ("Deployed", "Ready")


def test_decimal_amounts_stay_exact() -> None:
    allocation = Allocation.model_validate(
        {
            "allocationId": "al-1",
            "totalAmount": "0.1",
            "spentAmount": "0.000000000000000001",
            "remainingAmount": "0.099999999999999999",
            "timestamp": "2024-05-06T07:00:00Z",
            "paymentPlatform": {"driver": "erc20", "network": "holesky", "token": "tglm"},
        }
    )
    assert allocation.spent_amount + allocation.remaining_amount == allocation.total_amount
    assert allocation.to_wire()["remainingAmount"] == "0.099999999999999999"
    assert allocation.timestamp == datetime(2024, 5, 6, 7, tzinfo=UTC)


def test_required_fields_are_enforced() -> None:
    with pytest.raises(ValidationError):
        DemandOfferBase.model_validate({"properties": {}})
    with pytest.raises(ValidationError):
        ExeScriptCommandResult.model_validate(
            {"index": 0, "eventDate": "2024-05-06T07:00:00Z", "result": "Maybe"}
        )


def test_models_are_immutable() -> None:
    state = ActivityState(state=("Ready", None))
    with pytest.raises(ValidationError):
        state.reason = "x"  # type: ignore[misc]
