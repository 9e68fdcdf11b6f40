"""Connection settings for the yagna REST client.

`GolemConfig` is frozen and validated once; the operator builds it with
`GolemConfig.from_env()` at startup and hands it to `GolemClient`. The app key is a
`SecretStr`, so neither repr() nor str() of the config ever shows it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from golem_operator.golem.errors import GolemConfigError

DEFAULT_URL = "http://127.0.0.1:7465"

ENV_URL = "GOLEM_URL"
ENV_APP_KEY = "YAGNA_APPKEY"
ENV_REQUEST_TIMEOUT = "GOLEM_REQUEST_TIMEOUT"
ENV_CONNECT_TIMEOUT = "GOLEM_CONNECT_TIMEOUT"
ENV_MAX_RETRIES = "GOLEM_MAX_RETRIES"
ENV_MAX_REQUESTS = "GOLEM_MAX_CONCURRENT_REQUESTS"
ENV_MAX_LONG_POLLS = "GOLEM_MAX_CONCURRENT_LONG_POLLS"

#: Ordinary calls open on one daemon at a time: 1,000 instances starting at once made the
#: daemon answer connects with timeouts. 64 slowed stopping 300 instances from 12 s to 20-30 s
#: (destroying activities is slow); 256 did not (scripts/bench_operator.py, 1x300).
DEFAULT_MAX_REQUESTS = 256

PositiveSeconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class GolemConfig(BaseModel):
    """Where the yagna daemon is, how to authenticate, and how patient to be with it."""

    # hide_input_in_errors: a rejected app key must not be echoed by a ValidationError.
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    url: str = Field(default=DEFAULT_URL, description="Base URL of the daemon's REST API.")
    app_key: SecretStr = Field(description="Application key sent as `Authorization: Bearer`.")
    request_timeout: PositiveSeconds = Field(
        default=10.0,
        description="Seconds one ordinary call may take; long polls add their own wait to it.",
    )
    connect_timeout: PositiveSeconds = Field(
        default=5.0, description="Seconds to establish the TCP connection."
    )
    max_retries: int = Field(
        default=3, ge=0, le=10, description="Retries of idempotent calls (GET, PUT, DELETE)."
    )
    max_concurrent_requests: int = Field(
        default=DEFAULT_MAX_REQUESTS,
        ge=1,
        le=100_000,
        description="Ordinary calls (no long-poll wait) open at a time; the rest queue.",
    )
    max_concurrent_long_polls: int = Field(
        default=0,
        ge=0,
        le=100_000,
        description="Long polls (calls the daemon may hold: event polls, exec results, "
        "approvals) open at a time; 0 means no bound. Counted apart from ordinary calls, so "
        "waiting polls never hold up the calls that would end their wait.",
    )
    backoff_base: float = Field(
        default=0.2,
        ge=0,
        allow_inf_nan=False,
        description="First retry delay in seconds; doubles on each retry, with jitter.",
    )
    backoff_max: float = Field(
        default=5.0, ge=0, allow_inf_nan=False, description="Upper bound of one retry delay."
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http(s) URL with a host, e.g. http://127.0.0.1:7465")
        if parts.query or parts.fragment:
            raise ValueError("must not contain a query or a fragment")
        return value.rstrip("/")

    @field_validator("app_key")
    @classmethod
    def _check_app_key(cls, value: SecretStr) -> SecretStr:
        key = value.get_secret_value()
        if not key.strip():
            raise ValueError("must not be empty")
        if any(ch.isspace() for ch in key):
            raise ValueError("must not contain whitespace")
        return value

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> GolemConfig:
        """Build the config from environment variables.

        Reads GOLEM_URL (default http://127.0.0.1:7465), YAGNA_APPKEY (required) and,
        optionally, GOLEM_REQUEST_TIMEOUT, GOLEM_CONNECT_TIMEOUT, GOLEM_MAX_RETRIES,
        GOLEM_MAX_CONCURRENT_REQUESTS and GOLEM_MAX_CONCURRENT_LONG_POLLS.
        Raises `GolemConfigError` naming the offending variable; the key's value is never
        part of the message.
        """
        env = os.environ if environ is None else environ
        app_key = env.get(ENV_APP_KEY, "")
        if not app_key.strip():
            raise GolemConfigError(f"{ENV_APP_KEY} is not set or empty")
        values: dict[str, object] = {"app_key": SecretStr(app_key)}
        field_by_variable = {
            ENV_URL: "url",
            ENV_REQUEST_TIMEOUT: "request_timeout",
            ENV_CONNECT_TIMEOUT: "connect_timeout",
            ENV_MAX_RETRIES: "max_retries",
            ENV_MAX_REQUESTS: "max_concurrent_requests",
            ENV_MAX_LONG_POLLS: "max_concurrent_long_polls",
        }
        for variable, field in field_by_variable.items():
            raw = env.get(variable)
            if raw is not None and raw.strip():
                values[field] = raw.strip()
        variable_by_field = {field: var for var, field in field_by_variable.items()}
        variable_by_field["app_key"] = ENV_APP_KEY
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = str(first["loc"][0]) if first["loc"] else ""
            variable = variable_by_field.get(field, field)
            # Never echo the input: for the app key that would be the secret itself.
            raise GolemConfigError(f"{variable} is invalid: {first['msg']}") from None
