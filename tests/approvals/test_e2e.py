"""Held MCP calls end to end: the official ``mcp`` SDK client -> a running Airlock -> a real
MCP server, decided through the admin API, the CLI and signed links."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from tests.harness import Airlock, free_port, port_open, run_cli, wait_until

HERE = Path(__file__).resolve().parent
POLICY = HERE / "policy.yaml"


class Upstream:
    def __init__(self, tmp: Path, json_response: bool = False):
        self.port = free_port()
        self.record = tmp / f"calls-{self.port}.jsonl"
        self.record.touch()
        self.proc = subprocess.Popen([sys.executable, str(HERE / "mcp_upstream.py"), str(self.port), str(self.record)]
                                     + (["json"] if json_response else []),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: port_open(self.port), 30, "MCP upstream")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def calls(self) -> list[dict]:
        return [json.loads(x) for x in self.record.read_text().splitlines() if x.strip()]

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


def config(up: Upstream, **approvals) -> dict:
    return {"policies": [str(POLICY)], "limits": {"drain_seconds": 1},
            "mcp_servers": {"up": {"url": up.url}},
            "approvals": {"keepalive_seconds": 0.3, "sweep_seconds": 0.2, **approvals}}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("approvals-e2e")
    up = Upstream(tmp)
    try:
        with Airlock(config(up), workdir=tmp / "airlock") as a:
            yield a, up, a.mint("acme", subject="dev@example.com", agent="pytest")
    finally:
        up.stop()


def mcp_client(a: Airlock, token: str, mode: str = "legacy") -> Client:
    http = create_mcp_http_client(headers={"authorization": f"Bearer {token}"})
    return Client(streamable_http_client(f"{a.gateway_url}/mcp/up", http_client=http), mode=mode)


async def admin(a: Airlock, method: str, path: str, body=None) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as c:
        return await c.request(method, a.admin_url + path, json=body, headers=a.admin_headers)


async def pending_for(a: Airlock, tool: str, args: dict, timeout: float = 45) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for item in (await admin(a, "GET", "/v1/approvals")).json()["approvals"]:
            if item["tool"] == tool and item["arguments"] == args:
                return item
        await asyncio.sleep(0.05)
    raise TimeoutError(f"no pending approval for {tool} {args}")


def text(result) -> str:
    return result.content[0].text


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_sync_hold_released_by_approval(env, mode):
    a, up, token = env
    before = len(up.calls())
    async with mcp_client(a, token, mode) as c:
        call = asyncio.create_task(c.call_tool("deploy", {"env": "production", "justification": "release 7"}))
        item = await pending_for(a, "deploy", {"env": "production"})
        assert item["justification"] == "release 7" and item["subject"] == "dev@example.com"
        assert item["rule"] == "prod-needs-human" and item["workflow"] == "sync-one"
        assert not call.done() and len(up.calls()) == before            # held: the upstream saw nothing
        r = await admin(a, "POST", f"/v1/approvals/{item['id']}/approve", {"approver": "alice", "comment": "go"})
        assert r.status_code == 200 and r.json()["state"] == "approved"
        result = await asyncio.wait_for(call, 20)
        assert not result.is_error and text(result) == "deployed to production"
        assert (await c.call_tool("echo", {"text": "after"})).content[0].text == "after"
    assert up.calls()[before:][0] == {"tool": "deploy", "args": {"env": "production"}}
    shown = (await admin(a, "GET", f"/v1/approvals/{item['id']}")).json()
    assert shown["state"] == "approved" and shown["decided_by"] == "alice"
    assert await _poll(lambda: _outcome(a, item["id"]))


async def _outcome(a, rid):
    return ((await admin(a, "GET", f"/v1/approvals/{rid}")).json().get("outcome") or "").startswith("forwarded")


async def _poll(coro_fn, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await coro_fn():
            return True
        await asyncio.sleep(0.05)
    return False


async def test_sync_deny_with_comment_reaches_the_agent(env):
    a, up, token = env
    before = len(up.calls())
    async with mcp_client(a, token) as c:
        call = asyncio.create_task(c.call_tool("deploy", {"env": "production"}))
        item = await pending_for(a, "deploy", {"env": "production"})
        r = await admin(a, "POST", f"/v1/approvals/{item['id']}/deny", {"approver": "bob", "comment": "freeze week"})
        assert r.json()["state"] == "denied"
        result = await asyncio.wait_for(call, 20)
    assert result.is_error and "denied" in text(result) and "freeze week" in text(result) and item["id"] in text(result)
    assert len(up.calls()) == before


async def test_progress_notifications_keep_the_call_alive(env):
    a, up, token = env
    seen: list[float] = []

    async def progress(value, total, message):
        seen.append(value)

    async with mcp_client(a, token) as c:
        call = asyncio.create_task(c.call_tool("deploy", {"env": "production"}, progress_callback=progress))
        item = await pending_for(a, "deploy", {"env": "production"})
        deadline = time.monotonic() + 15
        while len(seen) < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert len(seen) >= 3 and seen == sorted(seen)                  # MCP progress must increase
        await admin(a, "POST", f"/v1/approvals/{item['id']}/approve", {"approver": "alice"})
        result = await asyncio.wait_for(call, 20)
    assert not result.is_error and text(result) == "deployed to production"


async def test_quorum_self_approval_and_cli(env):
    a, up, token = env
    env_cli = a.cli_env()
    async with mcp_client(a, token) as c:
        call = asyncio.create_task(c.call_tool("deploy", {"env": "staging"}))
        item = await pending_for(a, "deploy", {"env": "staging"})
        listed = await asyncio.to_thread(run_cli, "approvals", "list", "--json", env=env_cli)
        assert listed.returncode == 0 and item["id"] in [x["id"] for x in json.loads(listed.stdout)]
        table = await asyncio.to_thread(run_cli, "approvals", "list", env=env_cli)
        assert item["id"] in table.stdout and "0/2" in table.stdout
        own = await asyncio.to_thread(run_cli, "approvals", "approve", item["id"], "--as", "dev@example.com",
                                      env=env_cli)
        assert own.returncode != 0 and "cannot approve their own" in own.stderr and "Traceback" not in own.stderr
        first = await asyncio.to_thread(run_cli, "approvals", "approve", item["id"], "--as", "alice@example.com",
                                        "--comment", "looks fine", env=env_cli)
        assert first.returncode == 0 and "still pending" in first.stdout
        again = await asyncio.to_thread(run_cli, "approvals", "approve", item["id"], "--as", "alice@example.com",
                                        env=env_cli)
        assert again.returncode != 0 and "already voted" in again.stderr
        assert not call.done()
        second = await asyncio.to_thread(run_cli, "approvals", "approve", item["id"], "--as", "bob@example.com",
                                         env=env_cli)
        assert second.returncode == 0 and "approved" in second.stdout
        result = await asyncio.wait_for(call, 20)
        assert text(result) == "deployed to staging"
    shown = await asyncio.to_thread(run_cli, "approvals", "show", item["id"], env=env_cli)
    assert "alice@example.com: approve (looks fine)" in shown.stdout and "bob@example.com: approve" in shown.stdout
    missing = await asyncio.to_thread(run_cli, "approvals", "show", "apr_nope", env=env_cli)
    assert missing.returncode != 0 and "no approval request" in missing.stderr


async def test_timeout_denies(env):
    a, up, token = env
    before = len(up.calls())
    async with mcp_client(a, token) as c:
        result = await asyncio.wait_for(c.call_tool("deploy", {"env": "dev"}), 30)
    assert result.is_error and "in time" in text(result)
    assert len(up.calls()) == before


async def test_async_approval_runs_the_same_call_once(env):
    a, up, token = env
    before = len(up.calls())
    async with mcp_client(a, token) as c:
        tools = {t.name for t in (await c.list_tools()).tools}
        assert "airlock_approval_status" in tools and "drop_table" in tools
        first = await c.call_tool("drop_table", {"name": "users"})
        assert first.is_error and "pending_approval" in text(first)
        info = json.loads(text(first).split(". ", 1)[1].split("} ", 1)[0] + "}")
        rid = info["request_id"]
        assert info["status"] == "pending_approval" and info["poll_interval_seconds"] > 0
        again = await c.call_tool("drop_table", {"name": "users"})
        assert rid in text(again) and "still waiting" in text(again)
        status = json.loads(text(await c.call_tool("airlock_approval_status", {"request_id": rid})))
        assert status["status"] == "pending"
        r = await admin(a, "POST", f"/v1/approvals/{rid}/approve", {"approver": "alice", "comment": "ok once"})
        assert r.json()["state"] == "approved"
        status = json.loads(text(await c.call_tool("airlock_approval_status", {"request_id": rid})))
        assert status["status"] == "approved" and "same arguments" in status["instructions"]
        other = await c.call_tool("drop_table", {"name": "orders"})            # other arguments: not approved
        assert other.is_error and "pending_approval" in text(other)
        done = await c.call_tool("drop_table", {"name": "users"})
        assert not done.is_error and text(done) == "dropped users"
        third = await c.call_tool("drop_table", {"name": "users"})             # exactly once
        assert third.is_error and "pending_approval" in text(third) and rid not in text(third)
    assert [x for x in up.calls()[before:] if x["tool"] == "drop_table"] == [{"tool": "drop_table",
                                                                             "args": {"name": "users"}}]


async def test_client_disconnect_cancels(env):
    a, up, token = env
    body = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "deploy",
                                                                          "arguments": {"env": "production"}}}
    headers = {"authorization": f"Bearer {token}", "accept": "application/json, text/event-stream",
               "content-type": "application/json"}
    async with httpx.AsyncClient(timeout=2.0) as c:
        with pytest.raises(httpx.ReadTimeout):
            await c.post(f"{a.gateway_url}/mcp/up", json=body, headers=headers)
    item = (await admin(a, "GET", "/v1/approvals?state=all&limit=5")).json()["approvals"][0]
    assert item["tool"] == "deploy"

    async def cancelled():
        return (await admin(a, "GET", f"/v1/approvals/{item['id']}")).json()["state"] == "cancelled"
    assert await _poll(cancelled)
