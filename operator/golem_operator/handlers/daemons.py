"""Connections to Golem daemons: one client, identity and payment processor per daemon.

Shared by every service that uses the same daemon (the operator's default or a golemRef).
Agreements are registered here with their owning service so that debit notes and invoices,
which arrive per daemon, reach the service that can judge them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from pydantic import SecretStr

from golem_operator.golem import AgreementEventType, GolemClient, GolemConfig, GolemError
from golem_operator.observability import metrics
from golem_operator.requestor.payments import PaymentOwner, PaymentProcessor


class AgreementOwner(PaymentOwner, Protocol):
    """A service holding agreements: it pays for them and hears when providers end them."""

    def agreement_terminated(self, agreement_id: str, message: str) -> None: ...


log = logging.getLogger(__name__)


@dataclass
class Daemon:
    url: str
    client: GolemClient
    address: str
    payments: PaymentProcessor
    owners: dict[str, AgreementOwner] = field(default_factory=dict)
    watcher: asyncio.Task[None] | None = None

    def register(self, agreement_id: str, owner: AgreementOwner) -> None:
        self.owners[agreement_id] = owner

    def unregister(self, agreement_id: str) -> None:
        self.owners.pop(agreement_id, None)


class DaemonPool:
    def __init__(self) -> None:
        self._daemons: dict[str, Daemon] = {}
        self._lock = asyncio.Lock()

    async def get(self, url: str, app_key: SecretStr) -> Daemon:
        """The daemon at url (connecting on first use; raises GolemError if unreachable)."""
        fingerprint = hashlib.sha256(app_key.get_secret_value().encode()).hexdigest()[:16]
        key = f"{url}#{fingerprint}"
        async with self._lock:
            daemon = self._daemons.get(key)
            if daemon is not None:
                return daemon
            client = GolemClient(
                GolemConfig(url=url, app_key=app_key), on_request=metrics.record_golem_call
            )
            try:
                identity = await client.identity.me()
            except BaseException:
                await client.aclose()
                raise
            owners: dict[str, AgreementOwner] = {}
            payments = PaymentProcessor(client, owners.get)
            daemon = Daemon(url, client, identity.identity, payments, owners)
            payments.start()
            daemon.watcher = asyncio.create_task(_watch_agreements(daemon), name="agreements")
            self._daemons[key] = daemon
            log.info("connected to Golem daemon %s as %s", url, identity.identity)
            return daemon

    async def close(self) -> None:
        for daemon in self._daemons.values():
            if daemon.watcher is not None:
                daemon.watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await daemon.watcher
            await daemon.payments.close()
            await daemon.client.aclose()
        self._daemons.clear()


async def _watch_agreements(daemon: Daemon) -> None:
    """Tell owners when a provider terminates one of their agreements."""
    after = datetime.now(UTC)
    backoff = 0.5
    while True:
        try:
            events = await daemon.client.market.collect_agreement_events(
                after, timeout=2.0, max_events=100
            )
            backoff = 0.5
        except asyncio.CancelledError:
            raise
        except GolemError as error:
            log.info("collecting agreement events failed: %s", error)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 10.0)
            continue
        for event in events:
            after = max(after, event.event_date)
            if event.event_type != AgreementEventType.TERMINATED:
                continue
            if (event.terminator or "").lower() == "requestor":
                continue
            owner = daemon.owners.get(event.agreement_id)
            if owner is not None:
                reason = event.reason.message if event.reason else "no reason given"
                owner.agreement_terminated(event.agreement_id, f"provider terminated: {reason}")
