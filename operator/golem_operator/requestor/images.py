"""The Golem image registry client: one GET per resolution, judged by ``core.images``.

Used by the service workers before they publish a demand. No retries here: a failure becomes
the service's Degraded condition and the worker's loop tries again with backoff.
"""

from __future__ import annotations

import httpx

from golem_operator.core.images import (
    ImageQuery,
    ImageResolutionError,
    ResolvedImage,
    parse_registry_answer,
)

#: The registry answers small JSON documents; a larger body is not a registry's.
MAX_ANSWER_BYTES = 64 * 1024


class ImageRegistry:
    """Resolves tags and hashes through `GET {registry}/v1/image/info` (shared by services)."""

    def __init__(self, timeout: float = 10.0) -> None:
        self._client = httpx.AsyncClient(timeout=timeout, follow_redirects=True, trust_env=False)

    async def resolve(self, query: ImageQuery) -> ResolvedImage:
        try:
            async with self._client.stream("GET", query.url, params=query.params) as response:
                body = b""
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_ANSWER_BYTES:
                        raise ImageResolutionError(
                            f"{query.describe()}: registry {query.registry} answered more than "
                            f"{MAX_ANSWER_BYTES} bytes"
                        )
                status = response.status_code
        except httpx.HTTPError as error:
            raise ImageResolutionError(
                f"{query.describe()}: cannot reach registry {query.registry}: "
                f"{type(error).__name__}: {error}"[:400]
            ) from None
        return parse_registry_answer(query, status, body.decode("utf-8", "replace"))

    async def close(self) -> None:
        await self._client.aclose()
