"""Id formats and id checks of the localnet, which follow yagna 0.17.6 (docs/localnet.md)."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

from golem_operator.localnet.network import (
    ApiError,
    agreement_id_problem,
    check_proposal_id,
    check_subscription_id,
    new_activity_id,
    new_document_id,
    new_id,
    new_proposal_id,
    new_subscription_id,
)
from golem_operator.localnet.pricing import format_amount


def test_new_ids_have_yagnas_formats_and_differ() -> None:
    assert re.fullmatch(r"[0-9a-f]{32}-[0-9a-f]{64}", new_subscription_id())
    assert re.fullmatch(r"R-[0-9a-f]{64}", new_proposal_id())
    assert re.fullmatch(r"[0-9a-f]{64}", new_id())
    assert re.fullmatch(r"[0-9a-f]{32}", new_activity_id())
    assert re.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", new_document_id())
    assert len({new_subscription_id() for _ in range(50)}) == 50


def test_generated_ids_pass_their_own_checks() -> None:
    check_subscription_id(new_subscription_id())
    check_proposal_id(new_proposal_id())
    check_proposal_id("P-" + "ab" * 32)  # the provider's view parses too (then is not found)
    assert agreement_id_problem(new_id()) is None


@pytest.mark.parametrize(
    ("subscription_id", "proposal_id"),
    [("xyz", "R-" + "0" * 64), ("0" * 32 + "-" + "0" * 64, "0" * 64)],
)
def test_malformed_path_ids_are_bad_requests(subscription_id: str, proposal_id: str) -> None:
    with pytest.raises(ApiError) as caught:
        check_subscription_id(subscription_id)
        check_proposal_id(proposal_id)
    assert caught.value.status == 400
    assert caught.value.message is not None
    assert caught.value.message.startswith("Path deserialize error: ")
    assert caught.value.message.endswith("has invalid format.")


@pytest.mark.parametrize(
    ("agreement_id", "problem"),
    [
        ("xyz", "Id [xyz] contains non hexadecimal characters."),
        ("R-" + "a" * 64, f"Id [R-{'a' * 64}] contains non hexadecimal characters."),
        ("abc", "Id [abc] hash has invalid length. Should be |64|"),
    ],
)
def test_agreement_id_problems_are_worded_as_yagna_does(agreement_id: str, problem: str) -> None:
    assert agreement_id_problem(agreement_id) == problem


def test_format_amount_prints_amounts_beyond_the_default_precision() -> None:
    # A refused 1e30 allocation is echoed back in the problem answer.
    assert format_amount(Decimal("1e30")) == "1" + "0" * 30
    assert format_amount(Decimal("123456789012345678901234567890.5")) == (
        "123456789012345678901234567890.5"
    )
