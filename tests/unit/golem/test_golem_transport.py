"""The client's default transport (httpx over aiohttp) against real loopback sockets.

`GolemClient` without a `transport` argument sends through `AiohttpTransport`. These tests
start tiny asyncio servers on 127.0.0.1 that answer, stall, hang up or refuse, and check what
reaches the server and which error the caller gets: the same as with httpx's own transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from golem_fakes import APP_KEY, make_config

from golem_operator.devenv.controlplane import free_port
from golem_operator.golem import (
    GolemBadRequest,
    GolemClient,
    GolemTimeout,
    GolemUnavailable,
)
from golem_operator.golem.transport import AiohttpTransport

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Server:
    """A loopback server whose connection handler a test chooses."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self._server: asyncio.Server | None = None

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        with contextlib.suppress(Exception):
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def read_request(self, reader: asyncio.StreamReader) -> tuple[str, dict[str, str]]:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        line, *lines = head.split("\r\n")
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (item.partition(":") for item in lines if item)
        }
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        self.requests.append((line, headers, body))
        return line, headers


def answer(writer: asyncio.StreamWriter, status: int, body: object) -> None:
    data = json.dumps(body).encode()
    writer.write(
        f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n"
        f"content-length: {len(data)}\r\n\r\n".encode()
        + data
    )


@contextlib.asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[tuple[Server, str]]:
    server = Server(handler)
    url = await server.start()
    try:
        yield server, url
    finally:
        await server.stop()


def client_for(url: str, **overrides: object) -> GolemClient:
    return GolemClient(make_config(url=url, **overrides))


async def test_the_default_transport_is_aiohttp_and_carries_method_path_headers_body() -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await server.read_request(reader)
            answer(writer, 200, "R-" + "a" * 64)
            await writer.drain()

    async with serving(echo) as (server, url), client_for(url) as client:
        assert isinstance(client._requester._http._transport, AiohttpTransport)
        demand = "d" * 32 + "-" + "e" * 64
        proposal = await client.market.counter_proposal(demand, "R-x/y?z", {"a.b": 1}, "(a=1)")
        again = await client.market.counter_proposal(demand, "R-2", {}, "(b=2)")
    assert proposal == again == "R-" + "a" * 64
    (line, headers, body), (line2, _, _) = server.requests
    # The id is quoted whole: it cannot add path segments or a query.
    assert line == f"POST /market-api/v1/demands/{demand}/proposals/R-x%2Fy%3Fz HTTP/1.1"
    assert line2.startswith(f"POST /market-api/v1/demands/{demand}/proposals/R-2 ")
    assert headers["authorization"] == f"Bearer {APP_KEY}"
    assert headers["content-type"] == "application/json"
    assert headers["accept-encoding"] == "identity"
    assert json.loads(body) == {"properties": {"a.b": 1}, "constraints": "(a=1)"}
    assert server.connections == 1  # kept alive and reused


async def test_a_refused_connection_is_an_unavailable_daemon_retried_for_gets() -> None:
    port = free_port()  # nothing listens there
    async with client_for(f"http://127.0.0.1:{port}", max_retries=2) as client:
        with pytest.raises(GolemUnavailable) as caught:
            await client.identity.me()
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


async def test_a_server_that_never_answers_is_a_timeout_within_the_request_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        await asyncio.sleep(30)

    async with (
        serving(silent) as (server, url),
        client_for(url, request_timeout=0.5, max_retries=0) as client,
    ):
        loop = asyncio.get_running_loop()
        began = loop.time()
        with pytest.raises(GolemTimeout):
            await client.identity.me()
        assert loop.time() - began < 3.0


async def test_a_hang_up_without_an_answer_is_retried_for_a_get_and_then_succeeds() -> None:
    async def flaky(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        if server.connections == 1:
            return  # closes the connection without answering
        answer(writer, 200, {"identity": "0x" + "ab" * 20, "name": "r", "role": "manager"})
        await writer.drain()

    async with serving(flaky) as (server, url), client_for(url, max_retries=2) as client:
        me = await client.identity.me()
    assert me.identity == "0x" + "ab" * 20
    assert server.connections == 2


async def test_a_hang_up_after_a_post_is_not_retried() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)

    async with serving(hang_up) as (server, url), client_for(url, max_retries=3) as client:
        with pytest.raises(GolemUnavailable):
            await client.market.subscribe_demand({}, "(a=1)")
    assert len(server.requests) == 1


async def test_an_error_answer_carries_the_daemons_message() -> None:
    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        answer(writer, 400, {"message": "Invalid constraints: bad"})
        await writer.drain()

    async with serving(refuse) as (server, url), client_for(url) as client:
        with pytest.raises(GolemBadRequest) as caught:
            await client.market.subscribe_demand({}, "((")
    assert caught.value.message == "Invalid constraints: bad"
