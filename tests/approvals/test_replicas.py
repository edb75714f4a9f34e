"""Several Airlock processes on one real Redis: decisions reach the replica holding the call,
pending approvals survive a restart, and a Redis outage mid-hold denies cleanly."""
from __future__ import annotations

import asyncio
import json

import pytest

from tests.approvals.test_e2e import Upstream, admin, config, mcp_client, pending_for, text
from tests.harness import Airlock

pytestmark = pytest.mark.timeout(400)          # each test starts up to three Airlock processes


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    up = Upstream(tmp_path_factory.mktemp("approvals-replicas"))
    yield up
    up.stop()


def shared(up, redis_url):
    cfg = config(up)
    cfg["store"] = {"redis": redis_url}
    return cfg


async def test_decision_on_one_replica_releases_the_other(upstream, redis_url, tmp_path):
    cfg = shared(upstream, redis_url)
    with Airlock(cfg, workdir=tmp_path / "a") as a, Airlock(cfg, workdir=tmp_path / "b") as b:
        token = a.mint("acme", subject="dev@example.com")
        async with mcp_client(a, token) as c:
            call = asyncio.create_task(c.call_tool("deploy", {"env": "production"}))
            item = await pending_for(b, "deploy", {"env": "production"})          # seen through B
            r = await admin(b, "POST", f"/v1/approvals/{item['id']}/approve", {"approver": "alice"})
            assert r.status_code == 200 and r.json()["state"] == "approved"
            result = await asyncio.wait_for(call, 20)                            # released on A
        assert text(result) == "deployed to production"


async def test_async_decision_while_replica_down_applies_on_retry(upstream, redis_url, tmp_path):
    cfg = shared(upstream, redis_url)
    before = len(upstream.calls())
    a = Airlock(cfg, workdir=tmp_path / "a").start()
    try:
        token = a.mint("acme", subject="dev@example.com")
        async with mcp_client(a, token) as c:
            first = await c.call_tool("drop_table", {"name": "sessions"})
        rid = json.loads(text(first).split(". ", 1)[1].split("} ", 1)[0] + "}")["request_id"]
    finally:
        a.stop()
    with Airlock(cfg, workdir=tmp_path / "b") as b:                 # A is down; B decides
        r = await admin(b, "POST", f"/v1/approvals/{rid}/approve", {"approver": "alice"})
        assert r.json()["state"] == "approved"
    a2 = Airlock(cfg, workdir=tmp_path / "a").start()               # A comes back: the retry runs once
    try:
        async with mcp_client(a2, token) as c:
            done = await c.call_tool("drop_table", {"name": "sessions"})
            assert not done.is_error and text(done) == "dropped sessions"
    finally:
        a2.stop()
    assert [x for x in upstream.calls()[before:] if x["tool"] == "drop_table"] == [
        {"tool": "drop_table", "args": {"name": "sessions"}}]


async def test_redis_stopped_mid_hold_denies_cleanly(upstream, own_redis, tmp_path):
    before = len(upstream.calls())
    with Airlock(shared(upstream, own_redis.url), workdir=tmp_path / "a") as a:
        token = a.mint("acme", subject="dev@example.com")
        async with mcp_client(a, token) as c:
            call = asyncio.create_task(c.call_tool("deploy", {"env": "production"}))
            await pending_for(a, "deploy", {"env": "production"})
            own_redis.stop()
            result = await asyncio.wait_for(call, 60)
        assert result.is_error and "unavailable" in text(result) and "not run" in text(result)
        assert a.proc.poll() is None                                   # still serving
    assert len(upstream.calls()) == before


async def test_pending_request_survives_restart_with_embedded_store(upstream, tmp_path):
    cfg = config(upstream)                                          # no Redis: the in-process store + its snapshot
    before = len(upstream.calls())
    a = Airlock(cfg, workdir=tmp_path / "a").start()
    try:
        token = a.mint("acme", subject="dev@example.com")
        async with mcp_client(a, token) as c:
            first = await c.call_tool("drop_table", {"name": "audit_tmp"})
        rid = json.loads(text(first).split(". ", 1)[1].split("} ", 1)[0] + "}")["request_id"]
    finally:
        a.stop()
    with Airlock(cfg, workdir=tmp_path / "a") as a2:                # same data dir, new process
        pending = (await admin(a2, "GET", "/v1/approvals")).json()["approvals"]
        assert rid in [p["id"] for p in pending]
        assert (await admin(a2, "POST", f"/v1/approvals/{rid}/approve", {"approver": "alice"})).json()["state"] == \
            "approved"
        async with mcp_client(a2, token) as c:
            done = await c.call_tool("drop_table", {"name": "audit_tmp"})
        assert not done.is_error and text(done) == "dropped audit_tmp"
    assert [x for x in upstream.calls()[before:] if x["tool"] == "drop_table"] == [
        {"tool": "drop_table", "args": {"name": "audit_tmp"}}]
