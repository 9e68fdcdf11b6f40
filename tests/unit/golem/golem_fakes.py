"""Test doubles for the Golem client's unit tests: a scripted daemon behind httpx.MockTransport.

`FakeDaemon` answers each (method, path) with scripted replies in order (the last one
repeats) and records every request, so tests assert on paths, queries, bodies and headers.
Unrouted requests fail the test. No network, no monkeypatching.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from golem_operator.golem import GolemConfig

APP_KEY = "s3cr3t-app-key-5f0e9d1c2b3a"

Reply = httpx.Response | BaseException | Callable[[httpx.Request], Awaitable[httpx.Response]]


def json_reply(status: int, body: Any) -> httpx.Response:
    return httpx.Response(status, json=body)


def error_reply(status: int, message: str) -> httpx.Response:
    return httpx.Response(status, json={"message": message})


class FakeDaemon:
    def __init__(self) -> None:
        self._routes: dict[tuple[str, str], list[Reply]] = {}
        self.requests: list[httpx.Request] = []

    def route(self, method: str, path: str, *replies: Reply) -> None:
        assert replies, "a route needs at least one reply"
        self._routes[(method, path)] = list(replies)

    def calls(self, method: str, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method and r.url.path == path]

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]

    def last_json(self) -> Any:
        return json.loads(self.last.content)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        key = (request.method, request.url.path)
        replies = self._routes.get(key)
        if replies is None:
            raise AssertionError(f"unexpected request {request.method} {request.url}")
        reply = replies.pop(0) if len(replies) > 1 else replies[0]
        if isinstance(reply, BaseException):
            raise reply
        if isinstance(reply, httpx.Response):
            return reply
        return await reply(request)


def make_config(**overrides: Any) -> GolemConfig:
    values: dict[str, Any] = {
        "url": "http://127.0.0.1:7465",
        "app_key": APP_KEY,
        "request_timeout": 2.0,
        "connect_timeout": 1.0,
        "max_retries": 3,
        "backoff_base": 0.0,
    }
    values.update(overrides)
    return GolemConfig.model_validate(values)
