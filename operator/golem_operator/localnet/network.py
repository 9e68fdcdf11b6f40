"""The simulated Golem network: market, providers, activities, payments and VPNs in memory.

`Network` is a small facade over the parts, each owning its own state and playing its side
of every provider agent: `Market` (offers, negotiation, agreements), `ExeUnits` (activities,
ExeScripts, sandboxes), `Payments` (allocations, debit notes, invoices), `Vpn` (the net
API's networks, nodes and TCP tunnels). The HTTP layer (`localnet.api`) calls the parts;
`ApiError` carries the HTTP status and yagna's message. The records and id helpers live in
`localnet.model` and are re-exported here for the code that imports them from this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from golem_operator.localnet import audit as _audit
from golem_operator.localnet.config import LocalNetConfig
from golem_operator.localnet.exeunit import ExeUnits
from golem_operator.localnet.faults import DaemonFaults
from golem_operator.localnet.images import ImageCatalog
from golem_operator.localnet.market import Market
from golem_operator.localnet.model import (
    DEBIT_NOTE,
    INVOICE,
    Activity,
    Agreement,
    Allocation,
    ApiError,
    Batch,
    CommandResult,
    Demand,
    Document,
    DocumentKind,
    Payment,
    ProblemError,
    Proposal,
    Provider,
    agreement_id_problem,
    check_proposal_id,
    check_subscription_id,
    decode_data_url,
    new_activity_id,
    new_document_id,
    new_id,
    new_proposal_id,
    new_subscription_id,
    node_address,
)
from golem_operator.localnet.payments import Payments
from golem_operator.localnet.runtime import Runtime
from golem_operator.localnet.vpn import Vpn

__all__ = [
    "Activity",
    "Agreement",
    "Allocation",
    "ApiError",
    "Batch",
    "CommandResult",
    "Demand",
    "Document",
    "DocumentKind",
    "Network",
    "Payment",
    "ProblemError",
    "Proposal",
    "Provider",
    "agreement_id_problem",
    "check_proposal_id",
    "check_subscription_id",
    "decode_data_url",
    "new_activity_id",
    "new_document_id",
    "new_id",
    "new_proposal_id",
    "new_subscription_id",
    "node_address",
]


class Network:
    """All state of one local Golem network, by concern."""

    def __init__(self, config: LocalNetConfig, work_root: Path) -> None:
        self.runtime = Runtime(config, work_root)
        self.images = ImageCatalog(list(config.images))
        self.daemon_faults = DaemonFaults(list(config.daemon_faults))
        self.market = Market(self.runtime)
        self.exeunits = ExeUnits(self.runtime, self.images)
        self.payments = Payments(self.runtime)
        self.vpn = Vpn(self.runtime)
        # The parts call each other where a provider agent's sides meet: an agreement's end
        # ends its activities and invoices it; an unpaid debit note ends the agreement; a
        # deploy joins the activity's VPN networks.
        self.market.exeunits = self.payments.exeunits = self.exeunits
        self.market.payments = self.exeunits.payments = self.payments
        self.exeunits.market = self.payments.market = self.market
        self.exeunits.vpn = self.vpn
        self.vpn.exeunits = self.exeunits

    @property
    def config(self) -> LocalNetConfig:
        return self.runtime.config

    @property
    def requestor_id(self) -> str:
        return self.runtime.requestor_id

    @property
    def providers(self) -> dict[str, Provider]:
        return self.runtime.providers

    @property
    def activities(self) -> dict[str, Activity]:
        return self.exeunits.activities

    @property
    def agreements(self) -> dict[str, Agreement]:
        return self.market.agreements

    @property
    def demands(self) -> dict[str, Demand]:
        return self.market.demands

    @property
    def allocations(self) -> dict[str, Allocation]:
        return self.payments.allocations

    @property
    def debit_notes(self) -> dict[str, Document]:
        return self.payments.documents[DEBIT_NOTE]

    @property
    def invoices(self) -> dict[str, Document]:
        return self.payments.documents[INVOICE]

    def audit(self) -> dict[str, Any]:
        return _audit.audit(self)

    async def close(self) -> None:
        self.runtime.cancel_tasks()
        await self.exeunits.close()
        self.market.close()
        await self.vpn.close()
        await self.runtime.wait_tasks()
