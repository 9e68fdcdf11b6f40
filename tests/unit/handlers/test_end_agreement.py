"""starting.end_agreement: which daemon answers end an agreement, which keep it tracked.

The market API is faked (a boundary): the answers are yagna 0.17.6's, as the contract tests
record them (tests/contract/test_agreement_cancel_contract.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from golem_operator.golem import (
    GolemClient,
    GolemConflict,
    GolemGone,
    GolemNotFound,
    GolemServerError,
    GolemTimeout,
)
from golem_operator.handlers.starting import end_agreement


@dataclass
class Agreement:
    state: str


@dataclass
class FakeMarket:
    state: str
    terminate_errors: list[Exception] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)

    async def terminate_agreement(self, agreement_id: str, reason: Any) -> None:
        self.calls.append("terminate")
        if self.terminate_errors:
            raise self.terminate_errors.pop(0)
        if self.state in ("Proposal", "Pending"):
            raise GolemConflict(f"Can't update Agreement state from {self.state} to Terminated.")
        if self.state != "Approved":
            raise GolemGone("already ended", status=410)
        self.state = "Terminated"

    async def cancel_agreement(self, agreement_id: str, reason: Any) -> None:
        self.calls.append("cancel")
        if self.state == "Proposal":
            raise GolemServerError("Remote failed to approve", status=500)
        if self.state != "Pending":
            raise GolemGone("not Proposal nor Pending", status=410)
        self.state = "Cancelled"

    async def get_agreement(self, agreement_id: str) -> Agreement:
        self.calls.append("get")
        return Agreement(self.state)


def client(market: FakeMarket) -> GolemClient:
    return cast(GolemClient, type("Client", (), {"market": market})())


async def test_an_approved_agreement_is_terminated() -> None:
    market = FakeMarket("Approved")
    await end_agreement(client(market), "a", "done", "Success")
    assert market.state == "Terminated" and market.calls == ["terminate"]


async def test_a_pending_agreement_is_cancelled() -> None:
    market = FakeMarket("Pending")
    await end_agreement(client(market), "a", "done", "Cancelled")
    assert market.state == "Cancelled"


async def test_an_unconfirmed_agreement_is_left_to_expire_without_cancel() -> None:
    market = FakeMarket("Proposal")
    await end_agreement(client(market), "a", "done", "Cancelled")
    assert market.state == "Proposal" and "cancel" not in market.calls


@pytest.mark.parametrize("gone", [GolemNotFound("x", status=404), GolemGone("x", status=410)])
async def test_not_found_and_gone_count_as_ended(gone: Exception) -> None:
    market = FakeMarket("Approved", terminate_errors=[gone])
    await end_agreement(client(market), "a", "done", "Success")


@pytest.mark.parametrize(
    "failure", [GolemServerError("boom", status=500), GolemTimeout("slow", status=504)]
)
async def test_other_errors_propagate_and_the_agreement_stays_open(failure: Exception) -> None:
    market = FakeMarket("Approved", terminate_errors=[failure])
    with pytest.raises(type(failure)):
        await end_agreement(client(market), "a", "done", "Success")
    assert market.state == "Approved"
    await end_agreement(client(market), "a", "done", "Success")  # the retry ends it
    assert market.state == "Terminated"
