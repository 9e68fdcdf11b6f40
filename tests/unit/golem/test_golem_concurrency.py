"""Bounded concurrency of the client against a real loopback HTTP server.

A burst of calls must reach the daemon at most `max_concurrent_requests` at a time, queue in
the client without timing out, and never be held up by long polls (counted apart).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import pytest
from golem_fakes import make_config

from golem_operator.golem import GolemClient, GolemConfig
from golem_operator.golem.errors import GolemConfigError
from golem_operator.golem.transport import RequestSlots

DEMAND = "d" * 32 + "-" + "e" * 64


class CountingServer:
    """HTTP/1.1 keep-alive server: ordinary calls answer after `delay`; event polls are held
    until `release` is set. It records how many of each were open at once."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.release = asyncio.Event()
        self.open_calls = 0
        self.peak_calls = 0
        self.open_polls = 0
        self.peak_polls = 0
        self.answered = 0
        #: Set whenever the number of held polls changes.
        self.polls_changed = asyncio.Event()
        self._server: asyncio.Server | None = None

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, backlog=4096)
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def held_polls(self, count: int) -> None:
        async with asyncio.timeout(5.0):
            while self.open_polls < count:
                self.polls_changed.clear()
                await self.polls_changed.wait()

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        with contextlib.suppress(Exception):
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                line, *lines = head.split("\r\n")
                length = 0
                for item in lines:
                    name, _, value = item.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                await reader.readexactly(length)
                if "/events" in line:
                    self.open_polls += 1
                    self.peak_polls = max(self.peak_polls, self.open_polls)
                    self.polls_changed.set()
                    try:
                        await self.release.wait()
                    finally:
                        self.open_polls -= 1
                    body: object = []
                else:
                    self.open_calls += 1
                    self.peak_calls = max(self.peak_calls, self.open_calls)
                    try:
                        await asyncio.sleep(self.delay)
                    finally:
                        self.open_calls -= 1
                    body = "R-" + "a" * 64
                data = json.dumps(body).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    + f"content-length: {len(data)}\r\n\r\n".encode()
                    + data
                )
                await writer.drain()
                self.answered += 1
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def serving(delay: float) -> AsyncIterator[tuple[CountingServer, str]]:
    server = CountingServer(delay)
    url = await server.start()
    try:
        yield server, url
    finally:
        server.release.set()
        await server.stop()


async def counter(client: GolemClient, n: int) -> str:
    return await client.market.counter_proposal(DEMAND, f"R-{n}", {"a": n}, "(a=1)")


async def test_a_burst_reaches_the_daemon_at_most_the_bound_at_a_time_and_all_succeed() -> None:
    async with (
        serving(delay=0.05) as (server, url),
        # The whole burst takes ~1.25 s, longer than one call may: queueing is not a timeout.
        GolemClient(
            make_config(url=url, max_concurrent_requests=8, request_timeout=0.5, max_retries=0)
        ) as client,
    ):
        calls = [asyncio.create_task(counter(client, n)) for n in range(200)]
        await asyncio.sleep(0.2)
        queued_mid_burst = client.queued_requests
        active_mid_burst = client.active_requests
        results = await asyncio.gather(*calls)
        assert client.queued_requests == 0
        assert client.active_requests == 0
    assert results == ["R-" + "a" * 64] * 200
    assert server.answered == 200
    assert server.peak_calls == 8  # the bound is both held and used
    assert queued_mid_burst > 100
    assert active_mid_burst == 8


async def test_without_a_tight_bound_the_same_burst_is_all_at_once() -> None:
    # The control: what the bound prevents (the server sees the whole burst open).
    async with (
        serving(delay=0.2) as (server, url),
        GolemClient(make_config(url=url, max_concurrent_requests=1000)) as client,
    ):
        await asyncio.gather(*(counter(client, n) for n in range(100)))
    assert server.peak_calls > 50


async def test_long_polls_do_not_take_the_slots_of_ordinary_calls() -> None:
    async with (
        serving(delay=0.01) as (server, url),
        GolemClient(make_config(url=url, max_concurrent_requests=2)) as client,
    ):
        polls = [
            asyncio.create_task(client.market.collect_demand_events(DEMAND, timeout=5.0))
            for _ in range(6)
        ]
        await server.held_polls(6)
        # Six polls are held by the daemon, and ordinary calls still go through at once.
        async with asyncio.timeout(2.0):
            done = await asyncio.gather(*(counter(client, n) for n in range(10)))
        assert len(done) == 10
        assert server.open_polls == 6
        server.release.set()
        assert await asyncio.gather(*polls) == [[]] * 6


async def test_long_polls_have_their_own_bound_when_one_is_set() -> None:
    async with (
        serving(delay=0.01) as (server, url),
        GolemClient(
            make_config(url=url, max_concurrent_requests=2, max_concurrent_long_polls=3)
        ) as client,
    ):
        polls = [
            asyncio.create_task(client.market.collect_demand_events(DEMAND, timeout=5.0))
            for _ in range(7)
        ]
        await server.held_polls(3)
        await asyncio.sleep(0.2)
        assert server.open_polls == 3
        assert client.queued_requests == 4
        # A long poll's wait for a slot is no timeout either: all seven answer once released.
        server.release.set()
        assert await asyncio.gather(*polls) == [[]] * 7
    assert server.peak_polls == 3


async def test_slots_are_freed_when_a_waiting_call_is_cancelled() -> None:
    slots = RequestSlots(1)
    entered = asyncio.Event()
    hold = asyncio.Event()

    async def holder() -> None:
        async with slots.hold():
            entered.set()
            await hold.wait()

    first = asyncio.create_task(holder())
    await entered.wait()
    waiting = asyncio.create_task(holder())
    await asyncio.sleep(0.01)
    assert slots.queued == 1
    waiting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiting
    assert slots.queued == 0
    hold.set()
    await first
    assert slots.active == 0
    async with asyncio.timeout(1.0), slots.hold():  # the slot is free again
        assert slots.active == 1


def test_the_bounds_come_from_the_environment_and_are_checked() -> None:
    env = {
        "YAGNA_APPKEY": "k" * 16,
        "GOLEM_MAX_CONCURRENT_REQUESTS": "16",
        "GOLEM_MAX_CONCURRENT_LONG_POLLS": "100",
    }
    config = GolemConfig.from_env(env)
    assert (config.max_concurrent_requests, config.max_concurrent_long_polls) == (16, 100)
    assert GolemConfig.from_env({"YAGNA_APPKEY": "k" * 16}).max_concurrent_requests == 256
    with pytest.raises(GolemConfigError, match="GOLEM_MAX_CONCURRENT_REQUESTS"):
        GolemConfig.from_env({**env, "GOLEM_MAX_CONCURRENT_REQUESTS": "0"})
