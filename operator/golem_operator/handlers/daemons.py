"""Connections to Golem daemons: one client, identity and payment processor per daemon.

Shared by every service that uses the same daemon (the operator's default or a golemRef).
Agreements are registered here with their owning service so that debit notes and invoices,
which arrive per daemon, reach the service that can judge them.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from pydantic import SecretStr

from golem_operator.golem import AgreementEventType, GolemClient, GolemConfig, GolemError
from golem_operator.golem.config import DEFAULT_MAX_REQUESTS
from golem_operator.observability import metrics
from golem_operator.requestor.payments import UNOWNED_WAIT, PaymentOwner, PaymentProcessor
from golem_operator.requestor.supervision import Supervisor


class AgreementOwner(PaymentOwner, Protocol):
    """A service holding agreements: it pays for them and hears when providers end them."""

    def agreement_terminated(self, agreement_id: str, message: str) -> None: ...


log = logging.getLogger(__name__)

#: A daemon counts as unreachable (or refusing the key) once its calls failed this long.
FAILING_FOR = 3.0


@dataclass
class DaemonHealth:
    """What the latest calls to a daemon say about reaching it, whichever task made them.

    Fed by the client's on_request hook; read by every service using the daemon, so that its
    Degraded condition stays put for the whole outage and clears with the first answer.
    """

    failing_since: float | None = None
    failing_since_wall: str = ""
    failures: int = 0
    unauthorized: bool = False

    def record(self, method: str, path: str, status: int | None, seconds: float) -> None:
        metrics.record_golem_call(method, path, status, seconds)
        if status is None or status == 401:  # no answer at all, or the key is refused
            if self.failing_since is None:
                self.failing_since = time.monotonic()
                self.failing_since_wall = datetime.now(UTC).isoformat(timespec="seconds")
            self.failures += 1
            self.unauthorized = status == 401
        else:
            self.failing_since, self.failures, self.unauthorized = None, 0, False

    def problem(self, url: str) -> tuple[str, str] | None:
        """(reason, message) for the Degraded condition, or None while the daemon answers."""
        if self.failing_since is None or self.failures < 2:
            return None
        if time.monotonic() - self.failing_since < FAILING_FOR:
            return None
        # The message stays the same for the whole outage: no status write per retry.
        if self.unauthorized:
            return (
                "GolemUnauthorized",
                f"the Golem daemon at {url} refuses the app key (401) since "
                f"{self.failing_since_wall}; update the key (GOLEM_APPKEY or the golemRef Secret)",
            )
        return (
            "GolemUnreachable",
            f"cannot reach the Golem daemon at {url} since {self.failing_since_wall}; "
            "retrying with backoff",
        )


@dataclass
class Daemon:
    url: str
    client: GolemClient
    address: str
    payments: PaymentProcessor
    owners: dict[str, AgreementOwner] = field(default_factory=dict)
    health: DaemonHealth = field(default_factory=DaemonHealth)
    #: Where the agreement-event watcher resumes, also after it was restarted.
    agreement_events_after: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def supervisor(self) -> Supervisor:
        return self.payments.supervisor

    def register(self, agreement_id: str, owner: AgreementOwner) -> None:
        self.owners[agreement_id] = owner
        self.payments.owners_changed()

    def unregister(self, agreement_id: str) -> None:
        self.owners.pop(agreement_id, None)

    def tasks_problem(self) -> tuple[str, str] | None:
        """(reason, message) while one of the daemon's background tasks is down."""
        return self.supervisor.problem()


class DaemonPool:
    def __init__(
        self,
        unowned_wait: float = UNOWNED_WAIT,
        max_requests: int = DEFAULT_MAX_REQUESTS,
        max_long_polls: int = 0,
    ) -> None:
        self._daemons: dict[str, Daemon] = {}
        self._lock = asyncio.Lock()
        #: How long a document waits for its service before it is judged without one.
        self.unowned_wait = unowned_wait
        #: Calls and long polls open on one daemon at a time (GolemConfig's bounds).
        self.max_requests = max_requests
        self.max_long_polls = max_long_polls

    async def get(self, url: str, app_key: SecretStr) -> Daemon:
        """The daemon at url (connecting on first use; raises GolemError if unreachable)."""
        fingerprint = hashlib.sha256(app_key.get_secret_value().encode()).hexdigest()[:16]
        key = f"{url}#{fingerprint}"
        async with self._lock:
            daemon = self._daemons.get(key)
            if daemon is not None:
                return daemon
            health = DaemonHealth()
            config = GolemConfig(
                url=url,
                app_key=app_key,
                max_concurrent_requests=self.max_requests,
                max_concurrent_long_polls=self.max_long_polls,
            )
            client = GolemClient(config, on_request=health.record)
            metrics.watch_golem_queue(client)
            try:
                identity = await client.identity.me()
            except BaseException:
                await client.aclose()
                raise
            owners: dict[str, AgreementOwner] = {}
            payments = PaymentProcessor(
                client,
                owners.get,
                supervisor=Supervisor(f"the Golem daemon at {url}"),
                unowned_wait=self.unowned_wait,
            )
            daemon = Daemon(url, client, identity.identity, payments, owners, health=health)
            payments.start()
            daemon.supervisor.spawn(
                "agreement-events", lambda sup, name: _watch_agreements(daemon, sup, name)
            )
            self._daemons[key] = daemon
            log.info("connected to Golem daemon %s as %s", url, identity.identity)
            return daemon

    async def close(self) -> None:
        for daemon in self._daemons.values():
            await daemon.payments.close()
            await daemon.client.aclose()
        self._daemons.clear()


async def _watch_agreements(daemon: Daemon, supervisor: Supervisor, name: str) -> None:
    """Tell owners when a provider terminates one of their agreements."""
    backoff = 0.5
    while True:
        try:
            events = await daemon.client.market.collect_agreement_events(
                daemon.agreement_events_after, timeout=2.0, max_events=100
            )
            backoff = 0.5
        except asyncio.CancelledError:
            raise
        except GolemError as error:
            log.info("collecting agreement events failed: %s", error)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 10.0)
            continue
        supervisor.healthy(name)
        for event in events:
            daemon.agreement_events_after = max(daemon.agreement_events_after, event.event_date)
            if event.event_type != AgreementEventType.TERMINATED:
                continue
            if (event.terminator or "").lower() == "requestor":
                continue
            owner = daemon.owners.get(event.agreement_id)
            if owner is not None:
                reason = event.reason.message if event.reason else "no reason given"
                owner.agreement_terminated(event.agreement_id, f"provider terminated: {reason}")
