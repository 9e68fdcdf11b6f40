"""Identity API of yagna (identity-api.yaml): who the app key acts as.

`GolemClient.identity` is an `IdentityApi`; the operator calls `me()` at startup and as a
readiness check.
"""

from __future__ import annotations

from golem_operator.golem.models import Identity
from golem_operator.golem.requesting import Requester, parse_model


class IdentityApi:
    """Requestor calls of the identity API (served at the daemon's root)."""

    def __init__(self, requester: Requester) -> None:
        self._requester = requester

    async def me(self) -> Identity:
        """GET /me: the node id, name and role of the app key's identity."""
        response = await self._requester.request("GET", "/me")
        return parse_model(response, Identity)
