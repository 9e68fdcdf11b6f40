"""`GolemClient`: the async yagna REST client the operator uses as a requestor.

One client talks to one daemon with one app key. It groups the calls per API:
`.identity`, `.market`, `.activity`, `.payment`, `.net`, all sharing one request path (timeouts,
retries of idempotent calls, error mapping, logging, the `on_request` metrics hook).
Use it as an async context manager, or call `aclose()`.
"""

from __future__ import annotations

from types import TracebackType

import httpx

from golem_operator.golem.activity import ActivityApi
from golem_operator.golem.config import GolemConfig
from golem_operator.golem.identity import IdentityApi
from golem_operator.golem.market import MarketApi
from golem_operator.golem.net import NetApi
from golem_operator.golem.payment import PaymentApi
from golem_operator.golem.requesting import OnRequest, Requester


class GolemClient:
    """Async client of one yagna daemon's requestor REST API.

    `transport` replaces the network (tests pass `httpx.MockTransport`); `on_request` is
    called after every HTTP attempt with (method, path_template, status or None, seconds).
    """

    def __init__(
        self,
        config: GolemConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        on_request: OnRequest | None = None,
    ) -> None:
        self._requester = Requester(config, transport=transport, on_request=on_request)
        self.identity = IdentityApi(self._requester)
        self.market = MarketApi(self._requester)
        self.activity = ActivityApi(self._requester)
        self.payment = PaymentApi(self._requester)
        self.net = NetApi(self._requester)

    @property
    def config(self) -> GolemConfig:
        return self._requester.config

    @property
    def queued_requests(self) -> int:
        """Requests waiting for one of the client's slots (see GolemConfig's bounds)."""
        return self._requester.queued

    @property
    def active_requests(self) -> int:
        return self._requester.active

    async def aclose(self) -> None:
        """Close the connection pool; the client cannot be used afterwards."""
        await self._requester.aclose()

    async def __aenter__(self) -> GolemClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"GolemClient(url={self.config.url!r})"
