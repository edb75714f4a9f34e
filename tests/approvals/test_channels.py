"""Links and channels with real receivers: an aiohttp webhook server, aiosmtpd for SMTP."""
from __future__ import annotations

import asyncio
import email
import email.policy
import hashlib
import hmac
import time

import orjson
import pytest
from aiohttp import web
from aiosmtpd.controller import Controller

from proxy.approvals.links import LinkError, LinkSigner
from proxy.approvals.notify import Notifier
from proxy.approvals.service import ApprovalService
from proxy.approvals.settings import Settings
from proxy.policy import Workflow
from proxy.store.memory import MemoryStore

from tests.approvals.approvals_helpers import wait_for
from tests.harness import free_port as _free_port


class Receiver:
    """An HTTP server recording every POST; answers the statuses queued in ``fail_first``."""

    def __init__(self, fail_first=()):
        self.hits: list[tuple[str, dict, bytes]] = []
        self.fail = list(fail_first)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    async def handle(self, request: web.Request):
        body = await request.read()
        self.hits.append((request.path, dict(request.headers), body))
        if self.fail:
            return web.Response(status=self.fail.pop(0))
        return web.Response(text="ok")

    async def __aenter__(self):
        app = web.Application()
        app.router.add_post("/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc):
        await self.runner.cleanup()


async def test_links_sign_expire_and_single_use(tmp_path):
    store = MemoryStore()
    signer = await LinkSigner.open(store, "https://airlock.example.com", tmp_path)
    assert (tmp_path / "approvals-link.key").stat().st_mode & 0o777 == 0o600
    tok = signer.token("apr_1", "approve", "alice", time.time() + 60)
    link = signer.parse(tok)
    assert (link.approval_id, link.decision, link.approver) == ("apr_1", "approve", "alice")
    assert await signer.use(link) and not await signer.use(link)
    with pytest.raises(LinkError, match="signature"):
        signer.parse(tok[:-2] + ("AA" if not tok.endswith("AA") else "BB"))
    with pytest.raises(LinkError, match="expired"):
        signer.parse(signer.token("apr_1", "deny", None, time.time() - 1))
    other = await LinkSigner.open(MemoryStore(), "https://x", tmp_path)   # same data dir, same secret
    assert other.parse(tok).approval_id == "apr_1"
    stranger = await LinkSigner.open(MemoryStore(), "https://x", tmp_path / "elsewhere")
    with pytest.raises(LinkError):
        stranger.parse(tok)


async def test_webhook_signed_retried_and_audited(audit, tmp_path, monkeypatch):
    monkeypatch.setenv("HOOK_SECRET", "s3cret-hook-key")
    async with Receiver(fail_first=[503, 500]) as rcv:
        settings = Settings(channels={"hooks": {"type": "webhook", "url": rcv.url + "/hook/abc",
                                                "secret_env": "HOOK_SECRET", "backoff_seconds": 0.01}})
        store = MemoryStore()
        links = await LinkSigner.open(store, "http://127.0.0.1:1", tmp_path)
        notifier = Notifier(settings, links, audit)
        wf = Workflow(name="wf", timeout_seconds=60, channels=("hooks",))
        svc = ApprovalService(store, audit, settings, notifier=notifier, workflows={"wf": wf}.get)
        await svc.start()
        try:
            req = await svc.create(tool="deploy", server="ops", workflow=wf, subject="dev",
                                   arguments={"env": "prod"}, justification="ship it")
            assert await wait_for(lambda: len(rcv.hits) == 3)
            path, headers, body = rcv.hits[-1]
            ts = headers["X-Airlock-Timestamp"]
            want = "sha256=" + hmac.new(b"s3cret-hook-key", ts.encode() + b"." + body, hashlib.sha256).hexdigest()
            assert hmac.compare_digest(headers["X-Airlock-Signature"], want)
            doc = orjson.loads(body)
            assert doc["event"] == "approval.requested" and doc["approval"]["id"] == req.id
            assert doc["approval"]["justification"] == "ship it"
            approve = [x for x in doc["links"] if x["decision"] == "approve"][0]
            assert links.parse(approve["url"].rsplit("/", 1)[1]).approval_id == req.id
            assert await wait_for(lambda: audit.of("approval.notify"))
            note = audit.of("approval.notify")[0]
            assert note["ok"] and note["attempts"] == 3 and note["target"] == rcv.url   # no path: it may hold a secret
            await svc.vote(req.id, "alice", "approve")
            assert await wait_for(lambda: len(rcv.hits) == 4)
            assert orjson.loads(rcv.hits[-1][2])["event"] == "approval.decided"
        finally:
            await svc.close()
            await notifier.close()


async def test_webhook_gives_up_and_reports(audit, tmp_path):
    async with Receiver(fail_first=[500] * 10) as rcv:
        settings = Settings(channels={"webhook": {"url": rcv.url, "retries": 2, "backoff_seconds": 0.01}})
        notifier = Notifier(settings, await LinkSigner.open(MemoryStore(), "http://x", tmp_path), audit)
        wf = Workflow(name="wf", channels=("webhook", "nowhere"))
        svc = ApprovalService(MemoryStore(), audit, settings)
        req = await svc.create(tool="t", server=None, workflow=wf)
        out = await notifier.notify(req, wf, list(wf.channels))
        await notifier.close()
        assert [d.ok for d in out] == [False, False] and out[0].attempts == 3 and out[0].status == 500
        assert "not configured" in out[1].error
        assert len(rcv.hits) == 3


async def test_slack_mattermost_ntfy_payloads(audit, tmp_path):
    async with Receiver() as rcv:
        settings = Settings(channels={
            "slack": {"url": rcv.url + "/slack"}, "mm": {"type": "mattermost", "url": rcv.url + "/mm"},
            "phone": {"type": "ntfy", "url": rcv.url, "topic": "ops", "approver": "alice"}})
        links = await LinkSigner.open(MemoryStore(), "https://airlock.example.com", tmp_path)
        notifier = Notifier(settings, links, audit)
        wf = Workflow(name="wf", channels=("slack", "mm", "phone"), approvers=("alice", "bob"))
        req = await ApprovalService(MemoryStore(), audit, settings).create(
            tool="drop_table", server="db", workflow=wf, subject="dev", justification="cleanup")
        out = await notifier.notify(req, wf, list(wf.channels))
        await notifier.close()
        assert all(d.ok for d in out), out
        by_path = {p: orjson.loads(b) for p, _, b in rcv.hits}
        slack = by_path["/slack"]
        buttons = [e for blk in slack["blocks"] if blk["type"] == "actions" for e in blk["elements"]]
        labels = [b["text"]["text"] for b in buttons]
        assert "Approve as alice" in labels and "Deny as bob" in labels
        assert "cleanup" in slack["blocks"][1]["text"]["text"]
        link = links.parse(buttons[0]["url"].rsplit("/", 1)[1])
        assert (link.approval_id, link.approver) == (req.id, "alice")
        mm = by_path["/mm"]
        assert mm["attachments"][0]["actions"][0]["integration"]["url"].startswith(
            "https://airlock.example.com/approvals/link/")
        ntfy = by_path["/"]
        assert ntfy["topic"] == "ops"
        http_actions = [a for a in ntfy["actions"] if a["action"] == "http"]
        assert [a["label"] for a in http_actions] == ["Approve", "Deny"] and http_actions[0]["method"] == "POST"
        assert links.parse(http_actions[1]["url"].rsplit("/", 1)[1]).decision == "deny"


class Mailbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append((envelope.rcpt_tos, msg["Subject"] + "\n" + msg.get_content()))
        return "250 OK"


async def test_email_over_real_smtp(audit, tmp_path):
    box = Mailbox()
    port = _free_port()
    ctl = Controller(box, hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        settings = Settings(channels={"email": {"host": "127.0.0.1", "port": port, "from": "airlock@example.com",
                                                "to": ["oncall@example.com"]}})
        links = await LinkSigner.open(MemoryStore(), "https://airlock.example.com", tmp_path)
        notifier = Notifier(settings, links, audit)
        wf = Workflow(name="wf", channels=("email",), approvers=("alice@example.com",))
        req = await ApprovalService(MemoryStore(), audit, settings).create(
            tool="deploy", server="ops", workflow=wf, subject="dev", arguments={"env": "prod"})
        out = await notifier.notify(req, wf, ["email"])
        await notifier.close()
        assert out[0].ok, out
        assert sorted(r for rcpts, _ in box.messages for r in rcpts) == ["alice@example.com", "oncall@example.com"]
        alice = [body for rcpts, body in box.messages if rcpts == ["alice@example.com"]][0]
        assert f"Approval needed: ops/deploy ({req.id})" in alice
        url = [ln.split()[-1] for ln in alice.splitlines() if ln.startswith("Approve:")][0]
        assert links.parse(url.rsplit("/", 1)[1]).approver == "alice@example.com"
        oncall = [body for rcpts, body in box.messages if rcpts == ["oncall@example.com"]][0]
        url = [ln.split()[-1] for ln in oncall.splitlines() if ln.startswith("Approve:")][0]
        assert links.parse(url.rsplit("/", 1)[1]).approver is None     # not an approver: the page asks
    finally:
        ctl.stop()
