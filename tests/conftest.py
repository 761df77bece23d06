"""Shared test configuration."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Iterator

import pytest
from browser_helpers import require_browser
from hang_report import pytest_runtest_protocol  # noqa: F401  (a hook: print tasks before a timeout)
from redis_helpers import RedisServer, running_redis


@pytest.fixture
def chromium_path() -> str:
    """Debian's chromium (skips or fails as require_browser says)."""
    return require_browser("chromium")


@pytest.fixture
def firefox_path() -> str:
    """Debian's firefox-esr (skips or fails as require_browser says)."""
    return require_browser("firefox")


@pytest.fixture(params=["chromium", "firefox"])
def engine(request: pytest.FixtureRequest) -> tuple[str, str]:
    """Each browser engine in turn, with its binary: (name, path)."""
    return request.param, require_browser(request.param)


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes a test starts; any still running at its end are killed."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=5)


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real redis-server for the tests of one module (started only if one asks)."""
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
async def redis_url(redis_server: RedisServer) -> AsyncIterator[str]:
    """redis_server, emptied for each test."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_server.url)
    await client.flushall()
    await client.aclose()
    yield redis_server.url
