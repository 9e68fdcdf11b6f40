"""The simulated Golem network: market, providers, activities and payments in memory.

`Network` holds all state and plays every provider agent (offers, negotiation, approval,
ExeUnit, debit notes, invoices, faults). The HTTP layer (`localnet.api`) translates yagna
REST calls into its methods; `ApiError` carries the HTTP status and yagna's message.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import json
import logging
import re
import secrets
import urllib.parse
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from golem_operator.localnet import constraints, pricing, rules
from golem_operator.localnet.config import Faults, LocalNetConfig, ProviderSpec
from golem_operator.localnet.config import expand_providers as _expand
from golem_operator.localnet.constraints import Expression
from golem_operator.localnet.events import EventLog, EventQueue, iso, parse_iso, stamp
from golem_operator.localnet.faults import DaemonFaults
from golem_operator.localnet.images import DeployError, ImageCatalog
from golem_operator.localnet.sandbox import Sandbox, SandboxError

log = logging.getLogger(__name__)

USAGE_VECTOR = ["golem.usage.cpu_sec", "golem.usage.duration_sec"]
DEFAULT_OFFER_CONSTRAINTS = "(&(golem.srv.comp.expiration>0))"
P_INTERVAL = "golem.com.scheme.payu.debit-note.interval-sec?"
P_PAYMENT_TIMEOUT = "golem.com.scheme.payu.payment-timeout-sec?"
P_ACCEPT_TIMEOUT = "golem.com.payment.debit-notes.accept-timeout?"
P_EXPIRATION = "golem.srv.comp.expiration"
P_TASK_PACKAGE = "golem.srv.comp.task_package"
P_CHOSEN_PLATFORM = "golem.com.payment.chosen-platform"


class ApiError(Exception):
    """An error answer: HTTP status and yagna's `{"message": ...}` (null for a bare 404)."""

    def __init__(self, status: int, message: str | None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ProblemError(ApiError):
    """An RFC 7807 problem answer (`application/problem+json`), as POST /allocations gives."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        super().__init__(status, str(problem.get("detail", "")))
        self.problem = problem


# Id formats of yagna 0.17.6, as the requestor sees them.
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_SUBSCRIPTION_ID = re.compile(r"[0-9a-fA-F]{32}-[0-9a-fA-F]{64}")
_PROPOSAL_ID = re.compile(r"[RP]-[0-9a-fA-F]{64}")
_NOT_HEX = re.compile(r"[^0-9a-fA-F]")


def new_id() -> str:
    """An agreement (or batch) id: 64 hex digits."""
    return secrets.token_hex(32)


def new_subscription_id() -> str:
    """A demand subscription id: 32 random hex digits, a dash, 64 hex digits (a hash)."""
    return f"{secrets.token_hex(16)}-{secrets.token_hex(32)}"


def new_proposal_id() -> str:
    """A proposal id on the requestor's side: `R-` and 64 hex digits."""
    return f"R-{secrets.token_hex(32)}"


def new_activity_id() -> str:
    return secrets.token_hex(16)


def new_document_id() -> str:
    """An allocation, debit note or invoice id: a UUID."""
    return str(uuid.uuid4())


def check_subscription_id(subscription_id: str) -> None:
    if _SUBSCRIPTION_ID.fullmatch(subscription_id) is None:
        raise ApiError(
            400, f"Path deserialize error: Subscription id [{subscription_id}] has invalid format."
        )


def check_proposal_id(proposal_id: str) -> None:
    if _PROPOSAL_ID.fullmatch(proposal_id) is None:
        raise ApiError(400, f"Path deserialize error: Id [{proposal_id}] has invalid format.")


def agreement_id_problem(agreement_id: str) -> str | None:
    """Why yagna refuses this agreement id, or None when it has the right format."""
    if _NOT_HEX.search(agreement_id) is not None:
        return f"Id [{agreement_id}] contains non hexadecimal characters."
    if _HEX64.fullmatch(agreement_id) is None:
        return f"Id [{agreement_id}] hash has invalid length. Should be |64|"
    return None


def _transition(state: str, target: str) -> str:
    return f"Can't update Agreement state from {state} to {target}."


def node_address(name: str) -> str:
    return "0x" + hashlib.sha256(name.encode()).hexdigest()[:40]


class Provider:
    """A provider node and its agent's live settings."""

    def __init__(self, spec: ProviderSpec) -> None:
        self.spec = spec
        self.name = spec.name
        self.node_id = node_address(f"provider:{spec.name}")
        self.faults: Faults = spec.faults
        self.agreements: set[str] = set()
        self._responsive = asyncio.Event()
        self.set_faults(spec.faults)

    def set_faults(self, faults: Faults) -> None:
        self.faults = faults
        if faults.unresponsive:
            self._responsive.clear()
        else:
            self._responsive.set()

    async def react(self) -> None:
        """Wait as the provider would: forever while unresponsive, then its latency."""
        await self._responsive.wait()
        if self.faults.latency_seconds:
            await asyncio.sleep(self.faults.latency_seconds)

    @property
    def busy(self) -> bool:
        return len(self.agreements) >= self.spec.max_agreements

    def offer_properties(self) -> dict[str, Any]:
        spec = self.spec
        platform = spec.payment_platform
        return {
            "golem.activity.caps.transfer.protocol": ["data", "container"],
            "golem.com.payment.debit-notes.accept-timeout?": 240,
            f"golem.com.payment.platform.{platform}.address": self.node_id,
            "golem.com.payment.protocol.version": "3",
            "golem.com.pricing.model": "linear",
            "golem.com.pricing.model.linear.coeffs": spec.prices.coeffs(),
            "golem.com.scheme": "payu",
            P_INTERVAL: spec.debit_note_interval_seconds,
            P_PAYMENT_TIMEOUT: 120,
            "golem.com.usage.vector": USAGE_VECTOR,
            "golem.inf.cpu.architecture": "x86_64",
            "golem.inf.cpu.cores": spec.resources.cpu_threads,
            "golem.inf.cpu.threads": spec.resources.cpu_threads,
            "golem.inf.mem.gib": spec.resources.mem_gib,
            "golem.inf.storage.gib": spec.resources.storage_gib,
            "golem.node.debug.subnet": spec.subnet_tag,
            "golem.node.id.name": spec.name,
            "golem.runtime.capabilities": ["vpn"],
            "golem.runtime.name": spec.runtime,
            "golem.runtime.version": spec.runtime_version,
            "golem.srv.caps.multi-activity": True,
            "golem.srv.caps.payload-manifest": False,
        }


@dataclass
class Proposal:
    id: str
    demand_id: str
    provider: Provider
    issuer_id: str
    from_provider: bool
    properties: dict[str, Any]
    constraints: str
    state: str
    timestamp: datetime
    prev_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "properties": self.properties,
            "constraints": self.constraints,
            "proposalId": self.id,
            "issuerId": self.issuer_id,
            "state": self.state,
            "timestamp": iso(self.timestamp),
        }
        if self.prev_id is not None:
            body["prevProposalId"] = self.prev_id
        return body


@dataclass
class Demand:
    id: str
    properties: dict[str, Any]
    constraints: str
    expression: Expression | None
    timestamp: datetime
    # yagna takes a demand whose constraints do not parse; such a demand matches nothing.
    constraints_parse: bool = True
    events: EventQueue = field(default_factory=EventQueue)
    proposals: dict[str, Proposal] = field(default_factory=dict)
    offered_to: set[str] = field(default_factory=set)
    #: provider name -> its Initial proposal on this demand, while not countered or rejected
    open_offers: dict[str, str] = field(default_factory=dict)

    def to_json(self, requestor_id: str) -> dict[str, Any]:
        return {
            "properties": self.properties,
            "constraints": self.constraints,
            "demandId": self.id,
            "requestorId": requestor_id,
            "timestamp": iso(self.timestamp),
        }


@dataclass
class Agreement:
    id: str
    provider: Provider
    demand_proposal: Proposal
    offer_proposal: Proposal
    valid_to: str
    timestamp: datetime
    state: str = "Proposal"
    approved_date: datetime | None = None
    terminator: str | None = None
    reason: dict[str, Any] | None = None
    terminated_date: datetime | None = None
    activities: list[str] = field(default_factory=list)
    #: its provider vanished after approving it (fault): no activity, no invoice
    vanished: bool = False
    paid: Decimal = Decimal(0)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    timers: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def demand_properties(self) -> dict[str, Any]:
        return self.demand_proposal.properties

    def negotiated_seconds(self, key: str) -> float | None:
        value = self.demand_properties.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            return float(value)
        return None

    @property
    def debit_note_interval(self) -> float:
        return self.negotiated_seconds(P_INTERVAL) or self.provider.spec.debit_note_interval_seconds

    def to_json(self, requestor_id: str) -> dict[str, Any]:
        demand = self.demand_proposal
        offer = self.offer_proposal
        body: dict[str, Any] = {
            "agreementId": self.id,
            "demand": {
                "properties": demand.properties,
                "constraints": demand.constraints,
                "demandId": demand.id,
                "requestorId": requestor_id,
                "timestamp": iso(demand.timestamp),
            },
            "offer": {
                "properties": offer.properties,
                "constraints": offer.constraints,
                "offerId": offer.id,
                "providerId": self.provider.node_id,
                "timestamp": iso(offer.timestamp),
            },
            "validTo": self.valid_to,
            "state": self.state,
            "timestamp": iso(self.timestamp),
            # yagna 0.17.6 signs nothing and says so.
            "proposedSignature": "NoSignature",
            "approvedSignature": "NoSignature",
            "committedSignature": "NoSignature",
        }
        if self.approved_date is not None:
            body["approvedDate"] = iso(self.approved_date)
        return body


@dataclass
class CommandResult:
    index: int
    ok: bool
    stdout: str | None = None
    stderr: str | None = None
    message: str | None = None
    finished_batch: bool = False
    event_date: datetime = field(default_factory=stamp)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "index": self.index,
            "eventDate": iso(self.event_date),
            "result": "Ok" if self.ok else "Error",
            "isBatchFinished": self.finished_batch,
        }
        for key, value in (("stdout", self.stdout), ("stderr", self.stderr)):
            if value is not None:
                body[key] = value
        if self.message is not None:
            body["message"] = self.message
        return body


@dataclass
class Batch:
    id: str
    commands: list[dict[str, Any]]
    results: list[CommandResult] = field(default_factory=list)
    running_index: int | None = None
    done: bool = False
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def notify(self) -> None:
        event, self.changed = self.changed, asyncio.Event()
        event.set()


@dataclass
class Activity:
    id: str
    agreement: Agreement
    created: datetime
    created_monotonic: float
    folder: Path
    state: str = "Initialized"
    reason: str | None = None
    error_message: str | None = None
    sandbox: Sandbox | None = None
    ended_monotonic: float | None = None
    batches: dict[str, Batch] = field(default_factory=dict)
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    paid: Decimal = Decimal(0)
    debit_notes: list[str] = field(default_factory=list)

    @property
    def provider(self) -> Provider:
        return self.agreement.provider

    @property
    def terminated(self) -> bool:
        return self.state == "Terminated"

    def duration(self, now: float) -> float:
        end = self.ended_monotonic if self.ended_monotonic is not None else now
        return max(0.0, end - self.created_monotonic)

    def state_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"state": [self.state, None]}
        if self.reason is not None:
            body["reason"] = self.reason
        if self.error_message is not None:
            body["errorMessage"] = self.error_message
        return body


@dataclass
class Allocation:
    id: str
    address: str
    platform: str
    total: Decimal
    timestamp: datetime
    timeout: str | None
    make_deposit: bool
    spent: Decimal = Decimal(0)
    released: bool = False
    updated: datetime | None = None

    @property
    def remaining(self) -> Decimal:
        return self.total - self.spent

    @property
    def expires(self) -> datetime:
        """Its timeout; without one, ten years after creation (yagna's default)."""
        if self.timeout is not None:
            with contextlib.suppress(ValueError):
                return parse_iso(self.timeout)
        return self.timestamp + timedelta(days=3650)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "allocationId": self.id,
            "address": self.address,
            "paymentPlatform": self.platform,
            "totalAmount": pricing.format_amount(self.total),
            "spentAmount": pricing.format_amount(self.spent),
            "remainingAmount": pricing.format_amount(self.remaining),
            "timestamp": iso(self.timestamp),
            "createdTs": iso(self.timestamp),
            "updatedTs": iso(self.updated or self.timestamp),
            "makeDeposit": self.make_deposit,
        }
        if self.timeout is not None:
            body["timeout"] = self.timeout
        return body


@dataclass
class Document:
    """A debit note (activity set) or an invoice (activity None, activity_ids set)."""

    id: str
    agreement: Agreement
    amount: Decimal
    timestamp: datetime
    activity: Activity | None = None
    activity_ids: list[str] = field(default_factory=list)
    usage: list[float] | None = None
    due: datetime | None = None
    previous_id: str | None = None
    status: str = "RECEIVED"
    accepted_amount: Decimal | None = None
    allocation_id: str | None = None
    paid_now: Decimal = Decimal(0)
    rejection: dict[str, Any] | None = None

    def common_json(self, requestor_id: str, payer: str) -> dict[str, Any]:
        provider = self.agreement.provider
        return {
            "issuerId": provider.node_id,
            "recipientId": requestor_id,
            "payeeAddr": provider.node_id,
            "payerAddr": payer,
            "paymentPlatform": provider.spec.payment_platform,
            "timestamp": iso(self.timestamp),
            "agreementId": self.agreement.id,
            "status": self.status,
        }


@dataclass(frozen=True)
class Payment:
    """One settlement recorded when a payable document was accepted."""

    document_id: str
    kind: str
    agreement_id: str
    activity_id: str | None
    allocation_id: str
    amount: Decimal
    timestamp: datetime


class Network:
    """All state of one local Golem network."""

    def __init__(self, config: LocalNetConfig, work_root: Path) -> None:
        self.config = config
        self.work_root = work_root
        self.requestor_id = "0x" + secrets.token_hex(20)
        self.providers = {spec.name: Provider(spec) for spec in _expand(config)}
        self.images = ImageCatalog(list(config.images))
        self.demands: dict[str, Demand] = {}
        self.proposals: dict[str, Proposal] = {}
        self.agreements: dict[str, Agreement] = {}
        self.agreement_events = EventLog()
        self.activities: dict[str, Activity] = {}
        self.allocations: dict[str, Allocation] = {}
        self.debit_notes: dict[str, Document] = {}
        self.invoices: dict[str, Document] = {}
        self.debit_note_events = EventLog()
        self.invoice_events = EventLog()
        self.payments: list[Payment] = []
        self.daemon_faults = DaemonFaults(list(config.daemon_faults))
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop = asyncio.get_running_loop()

    # ----------------------------------------------------------------- helpers
    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_log_failure)
        return task

    def now(self) -> float:
        return self._loop.time()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for activity in self.activities.values():
            for task in activity.tasks:
                task.cancel()
            if activity.sandbox is not None:
                await activity.sandbox.kill()
        for agreement in self.agreements.values():
            for timer in agreement.timers:
                timer.cancel()
        for demand in self.demands.values():
            demand.events.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # ------------------------------------------------------------------ market
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
        if _PROPOSAL_ID.fullmatch(proposal_id) is None:
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
            raise ApiError(410, _transition(agreement.state, "Pending"))
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
            raise ApiError(410, _transition(agreement.state, "Cancelled"))
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
            raise ApiError(409, _transition(agreement.state, "Terminated"))
        if agreement.state != "Approved":
            raise ApiError(410, _transition(agreement.state, "Terminated"))
        agreement.terminator = terminator
        agreement.reason = reason  # None when the requestor sent JSON null, as yagna keeps it
        agreement.terminated_date = stamp()
        self._set_agreement_state(agreement, "Terminated")
        for timer in agreement.timers:
            if timer is not asyncio.current_task():
                timer.cancel()
        self.agreement_events.append(agreement.terminated_date, self.terminated_event(agreement))
        for activity_id in agreement.activities:
            await self.end_activity(
                self.activities[activity_id], "Agreement terminated", error=None
            )
        if not agreement.vanished:
            self._invoice_when_due(agreement)
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

    # ---------------------------------------------------------------- activity
    async def create_activity(self, agreement_id: str) -> Activity:
        problem = agreement_id_problem(agreement_id)
        if problem is not None:
            raise ApiError(500, f"Service error: {problem}")
        agreement = self.agreements.get(agreement_id)
        if agreement is None:
            raise ApiError(404, f"Not found: {agreement_id}")
        if agreement.state != "Approved":
            raise ApiError(
                400,
                f"Bad request: Agreement {agreement_id} is not Approved. "
                f"Current state: {agreement.state}",
            )
        await agreement.provider.react()
        if agreement.vanished:
            # The provider no longer answers: the daemon gives up on reaching it.
            raise ApiError(
                500,
                f"Service error: provider {agreement.provider.node_id} did not answer "
                f"the activity creation for agreement {agreement_id}",
            )
        activity_id = new_activity_id()
        activity = Activity(
            id=activity_id,
            agreement=agreement,
            created=stamp(),
            created_monotonic=self.now(),
            folder=self.work_root / "activities" / activity_id,
        )
        self.activities[activity.id] = activity
        agreement.activities.append(activity.id)
        activity.tasks.append(self.spawn(self._debit_notes(activity)))
        crash_after = agreement.provider.faults.crash_after_seconds
        if crash_after is not None:
            activity.tasks.append(self.spawn(self._crash_later(activity, crash_after)))
        return activity

    def activity(self, activity_id: str) -> Activity:
        activity = self.activities.get(activity_id)
        if activity is None:
            # yagna 0.17.6 answers every activity call on an unknown id so (not 404).
            raise ApiError(500, f"DAO error: Not found: agreement id for activity: {activity_id}")
        return activity

    async def _crash_later(self, activity: Activity, delay: float) -> None:
        await asyncio.sleep(delay)
        await self.crash_activity(activity)

    async def crash_activity(self, activity: Activity) -> None:
        await self.end_activity(activity, "ExeUnit crashed", error="ExeUnit process died")

    async def end_activity(
        self, activity: Activity, reason: str | None, *, error: str | None
    ) -> None:
        """Kill everything of the activity; it stays visible as Terminated."""
        if activity.terminated:
            return
        activity.state = "Terminated"
        activity.reason = reason
        activity.error_message = error
        activity.ended_monotonic = self.now()
        current = asyncio.current_task()
        for task in activity.tasks:
            if task is not current:
                task.cancel()
        if activity.sandbox is not None:
            await activity.sandbox.kill()
        for batch in activity.batches.values():
            if not batch.done:
                batch.done = True
                batch.notify()

    def exec_script(self, activity: Activity, text: str) -> Batch:
        try:
            commands = json.loads(text)
        except json.JSONDecodeError as error:
            raise ApiError(400, f"Invalid ExeScript: {error}") from None
        if not isinstance(commands, list) or not all(
            isinstance(c, dict) and len(c) == 1 for c in commands
        ):
            raise ApiError(400, "Invalid ExeScript: expected a list of single-key command objects")
        known = {"deploy", "start", "run", "transfer", "terminate", "sign"}
        for command in commands:
            name = next(iter(command))
            if name not in known:
                raise ApiError(400, f"Invalid ExeScript: unknown command {name!r}")
        if len(commands) > self.config.limits.max_commands_per_batch:
            raise ApiError(400, "Invalid ExeScript: too many commands")
        if activity.terminated:
            raise ApiError(500, f"Activity [{activity.id}] is Terminated.")
        batch = Batch(id=new_id(), commands=commands)
        activity.batches[batch.id] = batch
        activity.tasks.append(self.spawn(self._run_batch(activity, batch)))
        return batch

    async def _run_batch(self, activity: Activity, batch: Batch) -> None:
        for index, command in enumerate(batch.commands):
            batch.running_index = index
            await activity.provider.react()
            if activity.terminated:
                result = CommandResult(index, ok=False, message="Activity is terminated")
            else:
                try:
                    result = await self._run_command(activity, index, command)
                except SandboxError as error:
                    result = CommandResult(index, ok=False, message=str(error))
            last = (not result.ok) or index == len(batch.commands) - 1 or activity.terminated
            result.finished_batch = last
            batch.results.append(result)
            batch.notify()
            if last:
                break
        batch.running_index = None
        batch.done = True
        batch.notify()

    async def _run_command(
        self, activity: Activity, index: int, command: dict[str, Any]
    ) -> CommandResult:
        name, body = next(iter(command.items()))
        body = body if isinstance(body, dict) else {}
        faults = activity.provider.faults
        if name == "deploy":
            if activity.state != "Initialized":
                return CommandResult(index, ok=False, message=f"Can't deploy: {activity.state}")
            if faults.fail_deploy:
                return CommandResult(index, ok=False, message="Deployment failed (injected fault)")
            try:
                image = await self.images.deploy(
                    activity.agreement.demand_properties.get(P_TASK_PACKAGE)
                )
            except DeployError as error:
                return CommandResult(index, ok=False, message=str(error))
            if activity.state != "Initialized" or activity.terminated:
                return CommandResult(index, ok=False, message=f"Can't deploy: {activity.state}")
            sandbox = Sandbox(image.path, activity.folder)
            await sandbox.start()
            activity.sandbox = sandbox
            if activity.terminated:  # crashed or destroyed while starting
                await sandbox.kill()
                return CommandResult(index, ok=False, message="Activity is terminated")
            activity.tasks.append(self.spawn(self._watch_sandbox(activity, sandbox)))
            activity.state = "Deployed"
            return CommandResult(index, ok=True, stdout="deployed", stderr="")
        if name == "start":
            if activity.state != "Deployed":
                return CommandResult(index, ok=False, message=f"Can't start: {activity.state}")
            if faults.fail_start:
                return CommandResult(index, ok=False, message="Start failed (injected fault)")
            activity.state = "Ready"
            return CommandResult(index, ok=True, stdout="started", stderr="")
        if name == "terminate":
            await self.end_activity(activity, "Terminated by requestor command", error=None)
            return CommandResult(index, ok=True)
        if name == "sign":
            return CommandResult(index, ok=False, message="sign is not supported by localnet")
        if name == "run":
            return await self._run(activity, index, body)
        return await self._transfer(activity, index, body)

    async def _watch_sandbox(self, activity: Activity, sandbox: Sandbox) -> None:
        await sandbox.wait()
        if not activity.terminated:
            await self.end_activity(activity, "ExeUnit crashed", error="sandbox process died")

    async def _run(self, activity: Activity, index: int, body: dict[str, Any]) -> CommandResult:
        if activity.state != "Ready" or activity.sandbox is None:
            return CommandResult(index, ok=False, message=f"Can't run: activity {activity.state}")
        entry_point = body.get("entry_point")
        args = body.get("args", [])
        env = body.get("env") or {}
        if (
            not isinstance(entry_point, str)
            or not isinstance(args, list)
            or not all(isinstance(a, str) for a in args)
            or not isinstance(env, dict)
        ):
            return CommandResult(index, ok=False, message="Invalid run command")
        pattern = activity.provider.faults.fail_command
        if pattern and any(pattern in part for part in [entry_point, *args]):
            return CommandResult(
                index, ok=False, stdout="", stderr="injected fault", message="Injected fault"
            )
        limits = self.config.limits
        outcome = await activity.sandbox.run(
            [entry_point, *args],
            {str(k): str(v) for k, v in env.items()},
            time_limit=limits.command_timeout_seconds,
            output_cap=limits.output_cap_bytes,
        )
        if outcome.timed_out:
            message = f"Command timed out after {limits.command_timeout_seconds}s and was killed"
            return CommandResult(index, False, outcome.stdout, outcome.stderr, message)
        if outcome.exit_code != 0:
            message = f"ExeScript command exited with code {outcome.exit_code}"
            return CommandResult(index, False, outcome.stdout, outcome.stderr, message)
        return CommandResult(index, True, outcome.stdout, outcome.stderr)

    async def _transfer(
        self, activity: Activity, index: int, body: dict[str, Any]
    ) -> CommandResult:
        sandbox = activity.sandbox
        if sandbox is None or activity.state not in ("Deployed", "Ready"):
            return CommandResult(index, ok=False, message=f"Can't transfer: {activity.state}")
        source, target = body.get("from"), body.get("to")
        if not isinstance(source, str) or not isinstance(target, str):
            return CommandResult(index, ok=False, message="transfer needs `from` and `to`")
        cap = self.config.limits.transfer_cap_bytes
        try:
            if source.startswith("data:") and target.startswith("container:"):
                data = decode_data_url(source)
                if len(data) > cap:
                    raise SandboxError(f"transfer larger than {cap} bytes")
                path = sandbox.host_path(target.removeprefix("container:"))
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
                return CommandResult(index, ok=True, stdout="", stderr="")
            if source.startswith("container:") and target.startswith("data:"):
                path = sandbox.host_path(source.removeprefix("container:"))
                if not path.is_file():
                    raise SandboxError(f"{source} is not a file")
                if path.stat().st_size > cap:
                    raise SandboxError(f"{source} is larger than {cap} bytes")
                encoded = base64.b64encode(path.read_bytes()).decode()
                url = f"data:application/octet-stream;base64,{encoded}"
                return CommandResult(index, ok=True, stdout=url, stderr="")
        except (SandboxError, OSError, ValueError) as error:
            return CommandResult(index, ok=False, message=f"Transfer failed: {error}")
        return CommandResult(
            index,
            ok=False,
            message="Transfer failed: localnet supports data:->container: and container:->data:",
        )

    async def results(
        self, activity: Activity, batch_id: str, wait_seconds: float, command_index: int | None
    ) -> list[dict[str, Any]]:
        batch = activity.batches.get(batch_id)
        if batch is None:
            raise ApiError(404, f"Batch [{batch_id}] not found.")
        deadline = self.now() + wait_seconds
        while True:
            if command_index is not None:
                ready = len(batch.results) > command_index or batch.done
            else:
                ready = batch.done
            remaining = deadline - self.now()
            if ready or remaining <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(batch.changed.wait(), remaining)
        if command_index is not None and len(batch.results) <= command_index and not batch.done:
            raise ApiError(408, "Timeout")
        if not batch.results and not batch.done:
            raise ApiError(408, "Timeout")
        return [result.to_json() for result in batch.results]

    def usage(self, activity: Activity) -> list[float]:
        duration = round(activity.duration(self.now()), 3)
        return [duration, duration]  # cpu_sec ~ duration (documented simplification)

    def activity_cost(self, activity: Activity) -> Decimal:
        cpu, duration = self.usage(activity)
        return pricing.activity_cost(
            activity.provider.spec.prices, cpu_seconds=cpu, duration_seconds=duration
        )

    # ----------------------------------------------------------------- payment
    async def _debit_notes(self, activity: Activity) -> None:
        agreement = activity.agreement
        while not activity.terminated:
            await asyncio.sleep(agreement.debit_note_interval)
            await activity.provider.react()
            if activity.terminated or agreement.state != "Approved":
                return
            if self._debit_note_overdue(activity):
                await self.terminate_agreement(
                    agreement,
                    "Provider",
                    {"message": "Requestor did not accept a debit note in time"},
                )
                return
            self._issue_debit_note(activity)

    def _debit_note_overdue(self, activity: Activity) -> bool:
        accept_timeout = activity.agreement.negotiated_seconds(P_ACCEPT_TIMEOUT)
        if accept_timeout is None or not self.config.enforce_debit_note_acceptance:
            return False
        for note_id in activity.debit_notes:
            note = self.debit_notes[note_id]
            if note.status != "ACCEPTED":
                age = (stamp() - note.timestamp).total_seconds()
                if age > accept_timeout:
                    return True
        return False

    def _issue_debit_note(self, activity: Activity) -> Document:
        agreement = activity.agreement
        moment = stamp()
        payment_timeout = agreement.negotiated_seconds(P_PAYMENT_TIMEOUT)
        note = Document(
            id=new_document_id(),
            agreement=agreement,
            amount=self.activity_cost(activity),
            timestamp=moment,
            activity=activity,
            usage=self.usage(activity),
            due=moment + timedelta(seconds=payment_timeout) if payment_timeout else None,
            previous_id=activity.debit_notes[-1] if activity.debit_notes else None,
        )
        activity.debit_notes.append(note.id)
        self.debit_notes[note.id] = note
        self.debit_note_events.append(
            moment,
            {
                "eventType": "DebitNoteReceivedEvent",
                "eventDate": iso(moment),
                "debitNoteId": note.id,
            },
        )
        return note

    def _invoice_when_due(self, agreement: Agreement) -> None:
        """Invoice an ended agreement now, later or never, as the provider's faults say."""
        faults = agreement.provider.faults
        if faults.never_invoice:
            return
        if faults.invoice_delay_seconds is not None:
            self.spawn(self._invoice_later(agreement, faults.invoice_delay_seconds))
            return
        self._issue_invoice(agreement)

    async def _invoice_later(self, agreement: Agreement, delay: float) -> None:
        await asyncio.sleep(delay)
        self._issue_invoice(agreement)

    def _issue_invoice(self, agreement: Agreement) -> Document:
        moment = stamp()
        activities = [self.activities[a] for a in agreement.activities]
        amount = sum((self.activity_cost(a) for a in activities), Decimal(0))
        amount += agreement.provider.faults.invoice_surcharge
        invoice = Document(
            id=new_document_id(),
            agreement=agreement,
            amount=amount,
            timestamp=moment,
            activity_ids=[a.id for a in activities],
            due=moment + timedelta(hours=1),
        )
        self.invoices[invoice.id] = invoice
        self.invoice_events.append(
            moment,
            {
                "eventType": "InvoiceReceivedEvent",
                "eventDate": iso(moment),
                "invoiceId": invoice.id,
            },
        )
        return invoice

    def debit_note_json(self, note: Document) -> dict[str, Any]:
        assert note.activity is not None
        body = note.common_json(self.requestor_id, self._payer_address())
        body.update(
            {
                "debitNoteId": note.id,
                "activityId": note.activity.id,
                "totalAmountDue": pricing.format_amount(note.amount),
                "usageCounterVector": dict(zip(USAGE_VECTOR, note.usage or [], strict=False)),
            }
        )
        if note.previous_id is not None:
            body["previousDebitNoteId"] = note.previous_id
        if note.due is not None:
            body["paymentDueDate"] = iso(note.due)
        return body

    def invoice_json(self, invoice: Document) -> dict[str, Any]:
        body = invoice.common_json(self.requestor_id, self._payer_address())
        body.update(
            {
                "invoiceId": invoice.id,
                "activityIds": invoice.activity_ids,
                "amount": pricing.format_amount(invoice.amount),
                "paymentDueDate": iso(invoice.due or invoice.timestamp),
            }
        )
        return body

    def _payer_address(self) -> str:
        return self.requestor_id

    def create_allocation(self, body: dict[str, Any]) -> Allocation:
        try:
            total = pricing.parse_amount(body.get("totalAmount"))
        except ValueError as error:
            raise ApiError(400, f"Invalid totalAmount: {error}") from None
        requested_platform = body.get("paymentPlatform", self.config.payment_platform)
        platform = requested_platform
        if isinstance(platform, dict):
            parts = [platform.get("driver", "erc20"), platform.get("network", "holesky")]
            platform = "-".join([*parts, platform.get("token") or "tglm"])
        # Errors as yagna 0.17.6 words them: problem JSON (RFC 7807) under /allocations.
        echoed = {
            "address": body.get("address"),
            "deposit": body.get("deposit"),
            "extendTimeout": body.get("extendTimeout"),
            "makeDeposit": body.get("makeDeposit", False),
            "paymentPlatform": requested_platform,
            "timeout": body.get("timeout"),
            "totalAmount": pricing.format_amount(total),
        }
        if platform != self.config.payment_platform:
            raise ProblemError(
                400,
                {
                    "type": "/payment-api/v1/allocations/bad-payment-platform",
                    "detail": "Payment platform doesn't parse",
                    "parseError": f"Payment platform {platform} is not served by this localnet "
                    f"(only {self.config.payment_platform})",
                    "requestBody": echoed,
                    "requestedPaymentPlatform": requested_platform,
                },
            )
        address = body.get("address", self.requestor_id)
        if address != self.requestor_id:
            raise ProblemError(
                500,
                {
                    "type": "/payment-api/v1/allocations/internal-error",
                    "detail": "Unhandled internal error",
                    "internalError": "Failed to initialize account on driver: erc20 due to "
                    f"error Account {address} not found in active accounts",
                    "requestBody": echoed,
                },
            )
        live = [a for a in self.allocations.values() if not a.released]
        reserved = sum((a.remaining for a in live), Decimal(0))
        funds = self.config.requestor.funds
        if total + reserved > funds:
            raise ProblemError(
                400,
                {
                    "type": "/payment-api/v1/allocations/validation-error",
                    "detail": "Insufficient funds to create the allocation. Top up your account "
                    "or release all existing allocations to unlock the funds via "
                    "`yagna payment release-allocations`",
                    "instance": "/payment-api/v1/allocations/validation-error/"
                    "insufficient-account-funds",
                    "address": self.requestor_id,
                    "availableFunds": pricing.format_amount(funds - reserved),
                    "paymentPlatform": platform,
                    "requestBody": echoed,
                    "requestedFunds": pricing.format_amount(total),
                    "reservedFunds": pricing.format_amount(reserved),
                },
            )
        allocation = Allocation(
            id=new_document_id(),
            address=self.requestor_id,
            platform=str(platform),
            total=total,
            timestamp=stamp(),
            timeout=body.get("timeout") if isinstance(body.get("timeout"), str) else None,
            make_deposit=bool(body.get("makeDeposit", False)),
        )
        self.allocations[allocation.id] = allocation
        return allocation

    def allocation(self, allocation_id: str) -> Allocation:
        allocation = self.allocations.get(allocation_id)
        if allocation is None or allocation.released:
            raise ApiError(404, None)  # yagna: 404 `{"message": null}`
        return allocation

    def release_allocation(self, allocation_id: str) -> None:
        allocation = self.allocations.get(allocation_id)
        if allocation is None:
            raise ApiError(404, None)
        if allocation.released:
            raise ApiError(410, f"Allocation {allocation_id} has been already released")
        allocation.released = True
        allocation.updated = stamp()

    def accept(self, document: Document, kind: str, body: dict[str, Any]) -> None:
        try:
            amount = pricing.parse_amount(body.get("totalAmountAccepted"))
        except ValueError as error:
            raise ApiError(400, f"Invalid totalAmountAccepted: {error}") from None
        allocation_id = body.get("allocationId")
        if not isinstance(allocation_id, str):
            raise ApiError(400, "allocationId is required")
        allocation = self.allocations.get(allocation_id)
        if allocation is None or allocation.released:
            raise ApiError(400, f"Allocation [{allocation_id}] not found.")
        if allocation.platform != document.agreement.provider.spec.payment_platform:
            raise ApiError(400, f"Allocation [{allocation_id}] uses another payment platform")
        if amount != document.amount:
            raise ApiError(
                400,
                f"Invalid amount accepted: {pricing.format_amount(amount)}, "
                f"due: {pricing.format_amount(document.amount)}",
            )
        if document.status == "ACCEPTED":
            return  # idempotent: never pay twice
        owed = Decimal(0)
        activity = document.activity
        if kind == "invoice":
            owed = document.amount - document.agreement.paid
        elif document.due is not None and activity is not None:
            owed = document.amount - activity.paid
        owed = max(owed, Decimal(0))
        if owed > allocation.remaining:
            raise ApiError(
                400,
                f"Not enough funds in allocation [{allocation_id}]: "
                f"requested {pricing.format_amount(owed)}, "
                f"remaining {pricing.format_amount(allocation.remaining)}",
            )
        document.status = "ACCEPTED"
        document.accepted_amount = amount
        document.allocation_id = allocation_id
        document.paid_now = owed
        if owed > 0:
            allocation.spent += owed
            document.agreement.paid += owed
            if activity is not None:
                activity.paid += owed
            self.payments.append(
                Payment(
                    document_id=document.id,
                    kind=kind,
                    agreement_id=document.agreement.id,
                    activity_id=activity.id if activity is not None else None,
                    allocation_id=allocation_id,
                    amount=owed,
                    timestamp=stamp(),
                )
            )

    def reject(self, document: Document, body: dict[str, Any]) -> dict[str, Any]:
        if document.status == "ACCEPTED":
            raise ApiError(400, "An accepted document cannot be rejected")
        reason = body.get("rejectionReason")
        if reason not in ("UNSOLICITED_SERVICE", "BAD_SERVICE", "INCORRECT_AMOUNT"):
            raise ApiError(400, f"Invalid rejectionReason: {reason!r}")
        document.status = "REJECTED"
        document.rejection = body
        return body

    # ------------------------------------------------------------------- audit
    def audit(self) -> dict[str, Any]:
        fmt = pricing.format_amount
        return {
            "requestorId": self.requestor_id,
            "demands": sorted(self.demands),
            "agreements": [
                {
                    "agreementId": a.id,
                    "provider": a.provider.name,
                    "state": a.state,
                    "terminator": a.terminator,
                    "reason": a.reason,
                    "activityIds": list(a.activities),
                    "paidAmount": fmt(a.paid),
                    # Which requestor node (the operator names it after the service) signed it.
                    "demandNodeName": a.demand_properties.get("golem.node.id.name"),
                    "taskPackage": a.demand_properties.get(P_TASK_PACKAGE),
                }
                for a in self.agreements.values()
            ],
            "activities": [
                {
                    "activityId": a.id,
                    "agreementId": a.agreement.id,
                    "provider": a.provider.name,
                    "state": a.state,
                    "reason": a.reason,
                    "sandboxAlive": a.sandbox is not None and a.sandbox.alive,
                    "durationSeconds": round(a.duration(self.now()), 3),
                    "paidAmount": fmt(a.paid),
                }
                for a in self.activities.values()
            ],
            "allocations": [
                {**a.to_json(), "released": a.released} for a in self.allocations.values()
            ],
            "debitNotes": [
                {
                    "debitNoteId": d.id,
                    "agreementId": d.agreement.id,
                    "activityId": d.activity.id if d.activity else None,
                    "totalAmountDue": fmt(d.amount),
                    "payable": d.due is not None,
                    "status": d.status,
                    "paidAmount": fmt(d.paid_now),
                }
                for d in self.debit_notes.values()
            ],
            "invoices": [
                {
                    "invoiceId": i.id,
                    "agreementId": i.agreement.id,
                    "amount": fmt(i.amount),
                    "status": i.status,
                    "paidAmount": fmt(i.paid_now),
                    "rejection": i.rejection,
                }
                for i in self.invoices.values()
            ],
            "payments": [
                {
                    "documentId": p.document_id,
                    "kind": p.kind,
                    "agreementId": p.agreement_id,
                    "activityId": p.activity_id,
                    "allocationId": p.allocation_id,
                    "amount": fmt(p.amount),
                }
                for p in self.payments
            ],
            "sandboxesAlive": sum(
                1 for a in self.activities.values() if a.sandbox is not None and a.sandbox.alive
            ),
        }


def decode_data_url(url: str) -> bytes:
    """The bytes of a `data:[<type>][;base64],<data>` URL."""
    header, sep, payload = url.partition(",")
    if not sep:
        raise ValueError("malformed data: URL")
    if header.endswith(";base64"):
        try:
            return base64.b64decode(payload, validate=True)
        except binascii.Error as error:
            raise ValueError(f"bad base64 in data: URL: {error}") from None
    return urllib.parse.unquote_to_bytes(payload)


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("localnet task failed", exc_info=task.exception())
