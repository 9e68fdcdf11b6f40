"""The data of the simulated Golem network: ids, errors and the records its parts share.

`ApiError` carries the HTTP status and yagna's message; the dataclasses are the state that
`localnet.market`, `localnet.exeunit`, `localnet.payments` and `localnet.vpn` keep, and
`localnet.network.Network` (the facade) ties together.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import logging
import re
import secrets
import urllib.parse
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from golem_operator.localnet import pricing
from golem_operator.localnet.config import Faults, ProviderSpec
from golem_operator.localnet.constraints import Expression
from golem_operator.localnet.events import EventQueue, iso, parse_iso, stamp
from golem_operator.localnet.outbound import OUTBOUND_CAPABILITIES, PLAIN_CAPABILITIES, Gateway
from golem_operator.localnet.sandbox import Sandbox

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


class BareError(ApiError):
    """An error answer with an empty body, as the net API gives for 403 and 504."""

    def __init__(self, status: int) -> None:
        super().__init__(status, None)


class PlainError(ApiError):
    """An error answered in plain text, as the net API's JSON extractor words them."""


# Id formats of yagna 0.17.6, as the requestor sees them.
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_SUBSCRIPTION_ID = re.compile(r"[0-9a-fA-F]{32}-[0-9a-fA-F]{64}")
PROPOSAL_ID = re.compile(r"[RP]-[0-9a-fA-F]{64}")
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
    if PROPOSAL_ID.fullmatch(proposal_id) is None:
        raise ApiError(400, f"Path deserialize error: Id [{proposal_id}] has invalid format.")


def agreement_id_problem(agreement_id: str) -> str | None:
    """Why yagna refuses this agreement id, or None when it has the right format."""
    if _NOT_HEX.search(agreement_id) is not None:
        return f"Id [{agreement_id}] contains non hexadecimal characters."
    if _HEX64.fullmatch(agreement_id) is None:
        return f"Id [{agreement_id}] hash has invalid length. Should be |64|"
    return None


def transition(state: str, target: str) -> str:
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
            "golem.runtime.capabilities": list(
                OUTBOUND_CAPABILITIES if spec.outbound else PLAIN_CAPABILITIES
            ),
            "golem.runtime.name": spec.runtime,
            "golem.runtime.version": spec.runtime_version,
            "golem.srv.caps.multi-activity": True,
            "golem.srv.caps.payload-manifest": spec.outbound,
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
    #: VPN network id -> this activity's address in it (from its deploy command)
    vpn: dict[str, str] = field(default_factory=dict)
    #: the outbound targets its agreement's manifest granted (from its deploy command)
    gateway: Gateway | None = None

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


@dataclass(frozen=True)
class DocumentKind:
    """Debit note or invoice: the names one payment-document code path is parameterised by."""

    name: str  #: as recorded in payments and the audit: "debit-note", "invoice"
    id_key: str  #: the id field of its JSON and events: "debitNoteId", "invoiceId"
    event_prefix: str  #: its events are `<prefix>ReceivedEvent`, `<prefix>RejectedEvent`
    collection: str  #: its REST collection: "debitNotes", "invoices"
    events_path: str  #: its event feed: "debitNoteEvents", "invoiceEvents"


DEBIT_NOTE = DocumentKind("debit-note", "debitNoteId", "DebitNote", "debitNotes", "debitNoteEvents")
INVOICE = DocumentKind("invoice", "invoiceId", "Invoice", "invoices", "invoiceEvents")
DOCUMENT_KINDS = (DEBIT_NOTE, INVOICE)


@dataclass
class Document:
    """A debit note (activity set) or an invoice (activity None, activity_ids set)."""

    kind: DocumentKind
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


def log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("localnet task failed", exc_info=task.exception())
