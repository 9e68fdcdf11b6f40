"""ServiceMarket's use of offers and its demand refresh.

The Golem client is faked at its boundary (the market calls, recording what they were asked);
what is tested is the market's own bookkeeping: an offer is spent once counter-proposed, kept
when the counter-proposal never reached the daemon, and a refresh records the new demand
before withdrawing the old one.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from golem_operator.api.spec import GolemServiceSpec
from golem_operator.core.market import REFRESH_AFTER, choose_offers
from golem_operator.golem import GolemServerError, GolemTimeout, Proposal, ProposalEvent
from golem_operator.requestor.market import NegotiationFailed, ServiceMarket

SPEC = GolemServiceSpec.model_validate({"payload": {"image": {"hash": "ab" * 28}}, "budget": "10"})
EXPIRATION = 1_900_000_000_000
DEMAND: tuple[dict[str, object], str] = (
    {"golem.srv.comp.expiration": EXPIRATION, "golem.node.id.name": "n"},
    "(golem.runtime.name=vm)",
)


def offer(provider: str, proposal_id: str) -> Proposal:
    return Proposal.model_validate(
        {
            "proposalId": proposal_id,
            "issuerId": provider,
            "state": "Initial",
            "timestamp": datetime.now(UTC).isoformat(),
            "constraints": "()",
            "properties": {
                "golem.node.id.name": provider,
                "golem.com.pricing.model": "linear",
                "golem.com.usage.vector": ["golem.usage.cpu_sec", "golem.usage.duration_sec"],
                "golem.com.pricing.model.linear.coeffs": [0.0001, 0.0001, 0.001],
                "golem.inf.cpu.threads": 2,
            },
        }
    )


class FakeMarketApi:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.events: dict[str, asyncio.Queue[list[Any]]] = {}
        self.counter_error: Exception | None = None
        self.subscribed = 0

    async def subscribe_demand(self, properties: dict[str, object], constraints: str) -> str:
        self.subscribed += 1
        demand_id = f"demand-{self.subscribed}"
        self.calls.append(("subscribe", demand_id))
        self.events[demand_id] = asyncio.Queue()
        self.last_properties = properties
        return demand_id

    async def unsubscribe_demand(self, demand_id: str) -> None:
        self.calls.append(("unsubscribe", demand_id))

    async def collect_demand_events(
        self,
        demand_id: str,
        timeout: float,  # noqa: ASYNC109
        max_events: int,
    ) -> list[Any]:
        queue = self.events.setdefault(demand_id, asyncio.Queue())
        try:
            return await asyncio.wait_for(queue.get(), timeout)
        except TimeoutError:
            return []

    async def counter_proposal(
        self, demand_id: str, proposal_id: str, properties: Any, constraints: str
    ) -> str:
        self.calls.append(("counter", proposal_id))
        if self.counter_error is not None:
            raise self.counter_error
        return "counter-" + proposal_id


class FakeClient:
    def __init__(self) -> None:
        self.market = FakeMarketApi()


async def open_market(offers: list[Proposal]) -> tuple[ServiceMarket, FakeMarketApi]:
    client = FakeClient()
    demand_id = await client.market.subscribe_demand(*DEMAND)
    market = ServiceMarket(client, demand_id, DEMAND, lambda: SPEC)  # type: ignore[arg-type]
    market.start()
    if offers:
        await client.market.events[demand_id].put(
            [ProposalEvent(event_date=datetime.now(UTC), proposal=p) for p in offers]
        )
    market._opened -= 10  # past the first offer window
    for _ in range(100):
        await asyncio.sleep(0)
    return market, client.market


async def test_an_offer_is_spent_once_counter_proposed_even_if_that_failed() -> None:
    market, api = await open_market([offer("p1", "R-1")])
    [choice] = market.candidates(set(), {})
    api.counter_error = GolemServerError("lost", status=500, method="POST", path="/x")
    with pytest.raises(NegotiationFailed):
        await market.negotiate(choice, datetime.now(UTC) + timedelta(hours=1))
    assert market.candidates(set(), {}) == []
    await market.close(unsubscribe=False)


async def test_an_offer_whose_counter_proposal_never_left_is_tried_again() -> None:
    market, api = await open_market([offer("p1", "R-1")])
    [choice] = market.candidates(set(), {})
    error = GolemTimeout("connect timed out", method="POST", path="/x")
    error.__cause__ = httpx.ConnectTimeout("connect timed out")
    api.counter_error = error
    with pytest.raises(NegotiationFailed) as failed:
        await market.negotiate(choice, datetime.now(UTC) + timedelta(hours=1))
    assert failed.value.provider_id == "p1"
    # Avoided, it is refused; once the avoidance ends it is a candidate again.
    assert market.candidates({"p1"}, {}) == []
    [again] = market.candidates(set(), {})
    assert again.offer.proposal_id == "R-1"
    await market.close(unsubscribe=False)


async def test_starving_pending_instances_make_a_refresh_due_and_an_offer_ends_it() -> None:
    market, _ = await open_market([])
    assert market.candidates(set(), {}) == []
    assert not market.refresh_due(pending=1)  # starving, but not for long
    market._starved_since = (market._starved_since or 0) - REFRESH_AFTER
    market._opened -= REFRESH_AFTER
    assert market.refresh_due(pending=1)
    assert not market.refresh_due(pending=0)
    await market.close(unsubscribe=False)


async def test_a_refresh_records_the_new_demand_before_withdrawing_the_old() -> None:
    market, api = await open_market([offer("p1", "R-1")])
    order: list[str] = []

    async def record(demand_id: str) -> None:
        order.append(f"record {demand_id}")
        assert ("unsubscribe", "demand-1") not in api.calls

    new = await market.refresh(record)
    assert new == "demand-2" == market.subscription_id
    assert order == ["record demand-2"]
    assert api.calls[-2:] == [("subscribe", "demand-2"), ("unsubscribe", "demand-1")]
    assert market.alive and market.streak == 1
    # The old demand's offers are gone; the new demand's arrive and are used.
    market._opened -= 10
    assert market.candidates(set(), {}) == []
    await api.events["demand-2"].put(
        [ProposalEvent(event_date=datetime.now(UTC), proposal=offer("p1", "R-2"))]
    )
    for _ in range(100):
        await asyncio.sleep(0)
    [choice] = market.candidates(set(), {})
    assert choice.offer.proposal_id == "R-2"
    assert market.streak == 0  # a usable offer ends the backoff
    # The demand's expiration moved with its publication, never backwards.
    expiration = api.last_properties["golem.srv.comp.expiration"]
    assert isinstance(expiration, int) and expiration >= EXPIRATION
    await market.close(unsubscribe=False)


async def test_a_refresh_whose_record_fails_withdraws_the_new_demand_and_keeps_the_old() -> None:
    market, api = await open_market([offer("p1", "R-1")])

    async def record(demand_id: str) -> None:
        raise RuntimeError("status write failed")

    with pytest.raises(RuntimeError):
        await market.refresh(record)
    assert market.subscription_id == "demand-1" and market.alive
    assert ("unsubscribe", "demand-2") in api.calls
    assert ("unsubscribe", "demand-1") not in api.calls
    [choice] = market.candidates(set(), {})  # its offers are still there
    assert choice.offer.proposal_id == "R-1"
    await market.close(unsubscribe=False)


@settings(max_examples=30, deadline=None)
@given(
    outcomes=st.lists(st.sampled_from(["lost", "never-sent"]), min_size=1, max_size=6),
)
async def test_only_offers_never_sent_survive_failed_negotiations(outcomes: list[str]) -> None:
    offers = [offer(f"p{n}", f"R-{n}") for n in range(len(outcomes))]
    market, api = await open_market(offers)
    for n, outcome in enumerate(outcomes):
        [choice] = [c for c in market.candidates(set(), {}) if c.offer.provider_id == f"p{n}"]
        if outcome == "lost":
            api.counter_error = GolemServerError("lost", status=500, method="POST", path="/x")
        else:
            api.counter_error = GolemTimeout("connect", method="POST", path="/x")
            api.counter_error.__cause__ = httpx.ConnectError("refused")
        with pytest.raises(NegotiationFailed):
            await market.negotiate(choice, datetime.now(UTC) + timedelta(hours=1))
    left = {c.offer.provider_id for c in market.candidates(set(), {})}
    assert left == {f"p{n}" for n, o in enumerate(outcomes) if o == "never-sent"}
    await market.close(unsubscribe=False)


def priced_offer(provider: str, proposal_id: str, start: float) -> Proposal:
    proposal = offer(provider, proposal_id)
    proposal.properties["golem.com.pricing.model.linear.coeffs"] = [0.0001, 0.0001, start]
    return proposal


@settings(max_examples=40, deadline=None)
@given(
    steps=st.lists(
        st.one_of(
            st.tuples(st.just("offer"), st.integers(0, 5), st.integers(1, 9)),
            st.tuples(st.just("spend"), st.integers(0, 5), st.just(0)),
            st.tuples(st.just("cap"), st.integers(1, 9), st.just(0)),
        ),
        max_size=25,
    )
)
async def test_kept_rankings_choose_as_pricing_every_offer_afresh_would(
    steps: list[tuple[str, int, int]],
) -> None:
    # Offers are priced once and their ranking kept across calls: what candidates returns must
    # still be what the pure chooser makes of the offers held right now, under the current spec.
    spec = SPEC
    market, _ = await open_market([])
    market._spec = lambda: spec
    serial = 0
    for kind, a, b in steps:
        if kind == "offer":
            serial += 1
            market._on_proposal(priced_offer(f"p{a}", f"R-{serial}", b / 1000))
        elif kind == "spend" and f"p{a}" in market._offers:
            market._spend(f"p{a}", market._offers[f"p{a}"].proposal_id)
        elif kind == "cap":
            spec = spec.model_copy(
                update={"market": spec.market.model_copy(update={"max_start_price": str(a / 1000)})}
            )
        got = market.candidates({"p5"}, {})
        views = [ServiceMarket._view(p) for p in market._offers.values()]
        expected, _ = choose_offers(views, spec, avoided={"p5"})
        assert [c.offer.proposal_id for c in got] == [c.offer.proposal_id for c in expected]
        assert [c.max_cost for c in got] == [c.max_cost for c in expected]
    await market.close(unsubscribe=False)
