"""Exceptions raised by the yagna REST client, one root with a leaf per failure kind.

The client's request path (`golem_operator.golem.requesting`) maps every HTTP status and
transport failure onto these classes; callers (the operator's handlers) catch the leaves.
Each error carries the daemon's message, the HTTP status, method and path, never a header,
so neither str() nor repr() can reveal the app key. Transport errors keep the httpx error
as `__cause__` for debugging.
"""

from __future__ import annotations

import json
from typing import Final

_MAX_MESSAGE_CHARS: Final = 500


class GolemError(Exception):
    """Root of every error raised by the Golem client."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.method = method
        self.path = path

    def __str__(self) -> str:
        where = f"{self.method} {self.path}" if self.method and self.path else ""
        if self.status is not None:
            where = f"{where} -> {self.status}" if where else str(self.status)
        return f"{where}: {self.message}" if where else self.message

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(message={self.message!r}, status={self.status!r}, "
            f"method={self.method!r}, path={self.path!r})"
        )


class GolemConfigError(GolemError, ValueError):
    """The client configuration is invalid (names the bad setting or variable)."""


class GolemBadRequest(GolemError):
    """400 or 422: the daemon rejected the request body or parameters."""


class GolemUnauthorized(GolemError):
    """401: the app key is missing or invalid."""


class GolemForbidden(GolemError):
    """403: the app key's identity may not touch this resource."""


class GolemNotFound(GolemError):
    """No such demand, proposal, agreement, activity, allocation, note or invoice.

    Usually a 404. yagna 0.17.6 answers 500 `DAO error: Not found: ...` for an unknown
    activity; that is a GolemNotFound too (with status 500), and it is never retried.
    """


class GolemConflict(GolemError):
    """409: the resource is in the wrong state for the call (also the base of 410 Gone)."""


class GolemGone(GolemConflict):
    """410: the resource is permanently past the requested state (unsubscribed, rejected…)."""


class GolemAgreementNotApproved(GolemGone):
    """From waitForApproval: the agreement will never be approved.

    yagna answers 410 for a rejected, cancelled or expired agreement, and 400
    `Agreement [..] terminated.` for a terminated one; `status` keeps what it said.
    `outcome` is one of "Rejected", "Cancelled", "Expired", "Terminated", or None when the
    daemon's message names none of them.
    """

    OUTCOMES: Final = ("Rejected", "Cancelled", "Expired", "Terminated")

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        super().__init__(message, status=status, method=method, path=path)
        lowered = message.lower()
        self.outcome: str | None = next(
            (outcome for outcome in self.OUTCOMES if outcome.lower() in lowered), None
        )


class GolemTimeout(GolemError):
    """The call timed out: 408 (or 504 ack timeout) from the daemon, or on the client side."""


class GolemServerError(GolemError):
    """5xx (other than 504): the daemon failed internally."""


class GolemUnavailable(GolemError):
    """The daemon could not be reached: connection refused, reset, or another transport error."""


class GolemInvalidResponse(GolemError):
    """The daemon answered with a success status but a body that does not fit the API."""


# yagna 0.17.6 answers an unknown activity id with 500 and this message (activity API).
_DAO_NOT_FOUND: Final = "DAO error: Not found"


def error_for_status(status: int, message: str, *, method: str, path: str) -> GolemError:
    """Return (not raise) the error matching an HTTP error status (and, for 500, message)."""
    cls: type[GolemError]
    if status == 500 and message.startswith(_DAO_NOT_FOUND):
        cls = GolemNotFound
    elif status in (400, 422):
        cls = GolemBadRequest
    elif status == 401:
        cls = GolemUnauthorized
    elif status == 403:
        cls = GolemForbidden
    elif status == 404:
        cls = GolemNotFound
    elif status == 409:
        cls = GolemConflict
    elif status == 410:
        cls = GolemGone
    elif status in (408, 504):
        cls = GolemTimeout
    elif 500 <= status <= 599:
        cls = GolemServerError
    else:
        cls = GolemError
    return cls(message, status=status, method=method, path=path)


def message_from_body(body: bytes, *, fallback: str) -> str:
    """Extract the daemon's error message from a response body.

    The daemon answers `{"message": "..."}` (ErrorMessage in common.yaml), a problem JSON
    (`{"type", "detail", ...}`, POST /allocations), a JSON string, plain text (401), or
    nothing; `fallback` (the reason phrase) covers nothing and `{"message": null}` (yagna's
    404 for an unknown allocation or invoice).
    """
    text = body.decode("utf-8", errors="replace").strip()
    if not text:
        return fallback
    try:
        parsed = json.loads(text)
    except ValueError:
        return _clip(text)
    if isinstance(parsed, dict):
        for key in ("message", "detail"):
            message = parsed.get(key)
            if isinstance(message, str) and message.strip():
                return _clip(message.strip())
        if "message" in parsed and len(parsed) == 1:
            return fallback
        return _clip(text)
    if isinstance(parsed, str) and parsed.strip():
        return _clip(parsed.strip())
    return _clip(text)


def _clip(text: str) -> str:
    if len(text) <= _MAX_MESSAGE_CHARS:
        return text
    return text[: _MAX_MESSAGE_CHARS - 1] + "…"
