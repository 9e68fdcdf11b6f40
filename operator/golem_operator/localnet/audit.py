"""The audit view of the simulated network: what happened, for tests and demos."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from golem_operator.localnet import pricing
from golem_operator.localnet.model import DEBIT_NOTE, INVOICE, P_TASK_PACKAGE

if TYPE_CHECKING:
    from golem_operator.localnet.network import Network


def audit(network: Network) -> dict[str, Any]:
    """Everything the network did, for tests and demos (GET /_localnet/audit)."""
    market, exeunits, payments = network.market, network.exeunits, network.payments
    fmt = pricing.format_amount
    return {
        "requestorId": network.requestor_id,
        "demands": sorted(market.demands),
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
            for a in market.agreements.values()
        ],
        "activities": [
            {
                "activityId": a.id,
                "agreementId": a.agreement.id,
                "provider": a.provider.name,
                "state": a.state,
                "reason": a.reason,
                "sandboxAlive": a.sandbox is not None and a.sandbox.alive,
                "outboundTargets": list(a.gateway.targets) if a.gateway else [],
                "durationSeconds": round(a.duration(network.runtime.now()), 3),
                "paidAmount": fmt(a.paid),
            }
            for a in exeunits.activities.values()
        ],
        "allocations": [
            {**a.to_json(), "released": a.released} for a in payments.allocations.values()
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
            for d in payments.documents[DEBIT_NOTE].values()
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
            for i in payments.documents[INVOICE].values()
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
            for p in payments.payments
        ],
        "networks": [
            {
                **n.to_json(),
                "addresses": list(n.addresses),
                "nodes": [{"id": node, "ip": ip} for ip, node in n.nodes.items()],
            }
            for n in network.vpn.list_networks()
        ],
        "tunnelsOpened": network.vpn.tunnels,
        "sandboxesAlive": sum(
            1 for a in exeunits.activities.values() if a.sandbox is not None and a.sandbox.alive
        ),
    }
