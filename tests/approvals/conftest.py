"""Fixtures for the approvals tests: both stores (real redis-server), a recording audit sink."""
from __future__ import annotations

import pytest

from proxy.approvals.service import ApprovalService
from proxy.approvals.settings import Settings
from proxy.policy import Workflow
from proxy.store.memory import MemoryStore
from proxy.store.redis import RedisStore

from tests.approvals.approvals_helpers import WORKFLOWS
from tests.harness import RecordingAudit, RedisServer, free_port  # noqa: F401 - re-exported for the tests here


@pytest.fixture
def own_redis():
    """A redis-server of this test alone (tests that stop it mid-hold)."""
    srv = RedisServer().start()
    yield srv
    srv.stop()


@pytest.fixture
def audit():
    return RecordingAudit()


@pytest.fixture(params=["memory", "redis"])
async def store(request):
    if request.param == "memory":
        s = MemoryStore()
        yield s
        await s.close()
    else:
        url = request.getfixturevalue("redis_url").rsplit("/", 1)[0] + "/14"   # a db of our own: flushed per test
        import redis
        with redis.Redis.from_url(url) as r:
            r.flushdb()
        s = RedisStore(url)
        await s.start()
        yield s
        await s.close()




@pytest.fixture
async def service(store, audit):
    svc = ApprovalService(store, audit, Settings(sweep_seconds=0.1), workflows=WORKFLOWS.get)
    await svc.start()
    yield svc
    await svc.close()
