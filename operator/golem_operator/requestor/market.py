"""One service's presence on the market: its demand, the offers seen, and negotiation.

Owned by a service worker. A collector task long-polls the demand's events and keeps the latest
Initial proposal of each provider; Pending instances call ``negotiate`` to take the cheapest
acceptable offer through counter-proposal, the provider's Draft and agreement creation. The
caller records the agreement id before confirming it, so a crash never leaves an approved
agreement that status does not know.

An offer is spent once counter-proposed (the daemon refuses a second counter to it), and a
provider re-offers on the same demand only when its capacity frees. So when Pending instances
have found no usable offer for a while (core.market.demand_refresh_due), the worker calls
``refresh``: the same demand is published again, its id recorded in status, the old one
withdrawn, and every matching provider offers afresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import httpx

from golem_operator.api.spec import GolemServiceSpec, parse_duration
from golem_operator.core.market import (
    Choice,
    OfferView,
    Refusal,
    Starvation,
    choose_ranked,
    demand_refresh_due,
    draft_problem,
    price_offer,
    pricing_terms,
    rank,
)
from golem_operator.golem import (
    GolemClient,
    GolemError,
    GolemGone,
    GolemNotFound,
    GolemUnauthorized,
    GolemUnavailable,
    Proposal,
    ProposalEvent,
    ProposalRejectedEvent,
)

log = logging.getLogger(__name__)

#: The long poll for a demand's events: it answers as soon as an event arrives, so a long
#: wait costs no latency; every service holds one, and at 2 s they were a fifth of an idle
#: operator's calls at 100 services.
DEMAND_POLL_SECONDS = 10.0


#: After subscribing, offers are collected this long before the first choice.
OFFER_WINDOW = 1.5


class NegotiationFailed(Exception):
    """A provider did not reach an agreement; `provider_id` names it."""

    def __init__(self, provider_id: str, message: str) -> None:
        super().__init__(message)
        self.provider_id = provider_id


@dataclass(frozen=True)
class Draft:
    """An agreement created from a provider's Draft proposal, not yet confirmed."""

    agreement_id: str
    choice: Choice


class ServiceMarket:
    def __init__(
        self,
        client: GolemClient,
        subscription_id: str,
        demand: tuple[dict[str, object], str],
        spec: Callable[[], GolemServiceSpec],
    ) -> None:
        self.client = client
        self.subscription_id = subscription_id
        self._demand = demand
        self._spec = spec
        self._offers: dict[str, Proposal] = {}  # provider id -> latest Initial proposal
        #: The offers priced and ranked (core.market.rank), kept while the offers and the
        #: spec's pricing terms stay: every Pending instance asks for candidates, and pricing
        #: a thousand offers for each of a thousand instances is what a burst cannot afford.
        self._ranked: list[Choice | Refusal] | None = None
        self._priced: dict[str, Choice | Refusal] = {}  # proposal id -> price_offer's verdict
        self._priced_terms: object = None
        self._drafts: dict[str, asyncio.Future[Proposal]] = {}  # our counter id -> their draft
        self._changed = asyncio.Event()
        self._claimed: set[str] = set()  # providers being negotiated with right now
        # Drafts that arrived before counter_proposal() returned their id (a race).
        self._early_drafts: dict[str, Proposal] = {}
        self._task: asyncio.Task[None] | None = None
        self._opened = 0.0
        self.cheapest_seen: Decimal | None = None
        self.last_refusals: list[str] = []
        #: Since when Pending instances found no usable offer, and when one last asked.
        self._starved_since: float | None = None
        self._last_starved: float | None = None
        #: Refreshes in a row that brought no usable offer (the refresh backoff).
        self.streak = 0
        #: While a refresh swaps the demand, nothing new is negotiated on either.
        self._refreshing = False
        self._subscribed_at = utcnow()
        self.refreshes = 0

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._opened = loop.time()
        self._task = asyncio.create_task(self._collect(), name=f"market-{self.subscription_id}")
        # Instances waiting for offers are woken when the window closes, not at the end of
        # their own wait: the offers collected meanwhile become candidates then.
        loop.call_at(self._opened + OFFER_WINDOW, self._changed.set)

    @property
    def alive(self) -> bool:
        """False once the demand is gone (expired or unsubscribed): subscribe a new one."""
        return self._task is not None and not self._task.done()

    async def close(self, unsubscribe: bool) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if unsubscribe:
            with contextlib.suppress(GolemNotFound, GolemGone):
                await self.client.market.unsubscribe_demand(self.subscription_id)

    async def _collect(self) -> None:
        backoff = 0.5
        while True:
            try:
                events = await self.client.market.collect_demand_events(
                    self.subscription_id, timeout=DEMAND_POLL_SECONDS, max_events=100
                )
                backoff = 0.5
            except asyncio.CancelledError:
                raise
            except GolemNotFound:
                log.warning("demand %s is gone; waiting for a new one", self.subscription_id)
                return
            except GolemError as error:
                log.info("collecting demand events failed: %s", error)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            except Exception:  # an unexpected answer: retried, never the end of the market
                log.exception("collecting demand events of %s failed", self.subscription_id)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            for event in events:
                if isinstance(event, ProposalEvent):
                    self._on_proposal(event.proposal)
                elif isinstance(event, ProposalRejectedEvent):
                    for provider, proposal in list(self._offers.items()):
                        if proposal.proposal_id == event.proposal_id:
                            self._forget(provider)
                    draft = self._drafts.pop(event.proposal_id, None)
                    if draft is not None and not draft.done():
                        reason = event.reason.message if event.reason else "rejected"
                        draft.set_exception(NegotiationFailed("", f"provider rejected: {reason}"))
            if events:
                self._changed.set()

    def _on_proposal(self, proposal: Proposal) -> None:
        if proposal.state == "Draft" and proposal.prev_proposal_id:
            future = self._drafts.pop(proposal.prev_proposal_id, None)
            if future is None:
                self._early_drafts[proposal.prev_proposal_id] = proposal
                if len(self._early_drafts) > 1000:  # answers to negotiations nobody waits for
                    self._early_drafts.pop(next(iter(self._early_drafts)))
            elif not future.done():
                future.set_result(proposal)
            return
        if proposal.state == "Initial" or proposal.prev_proposal_id is None:
            self._offers[proposal.issuer_id] = proposal
            self._ranked = None

    def _forget(self, provider: str) -> None:
        """Drop a provider's offer; the ranking keeps its order without it."""
        proposal = self._offers.pop(provider)
        if self._ranked is not None:
            self._ranked = [v for v in self._ranked if v.offer.proposal_id != proposal.proposal_id]

    @staticmethod
    def _view(proposal: Proposal) -> OfferView:
        return OfferView(
            proposal_id=proposal.proposal_id,
            provider_id=proposal.issuer_id,
            provider_name=str(proposal.properties.get("golem.node.id.name", "")),
            properties=proposal.properties,
        )

    @property
    def demand(self) -> tuple[dict[str, object], str]:
        return self._demand

    def candidates(self, avoided: set[str], load: dict[str, int]) -> list[Choice]:
        """Acceptable offers, least loaded provider first, then cheapest."""
        now = asyncio.get_running_loop().time()
        if self._refreshing or now - self._opened < OFFER_WINDOW:
            return []  # let the first offers arrive, so that the cheapest can win
        spec = self._spec()
        terms = pricing_terms(spec)
        if terms != self._priced_terms:
            self._priced, self._priced_terms, self._ranked = {}, terms, None
        if self._ranked is None:
            priced: dict[str, Choice | Refusal] = {}
            for proposal in self._offers.values():
                verdict = self._priced.get(proposal.proposal_id)
                if verdict is None:
                    verdict = price_offer(self._view(proposal), spec)
                priced[proposal.proposal_id] = verdict
            self._priced, self._ranked = priced, rank(list(priced.values()))
        claimed = self._claimed
        open_offers = [v for v in self._ranked if v.offer.provider_id not in claimed]
        chosen, refused = choose_ranked(open_offers, spec, avoided=avoided)
        self.last_refusals = [
            f"{r.offer.provider_name or r.offer.provider_id}: {r.reason}" for r in refused[:3]
        ]
        if chosen:
            self._starved_since = None
            self.streak = 0
        else:
            if self._starved_since is None:
                self._starved_since = now
            self._last_starved = now
        if chosen:
            cheapest = chosen[0].max_cost
            self.cheapest_seen = (
                cheapest if self.cheapest_seen is None else min(self.cheapest_seen, cheapest)
            )
        chosen.sort(key=lambda c: load.get(c.offer.provider_id, 0))  # stable: keeps price order
        return chosen

    def starvation(self) -> Starvation:
        return Starvation(
            since=self._starved_since,
            last_asked=self._last_starved,
            subscribed=self._opened,
            negotiating=len(self._claimed),
            streak=self.streak,
        )

    def refresh_due(self, pending: int) -> bool:
        """Whether Pending instances have starved long enough for a fresh demand."""
        if self._refreshing or not self.alive:
            return False
        now = asyncio.get_running_loop().time()
        return demand_refresh_due(self.starvation(), pending=pending, now=now)

    async def refresh(self, record: Callable[[str], Awaitable[None]]) -> str:
        """Publish the same demand again and withdraw the current one; returns the new id.

        ``record`` stores the new id in status (and flushes it) before anything relies on it;
        a crash in between leaves demands under the service's node name, which adoption
        withdraws. Offers collected on the old demand are dropped: the new one receives every
        matching provider's offer again.
        """
        self._refreshing = True
        try:
            properties, constraints = self._demand
            # The demand's expiration moves with its publication (agreements set their own).
            now = utcnow()
            expiration = properties.get("golem.srv.comp.expiration")
            if isinstance(expiration, int):
                shift = int((now - self._subscribed_at).total_seconds() * 1000)
                properties = {**properties, "golem.srv.comp.expiration": expiration + shift}
            new_id = await self.client.market.subscribe_demand(properties, constraints)
            try:
                await record(new_id)
            except BaseException:
                # Not recorded, so never relied on: withdrawn (adoption withdraws it after a
                # crash, by the service's node name).
                with contextlib.suppress(Exception):
                    await self.client.market.unsubscribe_demand(new_id)
                raise
            old_id = self.subscription_id
            if self._task is not None:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._task
            self.subscription_id = new_id
            self._demand = (properties, constraints)
            self._subscribed_at = now
            self._offers.clear()
            self._ranked = None
            self._early_drafts.clear()
            self._starved_since = None
            self._last_starved = None
            self.streak += 1
            self.refreshes += 1
            self.start()
            with contextlib.suppress(GolemError):
                await self.client.market.unsubscribe_demand(old_id)
            return new_id
        finally:
            self._refreshing = False

    async def wait_for_offers(self, timeout: float) -> None:  # noqa: ASYNC109
        self._changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)

    async def negotiate(self, choice: Choice, valid_to: datetime) -> Draft:
        """Counter-propose, wait for the provider's Draft, create the agreement (unconfirmed)."""
        provider = choice.offer.provider_id
        self._claimed.add(provider)
        try:
            return await self._negotiate(choice, valid_to)
        finally:
            self._claimed.discard(provider)
            self._changed.set()

    async def _negotiate(self, choice: Choice, valid_to: datetime) -> Draft:
        demand_properties, constraints = self._demand
        # Each agreement lasts agreementDuration from its own signing, not from the demand's.
        properties = {
            **demand_properties,
            "golem.srv.comp.expiration": int(valid_to.timestamp() * 1000),
        }
        provider = choice.offer.provider_id
        try:
            counter = await self.client.market.counter_proposal(
                self.subscription_id, choice.offer.proposal_id, properties, constraints
            )
        except (GolemUnavailable, GolemUnauthorized):
            raise
        except GolemError as error:
            if not _never_sent(error):
                # Countered or stale (the provider left or re-published): forget it. One the
                # daemon never received stays, to be tried once the provider's pause ends.
                self._spend(provider, choice.offer.proposal_id)
            raise NegotiationFailed(
                provider, f"counter-proposal refused: {error.message}"
            ) from error
        # Countered: the daemon refuses a second counter to this offer, whatever comes next.
        self._spend(provider, choice.offer.proposal_id)
        future: asyncio.Future[Proposal] = asyncio.get_running_loop().create_future()
        early = self._early_drafts.pop(counter, None)
        if early is not None:
            future.set_result(early)
        else:
            self._drafts[counter] = future
        try:
            draft = await asyncio.wait_for(future, timeout=15.0)
        except TimeoutError as error:
            raise NegotiationFailed(
                provider, "provider did not answer the counter-proposal"
            ) from error
        finally:
            self._drafts.pop(counter, None)
        problem = draft_problem(draft.properties, parse_duration(self._spec().agreement_duration))
        if problem is not None:
            raise NegotiationFailed(provider, problem)
        try:
            agreement_id = await self.client.market.create_agreement(draft.proposal_id, valid_to)
        except (GolemUnavailable, GolemUnauthorized):
            raise
        except GolemError as error:
            raise NegotiationFailed(provider, f"agreement not created: {error.message}") from error
        return Draft(agreement_id, choice)

    def _spend(self, provider: str, proposal_id: str) -> None:
        """Forget a provider's offer once used (a newer one it sent meanwhile stays)."""
        offer = self._offers.get(provider)
        if offer is not None and offer.proposal_id == proposal_id:
            self._forget(provider)


def _never_sent(error: GolemError) -> bool:
    """Whether a failed call certainly never reached the daemon (no connection was made)."""
    unsent = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
    return isinstance(error.__cause__, unsent)


def utcnow() -> datetime:
    return datetime.now(UTC)
