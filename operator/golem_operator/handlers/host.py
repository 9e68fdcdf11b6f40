"""What the instance phases (starting, running, stopping, uploads) need from their service.

The phase modules drive one instance and report what happened through these members; the
service worker implements them. Typed as a Protocol so that the phases never import the
worker's module (handlers.service imports them; import-linter keeps it one-way).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from decimal import Decimal
from typing import Protocol

from golem_operator.api.spec import GolemServiceSpec
from golem_operator.api.status import GolemServiceStatus, Instance, NetworkStatus
from golem_operator.core import plan as planning
from golem_operator.core.redaction import Redactor
from golem_operator.core.states import Event
from golem_operator.handlers.daemons import AgreementOwner, Daemon
from golem_operator.handlers.kube import Kube
from golem_operator.requestor.market import ServiceMarket


class InstanceHost(AgreementOwner, Protocol):
    namespace: str
    daemon: Daemon | None
    market: ServiceMarket | None
    spec: GolemServiceSpec | None
    redactor: Redactor
    wake: asyncio.Event
    #: Why no instance can start (an unreadable upload source), or None.
    start_blocked: str | None
    #: Pending instances that found offers but none within the budget.
    budget_blocked: set[str]
    #: Budget held by instances negotiating right now (name -> most it could cost).
    reserved: dict[str, Decimal]
    #: Starting instances that may own an activity status does not know.
    activity_unknown: set[str]
    #: Instances whose run-script result this process has written once.
    reported_runs: set[str]
    #: The service's name (host names in its VPN are `<name>-<ordinal>`).
    name: str
    #: The summary status: the instances, and the network recorded for spec.network.
    status: GolemServiceStatus
    #: The network of spec.network once recorded in status (and checked after a restart).
    network_ready: NetworkStatus | None
    #: Instances whose provider node is leaving the VPN (not to be added again).
    vpn_leaving: set[str]

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]: ...

    @property
    def kube(self) -> Kube: ...

    @property
    def spec_or_fail(self) -> GolemServiceSpec: ...

    def transition(self, instance: Instance, event: Event, message: str = "") -> None: ...

    def respawn(self, instance: Instance, event: Event, message: str) -> None: ...

    def avoid(self, provider_id: str, reason: str, period: timedelta = ...) -> None: ...

    def avoided(self) -> set[str]: ...

    def provider_load(self) -> dict[str, int]: ...

    def budget(self) -> planning.Budget: ...

    def touch(self, instance: Instance, routine: bool = False) -> None: ...

    async def persist(self, instance: Instance) -> None: ...

    async def sleep_or_stop(self, name: str, seconds: float) -> bool: ...

    def take_lost(self, name: str) -> str | None: ...

    def vpn_lock(self, network_id: str, provider_id: str) -> asyncio.Lock: ...

    def network_lost(self, network_id: str) -> None: ...
