"""The official MCP Python SDK through a running Airlock to real MCP servers.

Upstreams: the SDK's MCPServer over Streamable HTTP (SSE and JSON responses) and over the
legacy HTTP+SSE transport, each recording every body it receives; Airlock is the real
``airlock run`` process with tests/mcp/policy.yaml.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import anyio
import httpx
import httpx2
import pytest

from tests.harness import Airlock, free_port, port_open, wait_until
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

HERE = Path(__file__).resolve().parent
POLICY = HERE / "policy.yaml"


class Upstream:
    def __init__(self, transport: str, tmp: Path, json_response: bool = False):
        self.port = free_port()
        self.record = tmp / f"{transport}-{self.port}.jsonl"
        self.record.touch()
        args = [sys.executable, str(HERE / "mcp_server.py"), transport, str(self.port), str(self.record)]
        self.proc = subprocess.Popen(args + (["json"] if json_response else []),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: port_open(self.port), 30, f"MCP server ({transport})")

    def seen(self) -> list[dict]:
        rows = [json.loads(line) for line in self.record.read_text().splitlines() if line.strip()]
        out = []
        for r in rows:
            try:
                body = json.loads(r["body"]) if r["body"] else None
            except ValueError:
                continue
            out.extend(body if isinstance(body, list) else [body] if body else [])
        return out

    def calls(self) -> list[dict]:
        return [m["params"] for m in self.seen() if isinstance(m, dict) and m.get("method") == "tools/call"]

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mcp-e2e")
    ups = {"sse_resp": Upstream("streamable-http", tmp), "json_resp": Upstream("streamable-http", tmp, True),
           "legacy": Upstream("sse", tmp), "rug": Upstream("streamable-http", tmp)}
    cfg = {"policies": [str(POLICY)], "limits": {"drain_seconds": 2, "max_body_bytes": 1_000_000}, "mcp_servers": {
        "sse_resp": {"url": f"http://127.0.0.1:{ups['sse_resp'].port}/mcp"},
        "json_resp": {"url": f"http://127.0.0.1:{ups['json_resp'].port}/mcp"},
        "legacy": {"url": f"http://127.0.0.1:{ups['legacy'].port}"},
        "rug": {"url": f"http://127.0.0.1:{ups['rug'].port}/mcp"}}}
    try:
        with Airlock(cfg) as a:
            yield a, ups, a.mint("acme", subject="alice", agent="pytest")
    finally:
        for u in ups.values():
            u.stop()


def client(a, token, server, mode="legacy"):
    if server == "legacy":
        return Client(sse_client(f"{a.gateway_url}/mcp/legacy/sse", headers={"authorization": f"Bearer {token}"}))
    http = create_mcp_http_client(headers={"authorization": f"Bearer {token}"})
    return Client(streamable_http_client(f"{a.gateway_url}/mcp/{server}", http_client=http), mode=mode)


def text(result) -> str:
    return result.content[0].text


CASES = [("sse_resp", "legacy"), ("sse_resp", "auto"), ("json_resp", "legacy"), ("json_resp", "auto"),
         ("legacy", None)]


@pytest.mark.parametrize("server,mode", CASES)
def test_firewall_through_real_sdk(env, server, mode):
    a, ups, token = env
    up = ups[server]
    before = len(up.calls())

    async def main():
        async with client(a, token, server, mode) as c:
            tools = {t.name: t for t in (await c.list_tools()).tools}
            assert "secret_admin" not in tools and "delete_repo" not in tools     # disabled / always denied
            assert {"echo", "add", "deploy"} <= set(tools)
            just = tools["deploy"].input_schema["properties"]["justification"]
            assert "audited" in just["description"] and "justification" in tools["deploy"].input_schema["required"]
            assert "justification" not in tools["echo"].input_schema.get("required", [])

            r = await c.call_tool("echo", {"text": f"hello {server}", "justification": "user asked for it"})
            assert not r.is_error and text(r) == f"hello {server}"
            r = await c.call_tool("add", {"a": 2, "b": 40})
            assert not r.is_error and r.structured_content == {"total": 42}

            r = await c.call_tool("delete_repo", {"name": "prod-db"})
            assert r.is_error and "no-delete" in text(r) and "agents may not delete repositories" in text(r)
            r = await c.call_tool("echo", {"text": "a forbidden word"})
            assert r.is_error and "echo-forbidden" in text(r)
            r = await c.call_tool("deploy", {"env": "prod"})
            assert r.is_error and "justification" in text(r) and "again" in text(r)
            r = await c.call_tool("deploy", {"env": "prod", "justification": "release 1.2, ticket OPS-7"})
            assert not r.is_error and text(r) == "deployed to prod"
            r = await c.call_tool("echo", {"text": "still alive"})          # session still usable after refusals
            assert text(r) == "still alive"

    anyio.run(main)
    calls = up.calls()[before:]
    names = [c["name"] for c in calls]
    assert "delete_repo" not in names and names.count("deploy") == 1
    assert all("justification" not in (c.get("arguments") or {}) for c in calls)
    assert not any("forbidden" in json.dumps(c) for c in calls)
    assert [c["arguments"]["text"] for c in calls if c["name"] == "echo"] == [f"hello {server}", "still alive"]
    rows = a.admin("GET", "/v1/mcp/tools", params={"server": server}).json()["tools"]
    assert {r["tool"] for r in rows} >= {"echo", "deploy"} and not any(r["changed"] for r in rows)


def test_rug_pull_is_detected_and_blocks_the_changed_tool(env):
    a, ups, token = env

    async def main():
        async with client(a, token, "rug") as c:
            await c.list_tools()
            assert not (await c.call_tool("echo", {"text": "before"})).is_error
            assert text(await c.call_tool("rug_pull", {})) == "changed"
            tools = {t.name: t for t in (await c.list_tools()).tools}
            assert "ssh" in tools["echo"].description
            r = await c.call_tool("echo", {"text": "after"})
            assert r.is_error and "echo-changed" in text(r)

    anyio.run(main)
    assert [c["arguments"]["text"] for c in ups["rug"].calls() if c["name"] == "echo"] == ["before"]
    rows = {r["tool"]: r for r in a.admin("GET", "/v1/mcp/tools", params={"server": "rug"}).json()["tools"]}
    assert rows["echo"]["changed"] is True and rows["echo"]["hash"] != rows["echo"]["seen"]
    r = a.admin("POST", "/v1/mcp/tools/accept", {"server": "rug", "tool": "echo"})
    assert r.status_code == 200 and r.json()["changed"] is False

    async def again():
        async with client(a, token, "rug") as c:
            r = await c.call_tool("echo", {"text": "accepted"})
            assert not r.is_error and text(r) == "accepted"

    anyio.run(again)


def test_check_endpoint_for_native_tools(env):
    a, _, _ = env
    r = a.admin("POST", "/v1/check", {"tool": "delete_repo", "args": {"name": "x"}, "agent": "claude-code",
                                      "session": "s1"})
    body = r.json()
    assert r.status_code == 200 and body["decision"] == "deny" and body["rule"] == "no-delete"
    assert "no-delete" in body["refusal"]
    r = a.admin("POST", "/v1/check", {"tool": "deploy", "args": {"env": "prod"}, "agent": "claude-code"})
    assert r.json()["missing_justification"] is True and "justification" in r.json()["refusal"]
    r = a.admin("POST", "/v1/check", {"tool": "deploy", "args": {"env": "prod"}, "justification": "hotfix 12"})
    assert r.json()["decision"] == "allow" and r.json()["refusal"] is None
    r = a.admin("POST", "/v1/check", {"args": {}})
    assert r.status_code == 400 and "tool" in r.json()["error"]["message"]
    r = a.admin("POST", "/v1/check", content=b"\xff not json")
    assert r.status_code == 400


def test_check_endpoint_takes_the_agents_gateway_token(env):
    """Hooks and wrapped servers ask with the agent's own token: no admin token on the agent's machine."""
    a, _, token = env
    call = {"tool": "delete_repo", "args": {"name": "x"}, "agent": "claude-code"}
    r = httpx.post(a.admin_url + "/v1/check", json=call, headers={"authorization": f"Bearer {token}"}, timeout=30)
    assert r.status_code == 200 and r.json()["decision"] == "deny"
    r = httpx.post(a.admin_url + "/v1/check", json=call, headers={"authorization": "Bearer alk_0000_forged"},
                   timeout=30)
    assert r.status_code == 401
    r = httpx.get(a.admin_url + "/v1/keys", headers={"authorization": f"Bearer {token}"}, timeout=30)
    assert r.status_code == 401                      # only the agent-facing routes take a gateway token


def test_explicit_proxy_mode(env):
    """The same firewall when the agent uses Airlock as its HTTP(S) proxy (token as proxy password)."""
    a, ups, token = env
    up = ups["json_resp"]
    before = len(up.calls())

    async def main():
        http = httpx2.AsyncClient(proxy=f"http://agent:{token}@{a.config['listen']['proxy']}",
                                  timeout=httpx2.Timeout(30, read=300))
        async with Client(streamable_http_client(f"http://127.0.0.1:{up.port}/mcp", http_client=http),
                          mode="legacy") as c:
            names = {t.name for t in (await c.list_tools()).tools}
            assert "secret_admin" not in names and "echo" in names
            r = await c.call_tool("echo", {"text": "via proxy", "justification": "proxy test"})
            assert not r.is_error and text(r) == "via proxy"
            r = await c.call_tool("delete_repo", {"name": "x"})
            assert r.is_error and "no-delete" in text(r)

    anyio.run(main)
    calls = up.calls()[before:]
    assert [c["name"] for c in calls] == ["echo"] and calls[0]["arguments"] == {"text": "via proxy"}


def test_decisions_are_audited_without_tokens(env):
    """Every decision reaches the audit table (real chDB) with rule and reason; no gateway token in any row."""
    a, _, token = env

    async def main():
        async with client(a, token, "sse_resp") as c:
            assert (await c.call_tool("delete_repo", {"name": "audited"})).is_error

    anyio.run(main)

    def rows():
        r = a.admin("POST", "/v1/audit/query", {"sql": "SELECT tool, server, action, rule, outcome, data "
                                                        "FROM events WHERE kind = 'decision'", "limit": 1000})
        return r.json()["rows"] if r.status_code == 200 else None

    found = wait_until(lambda: [x for x in rows() or [] if x["tool"] == "delete_repo"], 30, "decision rows")
    assert all(x["action"] == "deny" and x["rule"] == "no-delete" and x["outcome"] == "refused" for x in found)
    everything = a.admin("POST", "/v1/audit/query", {"sql": "SELECT * FROM events", "limit": 100000}).json()
    assert token not in json.dumps(everything)


def test_bodies_airlock_cannot_inspect_are_refused(env):
    """Over the body limit (or chunked) a body would pass the request hook unseen: refused, never forwarded."""
    a, ups, token = env
    up = ups["json_resp"]
    before = len(up.calls())
    h = {"authorization": f"Bearer {token}", "accept": "application/json, text/event-stream",
         "content-type": "application/json"}
    big = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                      "params": {"name": "delete_repo", "arguments": {"name": "x" * 2_000_000}}}).encode()
    r = httpx2.post(f"{a.gateway_url}/mcp/json_resp", headers=h, content=big, timeout=30)
    assert r.json()["error"]["code"] == -32600 and "too large" in r.json()["error"]["message"]

    def chunks():
        yield big[:100]
        yield big[100:]
    r = httpx2.post(f"{a.gateway_url}/mcp/json_resp", headers=h, content=chunks(), timeout=30)
    assert r.status_code == 411 or "Content-Length" in r.json()["error"]["message"], (r.status_code, r.text[:300])
    assert len(up.calls()) == before


def test_require_approval_is_handed_to_the_approvals_addon(env):
    """require_approval: the firewall hands the (justification-stripped) call over; once a human
    approves, the real server runs it exactly once."""
    a, ups, token = env
    up = ups["json_resp"]
    before = len(up.calls())
    outcome: dict = {}

    async def call_and_wait():
        async with client(a, token, "json_resp") as c:
            outcome["result"] = await c.call_tool("add", {"a": 5000, "b": 1, "justification": "quarterly total"})

    async def approve_when_pending():
        for _ in range(600):
            pending = a.admin("GET", "/v1/approvals").json()["approvals"]
            mine = [p for p in pending if p.get("tool") == "add"]
            if mine:
                assert mine[0].get("justification") == "quarterly total"
                r = a.admin("POST", f"/v1/approvals/{mine[0]['id']}/approve", {"approver": "ops-lead"})
                assert r.status_code == 200, r.text
                return
            await anyio.sleep(0.05)
        raise AssertionError("no pending approval appeared")

    async def main():
        async with anyio.create_task_group() as tg:
            tg.start_soon(call_and_wait)
            tg.start_soon(approve_when_pending)

    if a.admin("GET", "/v1/approvals").status_code != 200:
        pytest.skip("the approvals component is not part of this Airlock build")
    anyio.run(main)
    r = outcome["result"]
    assert not r.is_error and r.structured_content == {"total": 5001}
    calls = up.calls()[before:]
    assert [(c["name"], c["arguments"]) for c in calls] == [("add", {"a": 5000, "b": 1})]
