"""The client's one request path: auth header, error mapping, retries, timeouts, hook, logs."""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from datetime import datetime
from typing import Any

import httpx
import pytest
from golem_fakes import APP_KEY, FakeDaemon, error_reply, json_reply, make_config

from golem_operator.golem import (
    GolemBadRequest,
    GolemClient,
    GolemConflict,
    GolemError,
    GolemForbidden,
    GolemGone,
    GolemInvalidResponse,
    GolemNotFound,
    GolemServerError,
    GolemTimeout,
    GolemUnauthorized,
    GolemUnavailable,
)

ME = {
    "identity": "0x5a1c0d3e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c",
    "name": "requestor",
    "role": "manager",
}


def make_client(daemon: FakeDaemon, **config: Any) -> GolemClient:
    on_request = config.pop("on_request", None)
    return GolemClient(
        make_config(**config),
        transport=httpx.MockTransport(daemon.handle),
        on_request=on_request,
    )


async def test_me_sends_bearer_key_to_root_path(daemon: FakeDaemon, client: GolemClient) -> None:
    daemon.route("GET", "/me", json_reply(200, ME))

    me = await client.identity.me()

    assert me.identity == ME["identity"] and me.role == "manager"
    request = daemon.last
    assert str(request.url) == "http://127.0.0.1:7465/me"
    assert request.headers["authorization"] == f"Bearer {APP_KEY}"
    assert request.headers["accept"] == "application/json"


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (400, GolemBadRequest),
        (422, GolemBadRequest),
        (401, GolemUnauthorized),
        (403, GolemForbidden),
        (404, GolemNotFound),
        (408, GolemTimeout),
        (409, GolemConflict),
        (410, GolemGone),
        (500, GolemServerError),
        (503, GolemServerError),
        (504, GolemTimeout),
    ],
)
async def test_error_statuses_map_to_leaves(
    daemon: FakeDaemon, status: int, error_class: type[GolemError]
) -> None:
    path = "/market-api/v1/agreements/agr-1/confirm"
    daemon.route("POST", path, error_reply(status, f"daemon says {status}"))
    async with make_client(daemon) as client:
        with pytest.raises(error_class) as caught:
            await client.market.confirm_agreement("agr-1")
    error = caught.value
    assert error.status == status
    assert error.method == "POST" and error.path == path
    assert error.message == f"daemon says {status}"
    assert str(error) == f"POST {path} -> {status}: daemon says {status}"


async def test_plain_text_error_body_becomes_the_message(
    daemon: FakeDaemon, client: GolemClient
) -> None:
    daemon.route("GET", "/me", httpx.Response(401, text="Missing application key"))
    with pytest.raises(GolemUnauthorized, match="Missing application key"):
        await client.identity.me()


async def test_empty_error_body_falls_back_to_reason_phrase(
    daemon: FakeDaemon, client: GolemClient
) -> None:
    daemon.route("GET", "/me", httpx.Response(404))
    with pytest.raises(GolemNotFound) as caught:
        await client.identity.me()
    assert caught.value.message == "Not Found"


async def test_get_is_retried_on_503_then_succeeds(daemon: FakeDaemon) -> None:
    daemon.route(
        "GET", "/me", error_reply(503, "busy"), error_reply(503, "busy"), json_reply(200, ME)
    )
    async with make_client(daemon) as client:
        me = await client.identity.me()
    assert me.name == "requestor"
    assert len(daemon.calls("GET", "/me")) == 3


async def test_get_gives_up_after_max_retries(daemon: FakeDaemon) -> None:
    daemon.route("GET", "/me", error_reply(500, "GSB error"))
    async with make_client(daemon, max_retries=2) as client:
        with pytest.raises(GolemServerError, match="GSB error"):
            await client.identity.me()
    assert len(daemon.calls("GET", "/me")) == 3


async def test_get_is_not_retried_on_4xx(daemon: FakeDaemon, client: GolemClient) -> None:
    daemon.route("GET", "/me", error_reply(404, "nope"), json_reply(200, ME))
    with pytest.raises(GolemNotFound):
        await client.identity.me()
    assert len(daemon.calls("GET", "/me")) == 1


async def test_post_is_never_retried(daemon: FakeDaemon, client: GolemClient) -> None:
    path = "/market-api/v1/demands"
    daemon.route("POST", path, error_reply(503, "busy"), json_reply(201, "sub-1"))
    with pytest.raises(GolemServerError):
        await client.market.subscribe_demand({"golem.node.debug.subnet": "public"}, "(x=1)")
    assert len(daemon.calls("POST", path)) == 1


async def test_post_is_not_retried_on_connection_errors(
    daemon: FakeDaemon, client: GolemClient
) -> None:
    path = "/market-api/v1/demands"
    daemon.route("POST", path, httpx.ConnectError("Connection refused"), json_reply(201, "s"))
    with pytest.raises(GolemUnavailable):
        await client.market.subscribe_demand({}, "(x=1)")
    assert len(daemon.calls("POST", path)) == 1


async def test_delete_is_retried_on_connection_errors(daemon: FakeDaemon) -> None:
    path = "/market-api/v1/demands/sub-1"
    daemon.route(
        "DELETE",
        path,
        httpx.ConnectError("Connection refused"),
        httpx.ReadError("connection reset"),
        httpx.Response(204),
    )
    async with make_client(daemon) as client:
        await client.market.unsubscribe_demand("sub-1")
    assert len(daemon.calls("DELETE", path)) == 3


async def test_unreachable_daemon_raises_unavailable_with_cause(daemon: FakeDaemon) -> None:
    daemon.route("GET", "/me", httpx.ConnectError("Connection refused"))
    async with make_client(daemon, max_retries=1) as client:
        with pytest.raises(GolemUnavailable) as caught:
            await client.identity.me()
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert "Connection refused" in str(caught.value)
    assert len(daemon.calls("GET", "/me")) == 2


async def test_read_timeout_maps_to_timeout_and_is_not_retried(
    daemon: FakeDaemon, client: GolemClient
) -> None:
    daemon.route("GET", "/me", httpx.ReadTimeout("timed out"), json_reply(200, ME))
    with pytest.raises(GolemTimeout) as caught:
        await client.identity.me()
    assert isinstance(caught.value.__cause__, httpx.ReadTimeout)
    assert len(daemon.calls("GET", "/me")) == 1


async def test_slow_daemon_hits_the_client_deadline(daemon: FakeDaemon) -> None:
    async def never_answers(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        return json_reply(200, ME)

    daemon.route("GET", "/me", never_answers)
    async with make_client(
        daemon, request_timeout=0.2, connect_timeout=0.1, max_retries=0
    ) as client:
        started = time.monotonic()
        with pytest.raises(GolemTimeout, match="no response within"):
            await client.identity.me()
    assert time.monotonic() - started < 2.0


async def test_long_poll_deadline_includes_the_poll_timeout(daemon: FakeDaemon) -> None:
    path = "/market-api/v1/demands/sub-1/events"

    async def answers_after_the_poll(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.6)  # longer than request_timeout, within the poll timeout
        return json_reply(200, [])

    daemon.route("GET", path, answers_after_the_poll)
    async with make_client(daemon, request_timeout=0.2, connect_timeout=0.1) as client:
        events = await client.market.collect_demand_events("sub-1", timeout=1.0)
    assert events == []
    assert daemon.last.url.params["timeout"] == "1.0"


async def test_on_request_hook_sees_every_attempt(daemon: FakeDaemon) -> None:
    seen: list[tuple[str, str, int | None, float]] = []
    daemon.route(
        "GET",
        "/activity-api/v1/activity/act-1/state",
        httpx.ConnectError("refused"),
        error_reply(503, "busy"),
        json_reply(200, {"state": ["Ready", None]}),
    )
    async with make_client(
        daemon, on_request=lambda m, p, s, t: seen.append((m, p, s, t))
    ) as client:
        await client.activity.get_state("act-1")
    template = "/activity-api/v1/activity/{activityId}/state"
    assert [(m, p, s) for m, p, s, _ in seen] == [
        ("GET", template, None),
        ("GET", template, 503),
        ("GET", template, 200),
    ]
    assert all(seconds >= 0 for *_, seconds in seen)


async def test_failing_hook_does_not_break_the_call(daemon: FakeDaemon) -> None:
    def broken_hook(method: str, path: str, status: int | None, seconds: float) -> None:
        raise RuntimeError("metrics backend down")

    daemon.route("GET", "/me", json_reply(200, ME))
    async with make_client(daemon, on_request=broken_hook) as client:
        me = await client.identity.me()
    assert me.name == "requestor"


async def test_ids_are_quoted_into_one_path_segment(
    daemon: FakeDaemon, client: GolemClient
) -> None:
    daemon.route(
        "GET",
        "/activity-api/v1/activity/a/../b?x=1/state",
        json_reply(200, {"state": ["Ready", None]}),
    )
    await client.activity.get_state("a/../b?x=1")
    assert daemon.last.url.raw_path == b"/activity-api/v1/activity/a%2F..%2Fb%3Fx%3D1/state"


async def test_non_json_success_body_is_an_invalid_response(
    daemon: FakeDaemon, client: GolemClient
) -> None:
    daemon.route("GET", "/me", httpx.Response(200, text="<html>proxy</html>"))
    with pytest.raises(GolemInvalidResponse, match="not JSON"):
        await client.identity.me()


async def test_success_body_of_the_wrong_shape_is_an_invalid_response(
    daemon: FakeDaemon, client: GolemClient
) -> None:
    daemon.route("GET", "/me", json_reply(200, {"identity": "0xabc"}))
    with pytest.raises(GolemInvalidResponse, match="Identity") as caught:
        await client.identity.me()
    assert caught.value.status == 200 and caught.value.path == "/me"


async def test_the_app_key_never_leaks(
    daemon: FakeDaemon, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    daemon.route("GET", "/me", error_reply(401, f"Invalid application key {APP_KEY}"))
    daemon.route("DELETE", "/payment-api/v1/allocations/al-1", httpx.ConnectError("refused"))
    daemon.route("POST", "/market-api/v1/demands", json_reply(201, "sub-1"))
    errors: list[GolemError] = []
    async with make_client(daemon, max_retries=1) as client:
        for call in (client.identity.me(), client.payment.release_allocation("al-1")):
            try:
                await call
            except GolemError as exc:
                errors.append(exc)
        await client.market.subscribe_demand({}, "(x=1)")
        texts = [repr(client), str(client.config), repr(client.config)]

    assert [type(e) for e in errors] == [GolemUnauthorized, GolemUnavailable]
    for error in errors:
        texts += [str(error), repr(error)]
        texts.append("".join(traceback.format_exception(error)))
    texts.append(caplog.text)
    for text in texts:
        assert APP_KEY not in text
    assert "[REDACTED]" in str(errors[0])
    # the debug log tells what happened, without headers
    assert "GET /me -> 401" in caplog.text
    assert "POST /market-api/v1/demands -> 201" in caplog.text
    assert "authorization" not in caplog.text.lower()


async def test_client_validates_arguments_before_sending(
    daemon: FakeDaemon, client: GolemClient
) -> None:
    with pytest.raises(ValueError, match="ack timeout"):
        await client.market.wait_for_approval("agr-1", timeout=0)
    with pytest.raises(ValueError, match="timezone-aware"):
        await client.market.create_agreement("prop-1", datetime(2030, 1, 1))
    with pytest.raises(ValueError, match="max_events"):
        await client.market.collect_demand_events("sub-1", max_events=0)
    with pytest.raises(ValueError, match="poll timeout"):
        await client.payment.collect_invoice_events(timeout=-1)
    with pytest.raises(TypeError, match="float"):
        await client.payment.accept_invoice("inv-1", 0.1, "al-1")  # type: ignore[arg-type]
    assert daemon.requests == []
