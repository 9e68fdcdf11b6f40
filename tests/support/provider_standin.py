"""A stand-in provider agent for the real yagna daemon, driven through its provider-side REST API.

The contract suite (`tests/contract/`) uses it on the yagna side, where no real provider agent or
ExeUnit exists: with the provider identity's app key it publishes an offer, answers every demand
proposal with a counter-proposal, approves agreements, answers activity events (CreateActivity ->
Initialized, DestroyActivity -> Terminated) and, on request, issues and sends an invoice.
It talks HTTP with httpx directly: it plays the other party, so it must not share code with the
project's requestor client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

log = logging.getLogger("provider-standin")

POLL_TIMEOUT_S = 1.0
APPROVE_TIMEOUT_S = 15

# Demand properties a provider echoes back so that both sides agree on payment timing.
NEGOTIATED_PROPERTIES = (
    "golem.com.payment.debit-notes.accept-timeout?",
    "golem.com.scheme.payu.debit-note.interval-sec?",
    "golem.com.scheme.payu.payment-timeout-sec?",
    "golem.com.payment.chosen-platform",
)


def iso_now(delta: timedelta = timedelta()) -> str:
    """An RFC 3339 UTC timestamp with milliseconds, the form yagna accepts everywhere."""
    return (datetime.now(UTC) + delta).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def offer_properties(
    *, provider_id: str, subnet: str, platform: str, name: str = "standin-provider"
) -> dict[str, Any]:
    """The offer a small VM provider publishes (the property set of yagna-offline.md)."""
    return {
        "golem.inf.mem.gib": 8.0,
        "golem.inf.storage.gib": 40.0,
        "golem.inf.cpu.cores": 4,
        "golem.inf.cpu.threads": 4,
        "golem.inf.cpu.architecture": "x86_64",
        "golem.runtime.name": "vm",
        "golem.runtime.version": "0.4.0",
        "golem.node.debug.subnet": subnet,
        "golem.node.id.name": name,
        "golem.com.pricing.model": "linear",
        # [cpu_sec, duration_sec, start]
        "golem.com.pricing.model.linear.coeffs": [0.0001, 0.00005, 0.0],
        "golem.com.scheme": "payu",
        "golem.com.usage.vector": ["golem.usage.cpu_sec", "golem.usage.duration_sec"],
        f"golem.com.payment.platform.{platform}.address": provider_id,
        "golem.activity.caps.transfer.protocol": ["http", "https", "gftp"],
        "golem.srv.caps.multi-activity": True,
    }


def counter_properties(offer: Mapping[str, Any], demand: Mapping[str, Any]) -> dict[str, Any]:
    """The provider's counter-proposal: its offer plus the negotiable demand terms it accepts."""
    merged = dict(offer)
    for key in NEGOTIATED_PROPERTIES:
        if key in demand:
            merged[key] = demand[key]
    return merged


@dataclass
class ProviderStandIn:
    """Plays the provider agent for one offer. `start()`, then `stop()`; state for assertions."""

    url: str
    app_key: str = field(repr=False)
    provider_id: str
    subnet: str
    platform: str = "erc20-holesky-tglm"
    offer_id: str | None = None
    counter_proposals: list[str] = field(default_factory=list)
    approved_agreements: list[str] = field(default_factory=list)
    activity_states: dict[str, str] = field(default_factory=dict)
    activity_agreement: dict[str, str] = field(default_factory=dict)
    terminated_agreements: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _http: httpx.AsyncClient | None = field(default=None, repr=False)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list, repr=False)

    @property
    def offer(self) -> dict[str, Any]:
        return offer_properties(
            provider_id=self.provider_id, subnet=self.subnet, platform=self.platform
        )

    @property
    def http(self) -> httpx.AsyncClient:
        assert self._http is not None, "ProviderStandIn.start() first"
        return self._http

    async def start(self) -> None:
        self._http = httpx.AsyncClient(
            base_url=self.url,
            headers={"Authorization": f"Bearer {self.app_key}"},
            timeout=httpx.Timeout(POLL_TIMEOUT_S + APPROVE_TIMEOUT_S + 10),
        )
        reply = await self.http.post(
            "/market-api/v1/offers",
            json={"properties": self.offer, "constraints": "(golem.srv.comp.expiration>0)"},
        )
        reply.raise_for_status()
        self.offer_id = str(reply.json())
        since = iso_now(timedelta(seconds=-1))
        self._tasks = [
            asyncio.create_task(self._market_loop(self.offer_id), name="standin-market"),
            asyncio.create_task(self._activity_loop(since), name="standin-activity"),
            asyncio.create_task(self._agreement_loop(since), name="standin-agreements"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._http is not None:
            if self.offer_id is not None:
                with contextlib.suppress(httpx.HTTPError):
                    await self.http.delete(f"/market-api/v1/offers/{self.offer_id}")
            await self._http.aclose()
            self._http = None

    # -- market ------------------------------------------------------------------------------

    async def _market_loop(self, subscription: str) -> None:
        while True:
            try:
                reply = await self.http.get(
                    f"/market-api/v1/offers/{subscription}/events",
                    params={"timeout": POLL_TIMEOUT_S, "maxEvents": 20},
                )
                if reply.status_code != 200:
                    self._note(f"offer events: {reply.status_code} {reply.text}")
                    await asyncio.sleep(0.5)
                    continue
                for event in reply.json():
                    await self._on_market_event(subscription, event)
            except httpx.HTTPError as err:
                self._note(f"offer events: {err!r}")
                await asyncio.sleep(0.5)

    async def _on_market_event(self, subscription: str, event: Mapping[str, Any]) -> None:
        kind = event.get("eventType")
        if kind == "ProposalEvent":
            proposal = event["proposal"]
            if proposal.get("issuerId") == self.provider_id:
                return
            reply = await self.http.post(
                f"/market-api/v1/offers/{subscription}/proposals/{proposal['proposalId']}",
                json={
                    "properties": counter_properties(self.offer, proposal.get("properties", {})),
                    "constraints": "(golem.srv.comp.expiration>0)",
                },
            )
            if reply.status_code in (200, 201):  # yagna 0.17.6 answers 200, the spec says 201
                self.counter_proposals.append(str(reply.json()))
            else:
                self._note(f"counter-proposal: {reply.status_code} {reply.text}")
        elif kind == "AgreementEvent":
            agreement_id = str(event["agreement"]["agreementId"])
            # approve blocks until the requestor commits: keep polling meanwhile.
            self._tasks.append(asyncio.create_task(self._approve(agreement_id)))

    async def _approve(self, agreement_id: str) -> None:
        try:
            reply = await self.http.post(
                f"/market-api/v1/agreements/{agreement_id}/approve",
                params={"timeout": APPROVE_TIMEOUT_S},
            )
        except httpx.HTTPError as err:
            self._note(f"approve {agreement_id}: {err!r}")
            return
        if reply.status_code == 204:
            self.approved_agreements.append(agreement_id)
        else:
            self._note(f"approve {agreement_id}: {reply.status_code} {reply.text}")

    async def _agreement_loop(self, since: str) -> None:
        after = since
        while True:
            try:
                reply = await self.http.get(
                    "/market-api/v1/agreementEvents",
                    params={"timeout": POLL_TIMEOUT_S, "afterTimestamp": after},
                )
                if reply.status_code != 200:
                    self._note(f"agreement events: {reply.status_code} {reply.text}")
                    await asyncio.sleep(0.5)
                    continue
                for event in reply.json():
                    after = str(event.get("eventDate", after))
                    agreement_id = str(event.get("agreementId"))
                    # afterTimestamp is inclusive, so the last event comes again: keep one.
                    if (
                        event.get("eventType") == "AgreementTerminatedEvent"
                        and agreement_id not in self.terminated_agreements
                    ):
                        self.terminated_agreements.append(agreement_id)
            except httpx.HTTPError as err:
                self._note(f"agreement events: {err!r}")
                await asyncio.sleep(0.5)

    # -- activity ----------------------------------------------------------------------------

    async def _activity_loop(self, since: str) -> None:
        after = since
        while True:
            try:
                reply = await self.http.get(
                    "/activity-api/v1/events",
                    params={"timeout": POLL_TIMEOUT_S, "afterTimestamp": after, "maxEvents": 20},
                )
                if reply.status_code == 408:  # yagna's answer to "nothing happened"
                    continue
                if reply.status_code != 200:
                    self._note(f"activity events: {reply.status_code} {reply.text}")
                    await asyncio.sleep(0.5)
                    continue
                for event in reply.json():
                    after = str(event.get("eventDate", after))
                    await self._on_activity_event(event)
            except httpx.HTTPError as err:
                self._note(f"activity events: {err!r}")
                await asyncio.sleep(0.5)

    async def _on_activity_event(self, event: Mapping[str, Any]) -> None:
        kind = event.get("eventType")
        name = next(iter(kind)) if isinstance(kind, Mapping) else str(kind)
        activity_id = str(event["activityId"])
        if name == "CreateActivity":
            self.activity_agreement[activity_id] = str(event["agreementId"])
            await self._set_state(activity_id, "Initialized")
        elif name == "DestroyActivity":
            await self._set_state(activity_id, "Terminated")
        else:
            self._note(f"activity event {name} not handled")

    async def _set_state(self, activity_id: str, state: str) -> None:
        reply = await self.http.put(
            f"/activity-api/v1/activity/{activity_id}/state",
            json={"state": [state, None], "reason": None, "errorMessage": None},
        )
        if reply.status_code == 200:
            self.activity_states[activity_id] = state
        else:
            self._note(f"set state {state} of {activity_id}: {reply.status_code} {reply.text}")

    # -- payment -----------------------------------------------------------------------------

    async def send_invoice(self, agreement_id: str, amount: str) -> str:
        """Issue an invoice for the agreement (all its activities) and send it; the invoice id."""
        activities = [a for a, ag in self.activity_agreement.items() if ag == agreement_id]
        reply = await self.http.post(
            "/payment-api/v1/invoices",
            json={
                "agreementId": agreement_id,
                "activityIds": activities,
                "amount": amount,
                "paymentDueDate": iso_now(timedelta(hours=1)),
            },
        )
        if reply.status_code != 201:
            raise RuntimeError(f"issue invoice: {reply.status_code} {reply.text}")
        invoice_id = str(reply.json()["invoiceId"])
        sent = await self.http.post(f"/payment-api/v1/invoices/{invoice_id}/send")
        if sent.status_code != 200:
            raise RuntimeError(f"send invoice: {sent.status_code} {sent.text}")
        return invoice_id

    def _note(self, message: str) -> None:
        log.warning("provider stand-in: %s", message)
        self.errors.append(message)
