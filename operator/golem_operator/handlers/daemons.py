"""Connections to Golem daemons: one client, identity and payment processor per daemon.

Shared by every service that uses the same daemon (the operator's default or a golemRef).
Agreements are registered here with their owning service so that debit notes and invoices,
which arrive per daemon, reach the service that can judge them.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass, field

from pydantic import SecretStr

from golem_operator.golem import GolemClient, GolemConfig
from golem_operator.observability import metrics
from golem_operator.requestor.payments import PaymentOwner, PaymentProcessor

log = logging.getLogger(__name__)


@dataclass
class Daemon:
    url: str
    client: GolemClient
    address: str
    payments: PaymentProcessor
    owners: dict[str, PaymentOwner] = field(default_factory=dict)

    def register(self, agreement_id: str, owner: PaymentOwner) -> None:
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
            owners: dict[str, PaymentOwner] = {}
            payments = PaymentProcessor(client, owners.get)
            daemon = Daemon(url, client, identity.identity, payments, owners)
            payments.start()
            self._daemons[key] = daemon
            log.info("connected to Golem daemon %s as %s", url, identity.identity)
            return daemon

    async def close(self) -> None:
        for daemon in self._daemons.values():
            await daemon.payments.close()
            await daemon.client.aclose()
        self._daemons.clear()
