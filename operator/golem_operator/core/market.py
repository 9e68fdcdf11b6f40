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
    expiration = now + parse_duration(spec.agreement_duration)
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
    constraints += [f"(golem.runtime.capabilities={cap})" for cap in payload.capabilities]
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
    providers = spec.market.providers
    if providers.allow and not _listed(offer, providers.allow):
        return Refusal(offer, "provider not in market.providers.allow")
    if _listed(offer, providers.deny):
        return Refusal(offer, "provider in market.providers.deny")
    if offer.provider_id in avoided:
        return Refusal(offer, "provider failed recently for this service")
    try:
        price = LinearPrice.from_offer(offer.properties)
    except (ValueError, ArithmeticError) as error:
        return Refusal(offer, f"unusable pricing: {error}")
    violation = price_caps(spec).violation(price)
    if violation:
        return Refusal(offer, violation)
    duration = Decimal(int(parse_duration(spec.agreement_duration).total_seconds()))
    return Choice(offer, price, price.max_cost(duration))


def choose_offers(
    offers: list[OfferView], spec: GolemServiceSpec, *, avoided: set[str]
) -> tuple[list[Choice], list[Refusal]]:
    """Acceptable offers cheapest first (by the most they could cost), and the refused ones."""
    chosen: list[Choice] = []
    refused: list[Refusal] = []
    for offer in offers:
        verdict = evaluate_offer(offer, spec, avoided=avoided)
        (chosen if isinstance(verdict, Choice) else refused).append(verdict)  # type: ignore[arg-type]
    chosen.sort(key=lambda c: (c.max_cost, c.offer.provider_name, c.offer.proposal_id))
    return chosen, refused


def next_instance_cost(spec: GolemServiceSpec, cheapest_seen: Decimal | None) -> Decimal:
    """The most one more instance could cost: from the caps, else the cheapest offer seen."""
    caps = price_caps(spec)
    duration = Decimal(int(parse_duration(spec.agreement_duration).total_seconds()))
    if caps.start is not None and caps.cpu_per_hour is not None and caps.env_per_hour is not None:
        # Threads are unknown until an offer arrives: count the minimum the payload asks for.
        threads = spec.payload.min_cpu_threads
        per_sec = (caps.env_per_hour + caps.cpu_per_hour * threads) / Decimal(3600)
        return caps.start + per_sec * duration
    return cheapest_seen if cheapest_seen is not None else Decimal(0)


def avoided_providers(avoided: dict[str, str], now: datetime) -> set[str]:
    return {p for p, until in avoided.items() if datetime.fromisoformat(until) > now}


AVOID_FOR = timedelta(minutes=10)
