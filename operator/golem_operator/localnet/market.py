"""The market of the simulated network: demands, offers, negotiation and agreements.

`Market` plays every provider agent's market side: it offers to matching demands, answers
counter-proposals, approves or rejects agreements and terminates them (idle, expired,
injected faults). Ending an agreement ends its activities (`ExeUnits`) and has it invoiced
(`Payments`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from typing import TYPE_CHECKING, Any

from golem_operator.localnet import constraints, outbound, rules
from golem_operator.localnet.constraints import Expression
from golem_operator.localnet.events import EventLog, iso, stamp
from golem_operator.localnet.model import (
    DEFAULT_OFFER_CONSTRAINTS,
    P_ACCEPT_TIMEOUT,
    P_CHOSEN_PLATFORM,
    P_EXPIRATION,
    P_INTERVAL,
    P_PAYMENT_TIMEOUT,
    PROPOSAL_ID,
    Agreement,
    ApiError,
    Demand,
    Proposal,
    Provider,
    new_id,
    new_proposal_id,
    new_subscription_id,
    transition,
)
from golem_operator.localnet.runtime import Part, Runtime

if TYPE_CHECKING:
    from golem_operator.localnet.exeunit import ExeUnits
    from golem_operator.localnet.payments import Payments


class Market(Part):
    """Demands, proposals and agreements, and every provider's market agent."""

    exeunits: ExeUnits
    payments: Payments

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime)
        self.demands: dict[str, Demand] = {}
        self.proposals: dict[str, Proposal] = {}
        self.agreements: dict[str, Agreement] = {}
        self.agreement_events = EventLog()

    def close(self) -> None:
        for agreement in self.agreements.values():
            for timer in agreement.timers:
                timer.cancel()
        for demand in self.demands.values():
            demand.events.close()

    def subscribe_demand(self, properties: dict[str, Any], constraint_text: str) -> Demand:
        # yagna does not validate the constraints here (201); one that does not parse
        # simply matches no offer.
        try:
            expression = constraints.parse_constraints(constraint_text)
            parses = True
        except constraints.ConstraintError:
            expression, parses = None, False
        demand = Demand(
            id=new_subscription_id(),
            properties=constraints.flatten_properties(properties),
            constraints=constraint_text,
            expression=expression,
            timestamp=stamp(),
            constraints_parse=parses,
        )
        self.demands[demand.id] = demand
        for provider in self.providers.values():
            self._offer(provider, demand)
        return demand

    def _offer(self, provider: Provider, demand: Demand) -> None:
        """Emit the provider's offer as an Initial proposal when both sides match."""
        if provider.busy or provider.name in demand.offered_to or not demand.constraints_parse:
            return
        offer = provider.offer_properties()
        if not constraints.evaluate(demand.expression, offer):
            return
        if not constraints.matches(DEFAULT_OFFER_CONSTRAINTS, demand.properties):
            return
        demand.offered_to.add(provider.name)
        proposal = Proposal(
            id=new_proposal_id(),
            demand_id=demand.id,
            provider=provider,
            issuer_id=provider.node_id,
            from_provider=True,
            properties=offer,
            constraints=DEFAULT_OFFER_CONSTRAINTS,
            state="Initial",
            timestamp=stamp(),
        )
        self._add_proposal(demand, proposal)
        demand.open_offers[provider.name] = proposal.id
        demand.events.append(
            {
                "eventType": "ProposalEvent",
                "eventDate": iso(stamp()),
                "proposal": proposal.to_json(),
            }
        )

    def _add_proposal(self, demand: Demand, proposal: Proposal) -> None:
        demand.proposals[proposal.id] = proposal
        self.proposals[proposal.id] = proposal

    def _reoffer(self, provider: Provider) -> None:
        """A provider with free capacity again re-publishes its offer to live demands (those
        still holding its untouched offer need no second one: at 1,000 agreements ending,
        re-sending it to every demand made 100,000 redundant proposals)."""
        for demand in self.demands.values():
            if provider.name in demand.open_offers:
                continue
            demand.offered_to.discard(provider.name)
            self._offer(provider, demand)

    def demand(self, demand_id: str) -> Demand:
        demand = self.demands.get(demand_id)
        if demand is None:
            # yagna says so for unknown and unsubscribed demands alike.
            raise ApiError(404, f"Subscription [{demand_id}] not found. Could be unsubscribed.")
        return demand

    def unsubscribe_demand(self, demand_id: str) -> None:
        demand = self.demands.pop(demand_id, None)
        if demand is None:
            raise ApiError(404, f"Demand [{demand_id}] not found.")
        demand.events.close()

    def proposal_of(self, demand: Demand, proposal_id: str) -> Proposal:
        proposal = demand.proposals.get(proposal_id)
        if proposal is None:
            raise ApiError(404, f"Proposal [{proposal_id}] not found.")
        return proposal

    def counter_proposal(
        self, demand: Demand, proposal_id: str, properties: dict[str, Any], constraint_text: str
    ) -> Proposal:
        offer = self.proposal_of(demand, proposal_id)
        if not offer.from_provider:
            raise ApiError(400, f"Can't react to own Proposal [{proposal_id}].")
        if offer.state in ("Rejected", "Expired"):
            raise ApiError(410, f"Proposal [{proposal_id}] was {offer.state.lower()}.")
        if any(p.prev_id == offer.id and not p.from_provider for p in demand.proposals.values()):
            raise ApiError(
                410,
                f"Proposal [{proposal_id}] already has counter proposal. "
                "Can't counter for the second time.",
            )
        try:
            expression = constraints.parse_constraints(constraint_text)
        except constraints.ConstraintError as error:
            raise ApiError(400, f"Invalid constraints: {error}") from None
        counter = Proposal(
            id=new_proposal_id(),
            demand_id=demand.id,
            provider=offer.provider,
            issuer_id=self.requestor_id,
            from_provider=False,
            properties=constraints.flatten_properties(properties),
            constraints=constraint_text,
            state="Draft",
            timestamp=stamp(),
            prev_id=offer.id,
        )
        self._add_proposal(demand, counter)
        if demand.open_offers.get(offer.provider.name) == offer.id:
            del demand.open_offers[offer.provider.name]
        self.spawn(self._provider_answers(demand, counter, expression))
        return counter

    async def _provider_answers(
        self, demand: Demand, counter: Proposal, expression: Expression | None
    ) -> None:
        provider = counter.provider
        await provider.react()
        offer = provider.offer_properties()
        problem = None
        chosen = counter.properties.get(P_CHOSEN_PLATFORM)
        if provider.busy:
            problem = "No capacity available. Reached Agreements limit: " + str(
                provider.spec.max_agreements
            )
        elif not constraints.evaluate(expression, offer):
            problem = "Offer doesn't match the Demand constraints."
        elif not constraints.matches(DEFAULT_OFFER_CONSTRAINTS, counter.properties):
            problem = "Demand doesn't match the Offer constraints."
        elif chosen is not None and chosen != provider.spec.payment_platform:
            problem = f"Payment platform {chosen} is not supported."
        else:
            problem = rules.refusal(counter.properties, stamp(), self.config.agreement_rules)
            if problem is None and provider.spec.outbound:
                problem = outbound.refusal(counter.properties)
        if problem is not None:
            counter.state = "Rejected"
            demand.events.append(
                {
                    "eventType": "ProposalRejectedEvent",
                    "eventDate": iso(stamp()),
                    "proposalId": counter.id,
                    "reason": {"message": problem},
                }
            )
            return
        for key in (P_INTERVAL, P_PAYMENT_TIMEOUT, P_ACCEPT_TIMEOUT):
            if key in counter.properties:
                offer[key] = counter.properties[key]
            elif key != P_INTERVAL:
                offer.pop(key, None)
        draft = Proposal(
            id=new_proposal_id(),
            demand_id=demand.id,
            provider=provider,
            issuer_id=provider.node_id,
            from_provider=True,
            properties=offer,
            constraints=DEFAULT_OFFER_CONSTRAINTS,
            state="Draft",
            timestamp=stamp(),
            prev_id=counter.id,
        )
        self._add_proposal(demand, draft)
        if demand.id in self.demands:
            demand.events.append(
                {
                    "eventType": "ProposalEvent",
                    "eventDate": iso(stamp()),
                    "proposal": draft.to_json(),
                }
            )

    def reject_proposal(self, demand: Demand, proposal_id: str, reason: Any) -> None:
        proposal = self.proposal_of(demand, proposal_id)
        proposal.state = "Rejected"  # again is fine: yagna answers 204 again
        if demand.open_offers.get(proposal.provider.name) == proposal.id:
            del demand.open_offers[proposal.provider.name]

    def create_agreement(self, proposal_id: str, valid_to: str) -> Agreement:
        if PROPOSAL_ID.fullmatch(proposal_id) is None:
            raise ApiError(400, f"Invalid Agreement id. Id [{proposal_id}] has invalid format.")
        for_proposal = f"Can't create Agreement for Proposal [{proposal_id}]."
        proposal = self.proposals.get(proposal_id)
        if proposal is None or proposal.demand_id not in self.demands:
            raise ApiError(400, f"{for_proposal} Proposal [{proposal_id}] not found.")
        if not proposal.from_provider:
            raise ApiError(
                400,
                f"Can't create Agreement for an own Proposal [{proposal_id}]. "
                "You can promote only provider's Proposals to Agreement.",
            )
        if proposal.state == "Initial":
            raise ApiError(
                400,
                f"{for_proposal} No negotiation with Provider took place. "
                "(You should counter Proposal at least one time)",
            )
        if proposal.state == "Accepted":
            raise ApiError(409, f"Can't create second Agreement for Proposal [{proposal_id}].")
        if proposal.state in ("Rejected", "Expired"):
            raise ApiError(410, f"Proposal [{proposal_id}] is {proposal.state}.")
        demand_side = self.proposals.get(proposal.prev_id or "")
        if demand_side is None:
            raise ApiError(409, f"Proposal [{proposal_id}] has no Demand counterpart.")
        proposal.state = "Accepted"
        agreement = Agreement(
            id=new_id(),
            provider=proposal.provider,
            demand_proposal=demand_side,
            offer_proposal=proposal,
            valid_to=valid_to,
            timestamp=stamp(),
        )
        self.agreements[agreement.id] = agreement
        return agreement

    def _set_agreement_state(self, agreement: Agreement, state: str) -> None:
        agreement.state = state
        event, agreement.changed = agreement.changed, asyncio.Event()
        event.set()

    def confirm_agreement(self, agreement: Agreement) -> None:
        if agreement.state != "Proposal":
            raise ApiError(410, transition(agreement.state, "Pending"))
        self._set_agreement_state(agreement, "Pending")
        self.spawn(self._provider_decides(agreement))

    async def _provider_decides(self, agreement: Agreement) -> None:
        provider = agreement.provider
        await provider.react()
        if agreement.state != "Pending":
            return
        if provider.busy or provider.faults.reject_agreements:
            message = "Provider busy" if provider.busy else "Provider rejected the Agreement"
            agreement.reason = {"message": message}
            self._set_agreement_state(agreement, "Rejected")
            self.agreement_events.append(
                moment := stamp(),
                {
                    "eventType": "AgreementRejectedEvent",
                    "eventDate": iso(moment),
                    "agreementId": agreement.id,
                    "reason": agreement.reason,
                },
            )
            return
        provider.agreements.add(agreement.id)
        agreement.approved_date = stamp()
        self._set_agreement_state(agreement, "Approved")
        self.agreement_events.append(
            agreement.approved_date,
            {
                "eventType": "AgreementApprovedEvent",
                "eventDate": iso(agreement.approved_date),
                "agreementId": agreement.id,
            },
        )
        if provider.faults.vanish_after_approval:
            agreement.vanished = True
            return  # gone: no timers, no activity, no invoice
        idle = self.config.agreement_rules.idle_agreement_timeout_seconds
        if idle > 0:
            agreement.timers.append(self.spawn(self._end_if_idle(agreement, idle)))
        after = provider.faults.terminate_agreement_after_seconds
        if after is not None:
            agreement.timers.append(
                self.spawn(self._provider_terminates_later(agreement, after, "Injected fault"))
            )
        expiration = agreement.demand_properties.get(P_EXPIRATION)
        if isinstance(expiration, int | float) and not isinstance(expiration, bool):
            left = expiration / 1000 - agreement.approved_date.timestamp()
            agreement.timers.append(
                self.spawn(
                    self._provider_terminates_later(agreement, max(left, 0.0), "Agreement expired")
                )
            )

    async def _provider_terminates_later(
        self, agreement: Agreement, delay: float, message: str
    ) -> None:
        await asyncio.sleep(delay)
        if agreement.state == "Approved":
            await self.terminate_agreement(agreement, "Provider", {"message": message})

    async def _end_if_idle(self, agreement: Agreement, idle_seconds: float) -> None:
        """The provider agent ends an agreement on which no activity started in time."""
        await asyncio.sleep(idle_seconds)
        if agreement.state == "Approved" and not agreement.activities:
            await self.terminate_agreement(
                agreement, "Provider", rules.no_activity_reason(idle_seconds)
            )

    async def wait_for_approval(self, agreement: Agreement, wait_seconds: float) -> None:
        deadline = self.now() + wait_seconds
        while True:
            if agreement.state == "Approved":
                return
            # yagna's answers, its `R-` (requestor side) id prefix included.
            named = f"Agreement [R-{agreement.id}]"
            if agreement.state == "Proposal":
                raise ApiError(400, f"{named} should be confirmed, before waiting for approval.")
            if agreement.state == "Terminated":
                raise ApiError(400, f"{named} terminated.")
            if agreement.state == "Expired":
                raise ApiError(410, f"{named} expired.")
            if agreement.state in ("Rejected", "Cancelled"):
                raise ApiError(410, f"{named} {agreement.state}.")
            remaining = deadline - self.now()
            if remaining <= 0:
                raise ApiError(408, f"Timeout while waiting for {named} approval.")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(agreement.changed.wait(), remaining)

    def cancel_agreement(self, agreement: Agreement, reason: dict[str, Any] | None) -> None:
        if agreement.state not in ("Proposal", "Pending"):
            raise ApiError(410, transition(agreement.state, "Cancelled"))
        if agreement.state == "Proposal":
            # yagna 0.17.6 forwards the cancel to the provider, which never received an
            # unconfirmed agreement: 500, and the agreement stays a Proposal until it expires.
            raise ApiError(
                500,
                "Protocol error while approving: Remote failed to approve. "
                f"Error: Agreement [P-{agreement.id}] not found.",
            )
        agreement.reason = reason
        self._set_agreement_state(agreement, "Cancelled")
        moment = stamp()
        event: dict[str, Any] = {
            "eventType": "AgreementCancelledEvent",
            "eventDate": iso(moment),
            "agreementId": agreement.id,
        }
        if reason is not None:
            event["reason"] = reason
        self.agreement_events.append(moment, event)

    async def terminate_agreement(
        self, agreement: Agreement, terminator: str, reason: dict[str, Any] | None
    ) -> None:
        if agreement.state in ("Proposal", "Pending"):
            raise ApiError(409, transition(agreement.state, "Terminated"))
        if agreement.state != "Approved":
            raise ApiError(410, transition(agreement.state, "Terminated"))
        agreement.terminator = terminator
        agreement.reason = reason  # None when the requestor sent JSON null, as yagna keeps it
        agreement.terminated_date = stamp()
        self._set_agreement_state(agreement, "Terminated")
        for timer in agreement.timers:
            if timer is not asyncio.current_task():
                timer.cancel()
        self.agreement_events.append(agreement.terminated_date, self.terminated_event(agreement))
        for activity_id in agreement.activities:
            await self.exeunits.end_activity(
                self.exeunits.activities[activity_id], "Agreement terminated", error=None
            )
        if not agreement.vanished:
            self.payments.invoice_when_due(agreement)
        provider = agreement.provider
        provider.agreements.discard(agreement.id)
        self._reoffer(provider)

    def terminated_event(self, agreement: Agreement) -> dict[str, Any]:
        """The AgreementTerminatedEvent of a terminated agreement (events and /terminate/reason)."""
        assert agreement.terminated_date is not None
        event: dict[str, Any] = {
            "eventType": "AgreementTerminatedEvent",
            "eventDate": iso(agreement.terminated_date),
            "agreementId": agreement.id,
            "terminator": agreement.terminator,
            "signature": hashlib.sha256(agreement.id.encode()).hexdigest(),
        }
        if agreement.reason is not None:
            event["reason"] = agreement.reason
        return event
