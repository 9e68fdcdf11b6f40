"""An httpx transport that sends requests through aiohttp's connection pool.

The Golem client's `Requester` uses it as the default transport: httpx keeps its request and
response objects, timeouts and error types, aiohttp carries the bytes. httpcore's pool cost
about 1.5 ms of CPU per call on this project's machines (an operator with 1,000 instances
makes hundreds of calls per second); aiohttp's about 0.1 ms. Errors are raised as the httpx
exceptions httpcore would raise, so retries and error mapping are unchanged; each response
offers the `network_stream` extension whose `aclose()` drops its connection instead of
returning it to the pool; and an error answer to a request that carried a body never goes
back to the pool (yagna 0.17.6 leaves such connections hanging), as the Requester expects.

`RequestSlots` bounds how many requests the client has open on one daemon at a time: a burst
(1,000 instances starting at once) waits its turn in the client instead of opening a
thousand connections at once, which the daemon's accept queue answered with connect
timeouts.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import certifi
import httpx
from aiohttp.connector import Connection
from multidict import CIMultiDict
from yarl import URL

#: Headers aiohttp sets itself from the body and the URL.
_SKIPPED_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})
#: Methods whose requests carry a body in the Golem client.
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
#: Seconds an idle connection stays open for reuse.
KEEPALIVE_SECONDS = 15.0


class RequestSlots:
    """At most `limit` requests at a time (0: no bound); the rest wait in arrival order."""

    def __init__(self, limit: int) -> None:
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        self.limit = limit
        self._semaphore = asyncio.Semaphore(limit) if limit else None
        #: Requests waiting for a slot right now.
        self.queued = 0
        #: Requests holding a slot (or, without a bound, under way) right now.
        self.active = 0

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        if self._semaphore is not None:
            self.queued += 1
            try:
                await self._semaphore.acquire()
            finally:
                self.queued -= 1
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1
            if self._semaphore is not None:
                self._semaphore.release()


class _Response(aiohttp.ClientResponse):
    """Drops its connection after an error answer to a request with a body."""

    async def start(self, connection: Connection) -> aiohttp.ClientResponse:
        protocol = connection.protocol
        await super().start(connection)
        if self.status >= 400 and self.method in _BODY_METHODS and protocol is not None:
            # yagna may leave the unread rest of such a request on the connection: never
            # reuse it. aiohttp hands a connection back to its pool as soon as a small body
            # has arrived, inside start(); nothing else ran since (no await after that).
            protocol.force_close()
            if self._connection is None:
                protocol.close()
        return self


class _ResponseStream(httpx.AsyncByteStream):
    """The body of an aiohttp response; closing it returns the connection to the pool."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except TimeoutError as error:
            raise httpx.ReadTimeout(str(error) or "read timed out") from error
        except aiohttp.ClientError as error:
            raise httpx.ReadError(str(error) or type(error).__name__) from error

    async def aclose(self) -> None:
        self._response.release()


class _NetworkStream:
    """What `response.extensions["network_stream"]` offers: closing the connection."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def aclose(self) -> None:
        self._response.close()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """httpx transport over one aiohttp session, created lazily inside the running loop."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=0,  # every long poll and every instance's call gets its connection
                keepalive_timeout=KEEPALIVE_SECONDS,
                ssl=ssl.create_default_context(cafile=certifi.where()),
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,  # httpx decodes by Content-Encoding itself
                trust_env=False,  # never route the bearer key through a proxy from the env
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
                timeout=aiohttp.ClientTimeout(total=None),
                response_class=_Response,
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._open()
        timeouts: dict[str, Any] = request.extensions.get("timeout", {})
        timeout = aiohttp.ClientTimeout(
            total=None,
            sock_connect=timeouts.get("connect"),
            sock_read=timeouts.get("read"),
        )
        headers: CIMultiDict[str] = CIMultiDict()
        # The raw pairs: httpx's multi_items() re-detects the encoding for every header.
        for raw_name, raw_value in request.headers.raw:
            name = raw_name.decode("latin-1")
            if name.lower() not in _SKIPPED_HEADERS:
                headers.add(name, raw_value.decode("latin-1"))
        body = await request.aread()
        try:
            response = await session.request(
                request.method,
                URL(str(request.url), encoded=True),
                headers=headers,
                data=body or None,
                timeout=timeout,
                allow_redirects=False,
            )
        except aiohttp.ConnectionTimeoutError as error:
            message = str(error) or "connect timed out"
            raise httpx.ConnectTimeout(message, request=request) from error
        except (TimeoutError, aiohttp.SocketTimeoutError) as error:
            raise httpx.ReadTimeout(str(error) or "read timed out", request=request) from error
        except aiohttp.ClientConnectorError as error:
            raise httpx.ConnectError(str(error), request=request) from error
        except aiohttp.ServerDisconnectedError as error:
            raise httpx.RemoteProtocolError(str(error), request=request) from error
        except aiohttp.ClientOSError as error:
            raise httpx.WriteError(str(error), request=request) from error
        except aiohttp.ClientError as error:
            raise httpx.RemoteProtocolError(
                str(error) or type(error).__name__, request=request
            ) from error
        return httpx.Response(
            status_code=response.status,
            headers=list(response.raw_headers),
            stream=_ResponseStream(response),
            extensions={
                "http_version": b"HTTP/1.1",
                "reason_phrase": (response.reason or "").encode("latin-1", "replace"),
                "network_stream": _NetworkStream(response),
            },
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
