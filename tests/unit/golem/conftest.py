"""Fixtures for the Golem client's unit tests (see golem_fakes for the scripted daemon)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from golem_fakes import FakeDaemon, make_config

from golem_operator.golem import GolemClient


@pytest.fixture
def daemon() -> FakeDaemon:
    return FakeDaemon()


@pytest.fixture
async def client(daemon: FakeDaemon) -> AsyncIterator[GolemClient]:
    async with GolemClient(make_config(), transport=httpx.MockTransport(daemon.handle)) as c:
        yield c
