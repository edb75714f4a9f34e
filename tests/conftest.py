"""Shared fixtures: real redis-server, aimock and the replay upstream, started once per session."""
from __future__ import annotations

import pytest

from tests.harness import Aimock, Airlock, RedisServer, free_port  # noqa: F401 - re-exported for tests
from tests.upstreams import Upstream


@pytest.fixture(scope="session")
def redis_server():
    with RedisServer() as r:
        yield r


@pytest.fixture(scope="session")
def redis_url(redis_server) -> str:
    return redis_server.url


@pytest.fixture(scope="session")
def aimock():
    m = Aimock().start()
    yield m
    m.stop()


@pytest.fixture(scope="session")
def replay_upstream():
    up = Upstream().start()
    yield up
    up.stop()


@pytest.fixture
def airlock_factory(tmp_path):
    """Start Airlocks with a config dict; all are stopped at the end of the test."""
    started: list[Airlock] = []

    def make(config: dict | None = None, env: dict | None = None, args: list[str] | None = None,
             name: str = "a") -> Airlock:
        a = Airlock(config, env=env, workdir=tmp_path / f"airlock-{name}-{len(started)}", args=args)
        started.append(a)
        return a.start()

    yield make
    for a in started:
        a.stop()
