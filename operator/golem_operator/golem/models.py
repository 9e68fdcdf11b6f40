"""Pydantic models of the yagna REST bodies the requestor reads and writes.

Shapes follow ya-client's specs (market-api.yaml, activity-api.yaml, payment-api.yaml,
identity-api.yaml) and the daemon's actual serialization: camelCase on the wire, snake_case
in Python (either is accepted on input), unknown fields kept rather than rejected, money as
`Decimal` (strings on the wire). The client's API modules parse responses into these; the
operator reads them.
"""

from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    field_validator,
)
from pydantic.alias_generators import to_camel


class WireModel(BaseModel):
    """Base of every body: camelCase aliases, lenient about fields the spec does not list."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="allow",
        frozen=True,
    )

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready body, with camelCase keys and Decimals as strings."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


# --- common / identity -----------------------------------------------------------------


class Reason(WireModel):
    """Generic reason (common.yaml Reason): a message plus any extra keys."""

    message: str


class Identity(WireModel):
    """GET /me: the node id (address) the app key acts as."""

    identity: str
    name: str
    role: str


# --- market ----------------------------------------------------------------------------


class ProposalState(enum.StrEnum):
    INITIAL = "Initial"
    DRAFT = "Draft"
    REJECTED = "Rejected"
    ACCEPTED = "Accepted"
    EXPIRED = "Expired"


class AgreementState(enum.StrEnum):
    PROPOSAL = "Proposal"
    PENDING = "Pending"
    CANCELLED = "Cancelled"
    REJECTED = "Rejected"
    APPROVED = "Approved"
    EXPIRED = "Expired"
    TERMINATED = "Terminated"


class DemandOfferBase(WireModel):
    """Properties in flat convention plus an LDAP-style constraints expression."""

    properties: dict[str, Any]
    constraints: str


class Demand(DemandOfferBase):
    demand_id: str
    requestor_id: str
    timestamp: datetime


class Offer(DemandOfferBase):
    offer_id: str
    provider_id: str
    timestamp: datetime


class Proposal(DemandOfferBase):
    """An offer (or counter-offer) proposal received for a demand subscription."""

    proposal_id: str
    issuer_id: str
    state: str  # a ProposalState value; kept as str to survive future states
    timestamp: datetime
    prev_proposal_id: str | None = None


class Agreement(WireModel):
    agreement_id: str
    demand: Demand
    offer: Offer
    valid_to: datetime
    approved_date: datetime | None = None
    state: str  # an AgreementState value
    timestamp: datetime
    app_session_id: str | None = None
    proposed_signature: str | None = None
    approved_signature: str | None = None
    committed_signature: str | None = None


class PropertyQuery(WireModel):
    issuer_properties: dict[str, Any] | None = None
    query_id: str | None = None
    queried_properties: list[str]


class ProposalEvent(WireModel):
    event_type: Literal["ProposalEvent"] = "ProposalEvent"
    event_date: datetime
    proposal: Proposal


class ProposalRejectedEvent(WireModel):
    event_type: Literal["ProposalRejectedEvent"] = "ProposalRejectedEvent"
    event_date: datetime
    proposal_id: str
    reason: Reason | None = None


class PropertyQueryEvent(WireModel):
    event_type: Literal["PropertyQueryEvent"] = "PropertyQueryEvent"
    event_date: datetime
    property_query: PropertyQuery


class UnknownMarketEvent(WireModel):
    """A market event type this client does not know; kept so one poll is not lost."""

    event_type: str
    event_date: datetime | None = None


_KNOWN_DEMAND_EVENTS = frozenset({"ProposalEvent", "ProposalRejectedEvent", "PropertyQueryEvent"})


def _demand_event_tag(value: Any) -> str:
    event_type = (
        value.get("eventType", value.get("event_type"))
        if isinstance(value, dict)
        else getattr(value, "event_type", None)
    )
    return event_type if event_type in _KNOWN_DEMAND_EVENTS else "unknown"


DemandEvent = Annotated[
    Annotated[ProposalEvent, Tag("ProposalEvent")]
    | Annotated[ProposalRejectedEvent, Tag("ProposalRejectedEvent")]
    | Annotated[PropertyQueryEvent, Tag("PropertyQueryEvent")]
    | Annotated[UnknownMarketEvent, Tag("unknown")],
    Discriminator(_demand_event_tag),
]
"""One item of GET /demands/{id}/events, told apart by `eventType`."""

DEMAND_EVENTS: TypeAdapter[list[DemandEvent]] = TypeAdapter(list[DemandEvent])


class AgreementEventType(enum.StrEnum):
    APPROVED = "AgreementApprovedEvent"
    REJECTED = "AgreementRejectedEvent"
    CANCELLED = "AgreementCancelledEvent"
    TERMINATED = "AgreementTerminatedEvent"


class AgreementOperationEvent(WireModel):
    """One item of GET /agreementEvents.

    `event_type` is an AgreementEventType value. Rejected, cancelled and terminated events
    may carry a `reason`; terminated events also name the `terminator` ("Requestor" or
    "Provider") and carry a `signature`.
    """

    event_type: str
    event_date: datetime
    agreement_id: str
    reason: Reason | None = None
    terminator: str | None = None
    signature: str | None = None


# --- activity --------------------------------------------------------------------------


class ExeScriptRequest(WireModel):
    """POST /activity/{id}/exec body: `text` is the JSON-encoded list of commands."""

    text: str


class ExeScriptCommandResult(WireModel):
    """The outcome of one command of a batch (GET /activity/{id}/exec/{batchId})."""

    index: int = Field(ge=0)
    event_date: datetime
    result: Literal["Ok", "Error"]
    stdout: str | None = None
    stderr: str | None = None
    message: str | None = None
    is_batch_finished: bool = False

    @field_validator("stdout", "stderr", mode="before")
    @classmethod
    def _decode_binary_output(cls, value: Any) -> Any:
        # The daemon sends captured output as a string, or as a byte array in binary mode.
        if isinstance(value, list) and all(isinstance(b, int) for b in value):
            return bytes(value).decode("utf-8", errors="replace")
        return value

    @property
    def ok(self) -> bool:
        return self.result == "Ok"


class ActivityStateName(enum.StrEnum):
    NEW = "New"
    INITIALIZED = "Initialized"
    DEPLOYED = "Deployed"
    READY = "Ready"
    UNRESPONSIVE = "Unresponsive"
    TERMINATED = "Terminated"


class ActivityState(WireModel):
    """State pair (current, pending-next) of an activity, plus why it ended."""

    state: tuple[str, str | None]
    reason: str | None = None
    error_message: str | None = None

    @property
    def current(self) -> str:
        return self.state[0]

    @property
    def next(self) -> str | None:
        return self.state[1]

    @property
    def alive(self) -> bool:
        """False once the activity is, or is going to be, Terminated."""
        return ActivityStateName.TERMINATED not in self.state


class ActivityUsage(WireModel):
    """Usage counters in the order of the offer's `golem.com.usage.vector`."""

    current_usage: list[float] | None = None
    timestamp: int


# --- payment ---------------------------------------------------------------------------


class DocumentStatus(enum.StrEnum):
    """Status of a debit note or invoice (InvoiceStatus in payment-api.yaml)."""

    ISSUED = "ISSUED"
    RECEIVED = "RECEIVED"
    ACCEPTED = "ACCEPTED"
    REJECTED = "REJECTED"
    FAILED = "FAILED"
    SETTLED = "SETTLED"
    CANCELLED = "CANCELLED"


class RejectionReason(enum.StrEnum):
    UNSOLICITED_SERVICE = "UNSOLICITED_SERVICE"
    BAD_SERVICE = "BAD_SERVICE"
    INCORRECT_AMOUNT = "INCORRECT_AMOUNT"


class PaymentPlatform(WireModel):
    driver: str | None = None
    network: str | None = None
    token: str | None = None


class Allocation(WireModel):
    """Funds reserved for paying debit notes and invoices."""

    allocation_id: str
    address: str | None = None
    payment_platform: str | PaymentPlatform | None = None
    total_amount: Decimal
    spent_amount: Decimal
    remaining_amount: Decimal
    timestamp: datetime
    timeout: datetime | None = None
    make_deposit: bool = False
    extend_timeout: int | None = None
    deposit: dict[str, Any] | None = None


class NewAllocation(WireModel):
    """POST /allocations body."""

    total_amount: Decimal
    payment_platform: str | PaymentPlatform | None = None
    address: str | None = None
    timeout: datetime | None = None
    make_deposit: bool = False


class MarketProperty(WireModel):
    key: str
    value: str


class MarketDecoration(WireModel):
    """GET /demandDecorations: what the allocations require a demand to carry."""

    properties: list[MarketProperty]
    constraints: list[str]

    def properties_dict(self) -> dict[str, str]:
        """The properties as a flat mapping, ready to merge into a demand."""
        return {prop.key: prop.value for prop in self.properties}


class DebitNote(WireModel):
    debit_note_id: str
    issuer_id: str
    recipient_id: str
    payee_addr: str
    payer_addr: str
    payment_platform: str
    previous_debit_note_id: str | None = None
    timestamp: datetime
    agreement_id: str
    activity_id: str
    total_amount_due: Decimal
    usage_counter_vector: Any = None
    payment_due_date: datetime | None = None
    status: str  # a DocumentStatus value


class Invoice(WireModel):
    invoice_id: str
    issuer_id: str
    recipient_id: str
    payee_addr: str
    payer_addr: str
    payment_platform: str
    timestamp: datetime
    agreement_id: str
    activity_ids: list[str] = Field(default_factory=list)
    amount: Decimal
    payment_due_date: datetime
    status: str  # a DocumentStatus value


class Acceptance(WireModel):
    """Body of POST /debitNotes/{id}/accept and /invoices/{id}/accept."""

    total_amount_accepted: Decimal
    allocation_id: str


class Rejection(WireModel):
    """Body of POST /debitNotes/{id}/reject and /invoices/{id}/reject."""

    rejection_reason: str  # a RejectionReason value
    total_amount_accepted: Decimal
    message: str | None = None


class DebitNoteEventType(enum.StrEnum):
    RECEIVED = "DebitNoteReceivedEvent"
    ACCEPTED = "DebitNoteAcceptedEvent"
    REJECTED = "DebitNoteRejectedEvent"
    CANCELLED = "DebitNoteCancelledEvent"
    SETTLED = "DebitNoteSettledEvent"
    FAILED = "DebitNoteFailedEvent"
    PAYMENT_STATUS = "DebitNotePaymentStatusEvent"
    PAYMENT_OK = "DebitNotePaymentOkEvent"


class InvoiceEventType(enum.StrEnum):
    RECEIVED = "InvoiceReceivedEvent"
    ACCEPTED = "InvoiceAcceptedEvent"
    REJECTED = "InvoiceRejectedEvent"
    CANCELLED = "InvoiceCancelledEvent"
    SETTLED = "InvoiceSettledEvent"
    FAILED = "InvoiceFailedEvent"
    PAYMENT_STATUS = "InvoicePaymentStatusEvent"
    PAYMENT_OK = "InvoicePaymentOkEvent"


class DebitNoteEvent(WireModel):
    """One item of GET /debitNoteEvents; `event_type` is a DebitNoteEventType value."""

    event_type: str
    event_date: datetime
    debit_note_id: str
    rejection: Rejection | None = None
    property: dict[str, Any] | None = None


class InvoiceEvent(WireModel):
    """One item of GET /invoiceEvents; `event_type` is an InvoiceEventType value."""

    event_type: str
    event_date: datetime
    invoice_id: str
    rejection: Rejection | None = None
    property: dict[str, Any] | None = None


# --- net (net-api.yaml) ----------------------------------------------------------------


class Network(WireModel):
    """A requestor VPN. yagna 0.17.6 answers `ip` with its prefix ("192.168.8.0/24")."""

    id: str
    ip: str
    mask: str
    gateway: str


class NetworkNode(WireModel):
    """A node (provider id) and its address in a VPN."""

    id: str
    ip: str


class NetworkAddress(WireModel):
    """One of the requestor's own addresses in a VPN, with its prefix ("192.168.8.1/24")."""

    ip: str
