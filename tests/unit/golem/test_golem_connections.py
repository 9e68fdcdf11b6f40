"""Connection reuse of the client's request path against a loopback server that acts like yagna.

yagna 0.17.6 answers 401 before reading a POST body and then leaves that keep-alive connection
hanging: the next request on it never gets an answer. `StubbornDaemon` does the same (on
127.0.0.1, a real socket, no mocks), so these tests show that the client drops a connection
after an error answer to a request with a body, and still reuses connections otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import pytest
from golem_fakes import APP_KEY, make_config

from golem_operator.golem import GolemClient, GolemNotFound, GolemUnauthorized

ME = {"identity": "0x" + "ab" * 20, "name": "requestor", "role": "manager"}


class StubbornDaemon:
    """HTTP/1.1 keep-alive server: 401 without reading the body, then silence on that socket."""

    def __init__(self) -> None:
        self.connections = 0
        self.requests: list[str] = []
        self._server: asyncio.Server | None = None

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        with contextlib.suppress(Exception):
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                request_line, *header_lines = head.split("\r\n")
                method, path, _ = request_line.split(" ", 2)
                headers = {
                    name.strip().lower(): value.strip()
                    for name, _, value in (line.partition(":") for line in header_lines if line)
                }
                self.requests.append(f"{method} {path}")
                length = int(headers.get("content-length", "0"))
                if headers.get("authorization") != f"Bearer {APP_KEY}":
                    self._answer(writer, 401, b"Invalid application key", "text/plain")
                    await writer.drain()
                    if length:
                        await reader.read()  # the unread body: never answered again
                        return
                    continue
                await reader.readexactly(length)
                if path == "/me":
                    self._answer(writer, 200, json.dumps(ME).encode(), "application/json")
                elif method == "POST":
                    body = json.dumps({"message": "Json deserialize error"}).encode()
                    self._answer(writer, 400, body, "application/json")
                else:
                    body = json.dumps({"message": f"{path} not found"}).encode()
                    self._answer(writer, 404, body, "application/json")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    @staticmethod
    def _answer(writer: asyncio.StreamWriter, status: int, body: bytes, content_type: str) -> None:
        head = (
            f"HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\n"
            f"content-length: {len(body)}\r\n\r\n"
        )
        writer.write(head.encode() + body)


@pytest.fixture
async def stubborn() -> AsyncIterator[tuple[StubbornDaemon, str]]:
    daemon = StubbornDaemon()
    url = await daemon.start()
    yield daemon, url
    await daemon.stop()


def _client(url: str, app_key: str = APP_KEY) -> GolemClient:
    return GolemClient(make_config(url=url, app_key=app_key, request_timeout=2.0, max_retries=0))


async def test_a_refused_post_body_does_not_leave_a_hanging_connection(
    stubborn: tuple[StubbornDaemon, str],
) -> None:
    daemon, url = stubborn
    properties = {"golem.pad": "x" * 8000}  # large enough that yagna leaves it unread
    async with _client(url, app_key="f" * 32) as client:
        with pytest.raises(GolemUnauthorized):
            await client.market.subscribe_demand(properties, "(a=1)")
        # On the old connection this would wait for the 2 s deadline and raise GolemTimeout.
        async with asyncio.timeout(1.5):
            with pytest.raises(GolemUnauthorized) as caught:
                await client.identity.me()
    assert caught.value.message == "Invalid application key"
    assert daemon.connections == 2
    assert daemon.requests == ["POST /market-api/v1/demands", "GET /me"]


async def test_any_error_answer_to_a_body_drops_the_connection(
    stubborn: tuple[StubbornDaemon, str],
) -> None:
    daemon, url = stubborn
    async with _client(url) as client:
        assert (await client.identity.me()).identity == ME["identity"]
        with pytest.raises(Exception, match="Json deserialize error"):
            await client.market.subscribe_demand({}, "(a=1)")
        assert (await client.identity.me()).identity == ME["identity"]
    assert daemon.connections == 2


async def test_connections_are_reused_after_successes_and_bodiless_errors(
    stubborn: tuple[StubbornDaemon, str],
) -> None:
    daemon, url = stubborn
    async with _client(url) as client:
        await client.identity.me()
        with pytest.raises(GolemNotFound):
            await client.payment.get_allocation("00000000-0000-0000-0000-000000000000")
        await client.identity.me()
    assert daemon.connections == 1
    assert len(daemon.requests) == 3
