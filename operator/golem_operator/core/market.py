"""Demands and offer choice. Pure.

Called by the service's market loop: ``build_demand`` turns a GolemService spec and its
resolved image into the properties and constraints the official SDKs publish;
``choose_offers`` filters proposals by price caps, provider lists and avoided providers,
cheapest first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from golem_operator.api.spec import GolemServiceSpec, parse_duration
from golem_operator.core.images import ResolvedImage
from golem_operator.core.payments import LinearPrice, PriceCaps


@dataclass(frozen=True)
class DemandSpec:
    properties: dict[str, Any]
    constraints: str


#: Published expirations run this much past agreementDuration: a provider checks the expiration
#: against its own clock when it answers, a moment after the requestor computed it, and refuses
#: one ending less than its minimum (5 minutes) from then.
EXPIRATION_SLACK = timedelta(seconds=30)

#: Providers end an agreement on which no activity was created within 90 s of its approval
#: (yagna's provider agent, NoActivity). The operator creates the activity at once; when a
#: start reaches the activity later than this after approval (a restart or an outage in
#: between), the agreement is ended as a failed start instead of racing the provider.
ACTIVITY_WINDOW = timedelta(seconds=60)


#: Providers end agreements longer than this whose terms lack a debit-note acceptance deadline,
#: and require mid-agreement payments (a payment timeout) from NEEDS_PAYMENTS on.
NEEDS_DEADLINE = timedelta(minutes=30)
NEEDS_PAYMENTS = timedelta(hours=10)
ACCEPT_TIMEOUT = "golem.com.payment.debit-notes.accept-timeout?"
PAYMENT_TIMEOUT = "golem.com.scheme.payu.payment-timeout-sec?"


def draft_problem(draft: dict[str, Any], duration: timedelta) -> str | None:
    """What a provider's Draft lacks for an agreement this long, or None: the terms the
    demand published must have survived the negotiation."""
    if duration > NEEDS_DEADLINE and not draft.get(ACCEPT_TIMEOUT):
        return f"the provider's terms drop {ACCEPT_TIMEOUT} (needed beyond 30m)"
    if duration >= NEEDS_PAYMENTS and not draft.get(PAYMENT_TIMEOUT):
        return f"the provider's terms drop {PAYMENT_TIMEOUT} (needed from 10h)"
    return None


def agreement_end(spec: GolemServiceSpec, now: datetime) -> datetime:
    """When an agreement negotiated now ends (its golem.srv.comp.expiration)."""
    return now + parse_duration(spec.agreement_duration) + EXPIRATION_SLACK


def agreement_seconds(spec: GolemServiceSpec) -> Decimal:
    """How long an agreement may be billed, in whole seconds: agreementDuration plus the
    expiration slack (the most it could cost is priced over this)."""
    return Decimal(
        int((parse_duration(spec.agreement_duration) + EXPIRATION_SLACK).total_seconds())
    )


def activity_window_missed(
    approved_at: str | None, now: datetime, window: timedelta = ACTIVITY_WINDOW
) -> bool:
    """Whether an approved agreement without an activity is too old to start one on."""
    if approved_at is None:
        return False
    return now - datetime.fromisoformat(approved_at) > window


def build_demand(
    spec: GolemServiceSpec,
    *,
    image: ResolvedImage,
    now: datetime,
    node_name: str,
    requestor_address: str | None = None,
    decorations: tuple[dict[str, Any], list[str]] | None = None,
) -> DemandSpec:
    """The demand for one service: payload, market and payment properties; LDAP constraints.

    ``image`` is spec.payload.image resolved (core.images): the task package names its hash and
    download URL, the only form a provider's exe-unit deploys.
    """
    payload, market = spec.payload, spec.market
    platform = market.payment.platform
    expiration = agreement_end(spec, now)
    properties: dict[str, Any] = {
        "golem.node.id.name": node_name,
        "golem.node.debug.subnet": market.subnet_tag,
        "golem.srv.comp.expiration": int(expiration.timestamp() * 1000),
        "golem.srv.comp.task_package": image.task_package,
        "golem.srv.comp.vm.package_format": "gvmkit-squash",
        "golem.com.payment.debit-notes.accept-timeout?": 240,
        "golem.com.payment.chosen-platform": platform,
        "golem.com.scheme.payu.debit-note.interval-sec?": market.debit_note_interval_seconds,
        "golem.com.scheme.payu.payment-timeout-sec?": market.payment_timeout_seconds,
    }
    if requestor_address:
        properties[f"golem.com.payment.platform.{platform}.address"] = requestor_address
    if payload.capabilities:
        properties["golem.srv.comp.vm.capabilities"] = list(payload.capabilities)
    constraints = [
        f"(golem.inf.mem.gib>={payload.min_mem_gib})",
        f"(golem.inf.storage.gib>={payload.min_storage_gib})",
        f"(golem.inf.cpu.threads>={payload.min_cpu_threads})",
        f"(golem.runtime.name={payload.runtime.value})",
        f"(golem.node.debug.subnet={market.subnet_tag})",
        f"(golem.com.payment.platform.{platform}.address=*)",
        "(golem.com.pricing.model=linear)",
    ]
    capabilities = list(payload.capabilities)
    if spec.network is not None and VPN_CAPABILITY not in capabilities:
        # Only a provider whose runtime joins VPNs can deploy an instance into the network.
        capabilities.append(VPN_CAPABILITY)
    constraints += [f"(golem.runtime.capabilities={cap})" for cap in capabilities]
    if decorations is not None:
        extra_props, extra_constraints = decorations
        properties.update(extra_props)
        constraints += [c for c in extra_constraints if c not in constraints]
    properties.update(payload.properties)
    constraints += list(payload.constraints)
    return DemandSpec(properties, "(&" + "".join(constraints) + ")")


def price_caps(spec: GolemServiceSpec) -> PriceCaps:
    market = spec.market

    def dec(value: str | None) -> Decimal | None:
        return Decimal(value) if value is not None else None

    return PriceCaps(
        dec(market.max_start_price), dec(market.max_cpu_per_hour), dec(market.max_env_per_hour)
    )


@dataclass(frozen=True)
class OfferView:
    """What the chooser needs of a provider's proposal."""

    proposal_id: str
    provider_id: str
    provider_name: str
    properties: dict[str, Any]


@dataclass(frozen=True)
class Choice:
    offer: OfferView
    price: LinearPrice
    #: The most this agreement could cost over its whole duration.
    max_cost: Decimal


@dataclass(frozen=True)
class Refusal:
    offer: OfferView
    reason: str


def _listed(offer: OfferView, names: list[str]) -> bool:
    return offer.provider_id in names or offer.provider_name in names


def evaluate_offer(
    offer: OfferView,
    spec: GolemServiceSpec,
    *,
    avoided: set[str],
) -> Choice | Refusal:
    """Accept an offer for negotiation, or say why not."""
    return screen(price_offer(offer, spec), spec, avoided)


def price_offer(offer: OfferView, spec: GolemServiceSpec) -> Choice | Refusal:
    """The offer's price judged against the spec's caps: what depends on the offer and the
    spec alone, so a market can keep it for as long as both stay (see rank)."""
    try:
        price = LinearPrice.from_offer(offer.properties)
    except (ValueError, ArithmeticError) as error:
        return Refusal(offer, f"unusable pricing: {error}")
    violation = price_caps(spec).violation(price)
    if violation:
        return Refusal(offer, violation)
    return Choice(offer, price, price.max_cost(agreement_seconds(spec)))


def pricing_terms(spec: GolemServiceSpec) -> tuple[PriceCaps, Decimal]:
    """What price_offer's verdicts depend on in the spec: they stay valid while it does."""
    return price_caps(spec), agreement_seconds(spec)


def screen(
    verdict: Choice | Refusal, spec: GolemServiceSpec, avoided: set[str]
) -> Choice | Refusal:
    """A priced offer, refused if its provider is not allowed, denied or avoided."""
    offer = verdict.offer
    providers = spec.market.providers
    if providers.allow and not _listed(offer, providers.allow):
        return Refusal(offer, "provider not in market.providers.allow")
    if _listed(offer, providers.deny):
        return Refusal(offer, "provider in market.providers.deny")
    if offer.provider_id in avoided:
        return Refusal(offer, "provider failed recently for this service")
    return verdict


def rank(verdicts: list[Choice | Refusal]) -> list[Choice | Refusal]:
    """Priced offers cheapest first (by the most they could cost), refused ones after."""
    chosen = [v for v in verdicts if isinstance(v, Choice)]
    chosen.sort(key=lambda c: (c.max_cost, c.offer.provider_name, c.offer.proposal_id))
    return [*chosen, *(v for v in verdicts if isinstance(v, Refusal))]


def choose_ranked(
    ranked: list[Choice | Refusal], spec: GolemServiceSpec, *, avoided: set[str]
) -> tuple[list[Choice], list[Refusal]]:
    """Acceptable offers of a ranked list (see rank), in its order, and the refused ones."""
    chosen: list[Choice] = []
    refused: list[Refusal] = []
    for verdict in ranked:
        verdict = screen(verdict, spec, avoided)
        if isinstance(verdict, Choice):
            chosen.append(verdict)
        else:
            refused.append(verdict)
    return chosen, refused


def choose_offers(
    offers: list[OfferView], spec: GolemServiceSpec, *, avoided: set[str]
) -> tuple[list[Choice], list[Refusal]]:
    """Acceptable offers cheapest first (by the most they could cost), and the refused ones."""
    return choose_ranked(rank([price_offer(o, spec) for o in offers]), spec, avoided=avoided)


def next_instance_cost(spec: GolemServiceSpec, cheapest_seen: Decimal | None) -> Decimal:
    """The most one more instance could cost: from the caps, else the cheapest offer seen."""
    caps = price_caps(spec)
    duration = agreement_seconds(spec)
    if caps.start is not None and caps.cpu_per_hour is not None and caps.env_per_hour is not None:
        # Threads are unknown until an offer arrives: count the minimum the payload asks for.
        threads = spec.payload.min_cpu_threads
        per_sec = (caps.env_per_hour + caps.cpu_per_hour * threads) / Decimal(3600)
        return caps.start + per_sec * duration
    return cheapest_seen if cheapest_seen is not None else Decimal(0)


def avoided_providers(avoided: dict[str, str], now: datetime) -> set[str]:
    return {p for p, until in avoided.items() if datetime.fromisoformat(until) > now}


AVOID_FOR = timedelta(minutes=10)


# --- when the demand is published again ------------------------------------------------------


#: The runtime capability of providers that can join a requestor's VPN.
VPN_CAPABILITY = "vpn"


def demand_terms(spec: GolemServiceSpec) -> dict[str, Any]:
    """The part of a spec that the published demand says (see build_demand), in wire form.

    Replicas, budget, lifecycle scripts, restart rules, price caps and provider lists are left
    out: they change which offers are taken, never what the demand asks for, so a change to
    them (a `kubectl scale` above all) keeps the demand and the offers it has collected.
    agreementDuration is in: it sets the demand's expiration. golemRef is in: the demand lives
    on that daemon. Whether the service has a network is in: it asks for the vpn capability.
    """
    market = spec.market
    return {
        "payload": spec.payload.model_dump(mode="json", by_alias=True),
        "subnetTag": market.subnet_tag,
        "platform": market.payment.platform,
        "debitNoteIntervalSeconds": market.debit_note_interval_seconds,
        "paymentTimeoutSeconds": market.payment_timeout_seconds,
        "agreementDuration": parse_duration(spec.agreement_duration).total_seconds(),
        "golemRef": spec.golem_ref.model_dump(mode="json", by_alias=True)
        if spec.golem_ref
        else None,
        "vpn": spec.network is not None,
    }


def demand_changed(published: GolemServiceSpec | None, spec: GolemServiceSpec) -> bool:
    """Whether the demand published for ``published`` no longer says what ``spec`` asks for."""
    return published is not None and demand_terms(published) != demand_terms(spec)


#: Pending instances that have found no usable offer for this long get a fresh demand: offers
#: consumed by failed negotiations are never offered again on the same demand (a provider
#: re-offers only when its capacity frees), while a new demand receives every matching offer.
REFRESH_AFTER = 20.0
#: The wait doubles with each refresh that brought no usable offer, up to this.
REFRESH_MAX = 300.0
#: Pending instances ask for offers every few seconds; a starvation older than this without
#: a new question is stale (nobody is waiting any more).
STARVED_STALE = 15.0


@dataclass(frozen=True)
class Starvation:
    """What a service's market observed of its Pending instances' search, in seconds of one
    monotonic clock."""

    #: Since when every question for candidates found none (None: the last one found some).
    since: float | None
    #: When a Pending instance last asked and found none.
    last_asked: float | None
    #: When the demand was subscribed.
    subscribed: float
    #: Negotiations in flight on this demand (a refresh would cut them off).
    negotiating: int
    #: Refreshes in a row that brought no usable offer.
    streak: int


def refresh_wait(streak: int) -> float:
    """How long a starvation lasts before the demand is refreshed, after ``streak`` fruitless
    refreshes in a row."""
    return float(min(REFRESH_AFTER * 2 ** min(streak, 16), REFRESH_MAX))


def demand_refresh_due(observed: Starvation, *, pending: int, now: float) -> bool:
    """Whether to withdraw the demand and publish it again to receive fresh offers."""
    if pending <= 0 or observed.negotiating > 0:
        return False
    if observed.since is None or observed.last_asked is None:
        return False
    if now - observed.last_asked > STARVED_STALE:
        return False
    wait = refresh_wait(observed.streak)
    return now - observed.since >= wait and now - observed.subscribed >= wait
