"""The approval service against both stores: the same suite for memory and real Redis."""
from __future__ import annotations

import asyncio
import time

import pytest

from proxy.approvals.model import REDACTED, fingerprint
from proxy.approvals.service import ApprovalService, StoreUnavailable
from proxy.approvals.settings import Settings
from proxy.policy import Workflow
from proxy.store.redis import RedisStore

from tests.approvals.approvals_helpers import WORKFLOWS, wait_for


async def make(service, wf="one", **kw):
    kw.setdefault("subject", "dev@example.com")
    kw.setdefault("agent", "claude-code")
    return await service.create(tool="deploy", server="ops", workflow=WORKFLOWS[wf],
                                arguments=kw.pop("arguments", {"env": "production"}), rule="tools[0]", **kw)


async def test_create_and_read_back(service, audit):
    req = await make(service, arguments={"env": "prod", "api_key": "sk-verysecretvalue1234567890",
                                         "note": "use Bearer abcdefghijklmnopqrstuvwxyz"},
                     justification="release 1.2", account="acme")
    got = await service.get(req.id)
    assert got.state == "pending" and got.tool == "deploy" and got.server == "ops"
    assert got.account == "acme" and got.justification == "release 1.2" and got.rule == "tools[0]"
    assert got.expires_at - got.created_at == pytest.approx(30, abs=0.01)
    assert [r.id for r in await service.list()] == [req.id]
    assert audit.of("approval.created")[0]["approval_id"] == req.id


async def test_arguments_are_redacted_by_the_addon_helper():
    from proxy.approvals.model import redact
    out = redact({"env": "prod", "api_key": "x1", "nested": {"password": "p"},
                  "cmd": "curl -H 'Authorization: Bearer abcdefghijklmnop12345'"})
    assert out["env"] == "prod" and out["api_key"] == REDACTED and out["nested"]["password"] == REDACTED
    assert "abcdefghijklmnop12345" not in out["cmd"]


async def test_single_approval_releases_waiter(service, audit):
    req = await make(service)
    waiter = asyncio.create_task(service.wait(req.id, 20))
    await asyncio.sleep(0)
    res = await service.vote(req.id, "alice", "approve", "ok")
    assert res.status == "decided" and res.state == "approved"
    assert await asyncio.wait_for(waiter, 5) == "approved"
    got = await service.get(req.id)
    assert got.decided_by == "alice" and [v.approver for v in got.votes] == ["alice"]
    assert got.votes[0].comment == "ok"
    assert service.waiting == 0
    assert "approval.decided" in audit.kinds()
    assert await service.list() == []                       # no longer pending
    assert [r.id for r in await service.list(state=None)] == [req.id]


async def test_decision_before_wait_is_seen(service):
    req = await make(service)
    await service.vote(req.id, "alice", "deny", "no")
    assert await service.wait(req.id, 5) == "denied"


async def test_quorum_needs_two_distinct_approvers(service):
    req = await make(service, "quorum")
    r1 = await service.vote(req.id, "Alice@example.com", "approve")
    assert r1.status == "recorded" and r1.state == "pending"
    assert (await service.vote(req.id, "alice@example.com ", "approve")).status == "duplicate"
    assert (await service.vote(req.id, "mallory@example.com", "approve")).status == "not_allowed"
    r2 = await service.vote(req.id, "bob@example.com", "approve")
    assert r2.status == "decided" and r2.state == "approved"
    assert (await service.vote(req.id, "carol@example.com", "deny")).status == "closed"


async def test_requester_cannot_approve_own_call(service):
    req = await make(service, subject="dev@example.com", agent="bot")
    assert (await service.vote(req.id, "DEV@example.com", "approve")).status == "self"
    assert (await service.vote(req.id, "bot", "approve")).status == "self"
    assert (await service.get(req.id)).state == "pending"


async def test_one_deny_decides(service):
    req = await make(service, "quorum")
    await service.vote(req.id, "alice@example.com", "approve")
    res = await service.vote(req.id, "bob@example.com", "deny", "too risky")
    assert res.state == "denied"
    assert (await service.get(req.id)).decided_by == "bob@example.com"


async def test_invalid_votes(service):
    req = await make(service)
    assert (await service.vote(req.id, "", "approve")).status == "invalid"
    assert (await service.vote(req.id, "alice", "maybe")).status == "invalid"
    assert (await service.vote("apr_nope", "alice", "approve")).status == "missing"


async def test_concurrent_votes_reach_quorum_once(store, audit):
    wf = Workflow(name="q3", timeout_seconds=30, required_approvals=3)
    svc = ApprovalService(store, audit, Settings(sweep_seconds=0.1))
    await svc.start()
    try:
        req = await svc.create(tool="t", server=None, workflow=wf, subject="req")
        results = await asyncio.gather(*(svc.vote(req.id, f"user{i}", "approve") for i in range(12)))
        assert sum(r.status == "decided" for r in results) == 1
        assert sum(r.status == "recorded" for r in results) == 2
        assert sum(r.status == "closed" for r in results) == 9
        assert len(audit.of("approval.decided")) == 1
        assert len((await svc.get(req.id)).votes) == 3
    finally:
        await svc.close()


async def test_timeout_expires_and_denies(service, audit):
    req = await make(service, "short")
    t0 = time.monotonic()
    assert await service.wait(req.id, 10) == "expired"      # the sweeper expires it at ~1 s
    assert time.monotonic() - t0 < 9
    got = await service.get(req.id)
    assert got.state == "expired" and got.decided_by == "timeout"
    # the sweeper audits the expiry after publishing it: the waiter may wake first (Redis)
    assert await wait_for(lambda: audit.of("approval.expired"))
    assert audit.of("approval.expired")[0]["approval_id"] == req.id
    assert (await service.vote(req.id, "alice", "approve")).status in ("closed", "expired")


async def test_on_timeout_approve(service):
    req = await make(service, "short-approve")
    assert await service.wait(req.id, 10) == "approved"


async def test_wait_deadline_expires_without_sweeper(store, audit):
    svc = ApprovalService(store, audit, Settings(sweep_seconds=3600))
    await svc.start()
    try:
        req = await svc.create(tool="t", server=None, workflow=WORKFLOWS["one"])
        assert await svc.wait(req.id, 0.2) == "expired"
    finally:
        await svc.close()


async def test_cancel(service, audit):
    req = await make(service)
    waiter = asyncio.create_task(service.wait(req.id, 20))
    await asyncio.sleep(0)
    assert await service.cancel(req.id, "client disconnected")
    assert await asyncio.wait_for(waiter, 5) == "cancelled"
    assert not await service.cancel(req.id, "again")
    assert audit.of("approval.cancelled")[0]["reason"] == "client disconnected"


async def test_async_call_consumed_once(service):
    fp = fingerprint("deploy", "ops", {"env": "production"}, "acme", "dev", "bot")
    req = await make(service, fingerprint=fp)
    assert (await service.find_call(fp)).id == req.id
    await service.vote(req.id, "alice", "approve")
    results = await asyncio.gather(*(service.consume(req.id) for _ in range(5)))
    assert results.count(True) == 1
    await service.forget_call(fp)
    assert await service.find_call(fp) is None


class Notes:
    """Collects what the service asks its notifier to send."""

    def __init__(self):
        self.sent = []
        self.decisions = []

    async def notify(self, req, workflow, channels, escalation):
        self.sent.append((req.id, tuple(channels), escalation))

    async def decided(self, req, workflow):
        self.decisions.append((req.id, req.state))


async def test_escalation_notifies_and_widens_approvers(store, audit):
    wf = Workflow(name="esc", timeout_seconds=30, approvers=("alice",), channels=("slack",),
                  escalation=({"after_seconds": 1, "channels": ["email"], "approvers": ["boss"]},))
    notes = Notes()
    svc = ApprovalService(store, audit, Settings(sweep_seconds=0.1), notifier=notes, workflows={"esc": wf}.get)
    await svc.start()
    try:
        req = await svc.create(tool="t", server=None, workflow=wf, subject="dev")
        assert (await svc.vote(req.id, "boss", "approve")).status == "not_allowed"
        deadline = time.monotonic() + 10
        while len(notes.sent) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert notes.sent[0][:2] == (req.id, ("slack",))
        assert notes.sent[1][1] == ("email",) and notes.sent[1][2]["approvers"] == ["boss"]
        assert audit.of("approval.escalated")[0]["approval_id"] == req.id
        assert (await svc.vote(req.id, "boss", "approve")).state == "approved"
        deadline = time.monotonic() + 5
        while not notes.decisions and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert notes.decisions == [(req.id, "approved")]
    finally:
        await svc.close()


async def test_two_replicas_share_decisions(own_redis, audit):
    """A decision taken through one process's service releases a call held by another's."""
    s1, s2 = RedisStore(own_redis.url), RedisStore(own_redis.url)
    a = ApprovalService(s1, audit, Settings(sweep_seconds=0.1), workflows=WORKFLOWS.get)
    b = ApprovalService(s2, audit, Settings(sweep_seconds=0.1), workflows=WORKFLOWS.get)
    await a.start()
    await b.start()
    try:
        req = await a.create(tool="t", server=None, workflow=WORKFLOWS["quorum"], subject="dev")
        waiter = asyncio.create_task(a.wait(req.id, 20))
        assert (await b.vote(req.id, "alice@example.com", "approve")).status == "recorded"
        assert (await a.vote(req.id, "alice@example.com", "approve")).status == "duplicate"
        assert (await b.vote(req.id, "carol@example.com", "approve")).state == "approved"
        assert await asyncio.wait_for(waiter, 10) == "approved"
    finally:
        await a.close()
        await b.close()
        await s1.close()
        await s2.close()


async def test_redis_down_mid_hold_fails_cleanly(own_redis, audit):
    store = RedisStore(own_redis.url)
    svc = ApprovalService(store, audit, Settings(sweep_seconds=0.1), workflows=WORKFLOWS.get)
    await svc.start()
    try:
        req = await svc.create(tool="t", server=None, workflow=WORKFLOWS["one"], subject="dev")
        waiter = asyncio.create_task(svc.wait(req.id, 25))
        await asyncio.sleep(0)
        own_redis.stop()
        with pytest.raises(StoreUnavailable):
            await asyncio.wait_for(waiter, 20)
        assert audit.of("approval.error")
    finally:
        await svc.close()
        await store.close()


def test_settings_errors_name_the_key():
    from proxy.config import ConfigError, from_dict
    ok = Settings.from_config(from_dict({"approvals": {"keepalive_seconds": 2, "channels": {
        "ops": {"type": "slack", "url": "https://hooks.slack.com/services/x"}}}}))
    assert ok.keepalive_seconds == 2 and ok.channels["ops"]["type"] == "slack"
    for bad, where in [({"bogus": 1}, "approvals.bogus"), ({"sweep_seconds": -1}, "approvals.sweep_seconds"),
                       ({"channels": {"x": {"type": "pager"}}}, "approvals.channels.x.type"),
                       ({"channels": {"mail": {"type": "email"}}}, "approvals.channels.mail"),
                       ({"public_url": "ftp://x"}, "approvals.public_url")]:
        with pytest.raises(ConfigError, match=where.replace(".", r"\.")):
            Settings.from_config(from_dict({"approvals": bad}))
