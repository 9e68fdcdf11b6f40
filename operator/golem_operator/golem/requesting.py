"""The one request path of the yagna REST client.

`Requester.request` builds the URL from a path template, adds the bearer key, sends with a
per-call timeout, retries idempotent calls (GET, PUT, DELETE) on transport failures and 5xx
with exponential backoff and jitter, maps failures onto `golem_operator.golem.errors`, logs
method, path, status and latency at debug (never headers), and reports each attempt to an
optional `on_request` hook (for Prometheus latency metrics). After an error answer to a
request with a body, its connection is dropped rather than reused (yagna would leave it
hanging). Calls wait for one of a bounded number of slots first (ordinary calls and long
polls apart, see `RequestSlots`); the wait for a slot is not part of a call's timeout. The
per-API modules (identity, market, activity, payment) call it and parse bodies with the
helpers below.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

from golem_operator.golem.config import GolemConfig
from golem_operator.golem.errors import (
    GolemError,
    GolemInvalidResponse,
    GolemNotFound,
    GolemTimeout,
    GolemUnavailable,
    error_for_status,
    message_from_body,
)
from golem_operator.golem.transport import AiohttpTransport, RequestSlots

_log = logging.getLogger(__name__)

OnRequest = Callable[[str, str, int | None, float], None]
"""Hook called after every HTTP attempt: (method, path_template, status or None, seconds)."""

ModelT = TypeVar("ModelT", bound=BaseModel)
T = TypeVar("T")

NO_BODY: Final = object()
"""Marks a request without a body (as opposed to a JSON `null` body)."""

IDEMPOTENT_METHODS: Final = frozenset({"GET", "PUT", "DELETE"})

# Transport failures after which the same idempotent request may well succeed. Read and
# write timeouts are left out: the daemon is alive but slow, and retrying would multiply
# the caller's wait.
_RETRYABLE_TRANSPORT_ERRORS: Final = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
)

_REDACTED: Final = "[REDACTED]"


class _Attempt:
    """Outcome of one HTTP attempt: a response, or an error and whether to retry it."""

    __slots__ = ("error", "response", "retryable")

    def __init__(
        self,
        *,
        response: httpx.Response | None = None,
        error: GolemError | None = None,
        retryable: bool = False,
    ) -> None:
        self.response = response
        self.error = error
        self.retryable = retryable


class Requester:
    """Sends requests to one yagna daemon; shared by the per-API objects of a client."""

    def __init__(
        self,
        config: GolemConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        on_request: OnRequest | None = None,
    ) -> None:
        self._config = config
        self._on_request = on_request
        self._calls = RequestSlots(config.max_concurrent_requests)
        self._polls = RequestSlots(config.max_concurrent_long_polls)
        # trust_env=False: never route the bearer key through a proxy taken from the env.
        self._http = httpx.AsyncClient(
            base_url=config.url,
            # aiohttp's pool: httpcore's cost the operator most of its CPU at scale.
            transport=transport if transport is not None else AiohttpTransport(),
            timeout=httpx.Timeout(config.request_timeout, connect=config.connect_timeout),
            follow_redirects=False,
            trust_env=False,
        )

    @property
    def config(self) -> GolemConfig:
        return self._config

    @property
    def queued(self) -> int:
        """Requests waiting for a slot right now."""
        return self._calls.queued + self._polls.queued

    @property
    def active(self) -> int:
        """Requests under way right now (ordinary calls and long polls)."""
        return self._calls.active + self._polls.active

    async def aclose(self) -> None:
        await self._http.aclose()

    async def request(
        self,
        method: str,
        path_template: str,
        *,
        path_params: Mapping[str, str] | None = None,
        params: Mapping[str, str | int | float] | None = None,
        body: object = NO_BODY,
        wait: float = 0.0,
    ) -> httpx.Response:
        """Send one call and return its 2xx response, or raise a `GolemError`.

        `wait` is how long the daemon may legitimately hold the call (a long-poll or ack
        timeout); the client allows `wait + request_timeout` before giving up.
        """
        path = _fill_path(path_template, path_params or {})
        content = None if body is NO_BODY else json.dumps(body).encode()
        headers = {
            "Authorization": f"Bearer {self._config.app_key.get_secret_value()}",
            "Accept": "application/json",
            # Error bodies are read raw (see _exchange): ask for them uncompressed.
            "Accept-Encoding": "identity",
        }
        if content is not None:
            headers["Content-Type"] = "application/json"
        read_timeout = wait + self._config.request_timeout
        http_timeout = httpx.Timeout(read_timeout, connect=self._config.connect_timeout)
        query = {key: _query_value(value) for key, value in (params or {}).items()}

        retries = self._config.max_retries if method in IDEMPOTENT_METHODS else 0
        slots = self._polls if wait > 0 else self._calls
        for attempt in range(retries + 1):
            # The timeouts start once a slot is held: a queue in the client is no sign of a
            # slow daemon.
            async with slots.hold():
                outcome = await self._attempt(
                    method,
                    path_template,
                    path,
                    query=query,
                    content=content,
                    headers=headers,
                    http_timeout=http_timeout,
                    deadline=read_timeout + self._config.connect_timeout,
                )
            if outcome.response is not None:
                return outcome.response
            assert outcome.error is not None
            if not outcome.retryable or attempt == retries:
                raise outcome.error
            delay = self._backoff(attempt)
            _log.debug(
                "%s %s failed (%s), retry %d/%d in %.2fs",
                method,
                path,
                type(outcome.error).__name__,
                attempt + 1,
                retries,
                delay,
            )
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _attempt(
        self,
        method: str,
        path_template: str,
        path: str,
        *,
        query: Mapping[str, str],
        content: bytes | None,
        headers: Mapping[str, str],
        http_timeout: httpx.Timeout,
        deadline: float,
    ) -> _Attempt:
        started = time.monotonic()
        status: int | None = None
        request = self._http.build_request(
            method, path, params=query, content=content, headers=headers, timeout=http_timeout
        )
        try:
            try:
                # The hard deadline also covers transports that ignore httpx timeouts.
                async with asyncio.timeout(deadline):
                    response, error_body = await self._exchange(request)
            except TimeoutError:
                return _Attempt(
                    error=GolemTimeout(
                        f"no response within {deadline:.1f}s", method=method, path=path
                    )
                )
            except httpx.TransportError as exc:
                detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                error: GolemError
                if isinstance(exc, httpx.TimeoutException):
                    error = GolemTimeout(self._redact(detail), method=method, path=path)
                else:
                    error = GolemUnavailable(
                        self._redact(f"cannot reach the daemon: {detail}"),
                        method=method,
                        path=path,
                    )
                error.__cause__ = exc
                return _Attempt(error=error, retryable=isinstance(exc, _RETRYABLE_TRANSPORT_ERRORS))
            status = response.status_code
            if error_body is None:
                return _Attempt(response=response)
            message = self._redact(
                message_from_body(error_body, fallback=response.reason_phrase or "error")
            )
            failure = error_for_status(status, message, method=method, path=path)
            return _Attempt(
                error=failure,
                retryable=status >= 500
                and status != 501
                and not isinstance(failure, GolemNotFound),
            )
        finally:
            elapsed = time.monotonic() - started
            _log.debug("%s %s -> %s in %.3fs", method, path, status, elapsed)
            self._report(method, path_template, status, elapsed)

    async def _exchange(self, request: httpx.Request) -> tuple[httpx.Response, bytes | None]:
        """Send one request; the response, and its raw body when the status is an error.

        yagna 0.17.6 answers some errors (401 above all) without reading the request body
        and then leaves that keep-alive connection hanging. So after an error answer to a
        request that carried a body, the connection is closed before it goes back to the
        pool (through httpcore's `network_stream` response extension), never reused.
        """
        response = await self._http.send(request, stream=True)
        try:
            if response.is_success:
                await response.aread()
                return response, None
            # Read the raw stream rather than aread(): aread() would hand the connection
            # back to the pool before it could be closed. Accept-Encoding is identity, so
            # the raw bytes are the body.
            chunks = [chunk async for chunk in _async_stream(response)]
            if request.content:
                network_stream = response.extensions.get("network_stream")
                if network_stream is not None:
                    await network_stream.aclose()
            return response, b"".join(chunks)
        finally:
            await response.aclose()

    def _report(self, method: str, path_template: str, status: int | None, seconds: float) -> None:
        if self._on_request is None:
            return
        try:
            self._on_request(method, path_template, status, seconds)
        except Exception:
            # A broken metrics hook must never break a call to the daemon.
            _log.warning("on_request hook failed for %s %s", method, path_template, exc_info=True)

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self._config.backoff_max, self._config.backoff_base * (2**attempt))
        return random.uniform(ceiling / 2, ceiling)

    def _redact(self, text: str) -> str:
        key = self._config.app_key.get_secret_value()
        return text.replace(key, _REDACTED) if key else text

    def __repr__(self) -> str:
        return f"Requester(url={self._config.url!r})"


def _async_stream(response: httpx.Response) -> httpx.AsyncByteStream:
    stream = response.stream
    if not isinstance(stream, httpx.AsyncByteStream):  # pragma: no cover - async client only
        raise TypeError("the async client got a sync response stream")
    return stream


def _fill_path(template: str, params: Mapping[str, str]) -> str:
    # Ids are quoted whole, so an id can never add path segments or a query.
    return template.format_map({name: quote(value, safe="") for name, value in params.items()})


def _query_value(value: str | int | float) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# --- parsing helpers used by the API modules ---------------------------------------------


def _invalid(response: httpx.Response, what: str) -> GolemInvalidResponse:
    return GolemInvalidResponse(
        what,
        status=response.status_code,
        method=response.request.method,
        path=response.request.url.path,
    )


def parse_json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        raise _invalid(response, "response body is not JSON") from None


def parse_model(response: httpx.Response, model: type[ModelT]) -> ModelT:
    """Validate a JSON response body into `model`, or raise `GolemInvalidResponse`."""
    try:
        return model.model_validate(parse_json(response))
    except ValidationError as exc:
        raise _invalid(
            response, f"body is not a valid {model.__name__}: {_first_error(exc)}"
        ) from exc


def parse_adapted(response: httpx.Response, adapter: TypeAdapter[T], what: str) -> T:
    """Validate a JSON response body with a TypeAdapter, or raise `GolemInvalidResponse`."""
    try:
        return adapter.validate_python(parse_json(response))
    except ValidationError as exc:
        raise _invalid(response, f"body is not a valid {what}: {_first_error(exc)}") from exc


def parse_id(response: httpx.Response, *, object_key: str | None = None) -> str:
    """Read an id answered as a JSON string, as `{object_key: id}`, or as bare text."""
    text = response.text.strip()
    try:
        parsed: Any = json.loads(text)
    except ValueError:
        parsed = text
    if isinstance(parsed, dict) and object_key is not None:
        parsed = parsed.get(object_key)
    if isinstance(parsed, str) and parsed.strip():
        return parsed.strip()
    raise _invalid(response, "expected an id in the response body")


def _first_error(exc: ValidationError) -> str:
    first = exc.errors(include_input=False)[0]
    location = ".".join(str(part) for part in first["loc"])
    return f"{location}: {first['msg']}" if location else first["msg"]


def wire_datetime(value: datetime) -> str:
    """RFC 3339 in UTC with microseconds, as the daemon expects; naive datetimes are refused."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("datetime must be timezone-aware")
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def check_poll_timeout(timeout: float) -> float:
    """A long-poll wait: 0 returns at once; must be finite and non-negative."""
    if not 0 <= timeout < float("inf"):
        raise ValueError(f"poll timeout must be >= 0 seconds, got {timeout!r}")
    return float(timeout)


def check_ack_timeout(timeout: float) -> float:
    """An acknowledgement wait: must be > 0 (0 would make the daemon wait forever)."""
    if not 0 < timeout < float("inf"):
        raise ValueError(f"ack timeout must be > 0 seconds, got {timeout!r}")
    return float(timeout)


def check_max_events(max_events: int) -> int:
    if not 1 <= max_events <= 100:
        raise ValueError(f"max_events must be within 1..100, got {max_events!r}")
    return max_events
