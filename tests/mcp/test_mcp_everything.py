"""@modelcontextprotocol/server-everything (TypeScript SDK) behind Airlock: SDK client and raw batches."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import anyio
import httpx
import orjson
import pytest

from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from tests.harness import ROOT, Airlock, free_port, port_open, wait_until

HERE = Path(__file__).resolve().parent
CLI = ROOT / "node_modules" / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"


@pytest.fixture(scope="module")
def everything():
    if not CLI.exists():
        pytest.skip("npm package @modelcontextprotocol/server-everything is not installed (make setup)")
    procs = []
    ports = {}
    try:
        for transport in ("streamableHttp", "sse"):
            ports[transport] = port = free_port()
            procs.append(subprocess.Popen(["node", str(CLI), transport], env={**os.environ, "PORT": str(port)},
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_until(lambda: port_open(port), 30, f"server-everything {transport}")
        with Airlock({"policies": [str(HERE / "policy.yaml")], "limits": {"drain_seconds": 2},
                      "mcp_servers": {"everything": {"url": f"http://127.0.0.1:{ports['streamableHttp']}/mcp"},
                                      "everything-sse": {"url": f"http://127.0.0.1:{ports['sse']}"}}}) as a:
            yield a, a.mint("acme", subject="bob")
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)


def test_sdk_client_through_airlock(everything):
    a, token = everything

    async def main():
        http = create_mcp_http_client(headers={"authorization": f"Bearer {token}"})
        async with Client(streamable_http_client(f"{a.gateway_url}/mcp/everything", http_client=http)) as c:
            tools = {t.name: t for t in (await c.list_tools()).tools}
            assert "get-env" not in tools and "echo" in tools
            assert "justification" in tools["echo"].input_schema["properties"]
            r = await c.call_tool("echo", {"message": "hi everything", "justification": "test"})
            assert not r.is_error and "hi everything" in r.content[0].text
            r = await c.call_tool("get-sum", {"a": 1, "b": 2})
            assert not r.is_error and "3" in r.content[0].text
            r = await c.call_tool("get-sum", {"a": 500, "b": 2})
            assert r.is_error and "sum-too-big" in r.content[0].text
            r = await c.call_tool("get-env", {})
            assert r.is_error and "no-env-dump" in r.content[0].text
            progress = []

            async def on_progress(p, total, message):
                progress.append(p)
            r = await c.call_tool("trigger-long-running-operation", {"duration": 0.2, "steps": 2},
                                  progress_callback=on_progress)
            assert not r.is_error and progress        # notifications before the result pass through

    anyio.run(main)


def test_legacy_sse_typescript_server(everything):
    """The TypeScript SDK's legacy transport (endpoint /message?sessionId=...) behind the gateway."""
    a, token = everything

    async def main():
        async with Client(sse_client(f"{a.gateway_url}/mcp/everything-sse/sse",
                                     headers={"authorization": f"Bearer {token}"})) as c:
            names = {t.name for t in (await c.list_tools()).tools}
            assert "get-env" not in names and "echo" in names
            r = await c.call_tool("echo", {"message": "legacy ts", "justification": "test"})
            assert not r.is_error and "legacy ts" in r.content[0].text
            r = await c.call_tool("get-env", {})
            assert r.is_error and "no-env-dump" in r.content[0].text
            r = await c.call_tool("get-sum", {"a": 1, "b": 1})
            assert not r.is_error and "2" in r.content[0].text

    anyio.run(main)


def _events(resp: httpx.Response) -> list[dict]:
    if resp.headers["content-type"].startswith("application/json"):
        body = resp.json()
        return body if isinstance(body, list) else [body]
    return [orjson.loads(line[5:]) for line in resp.text.splitlines() if line.startswith("data:") and line[5:].strip()]


def test_raw_batch_is_decided_per_message(everything):
    a, token = everything
    url = f"{a.gateway_url}/mcp/everything"
    h = {"authorization": f"Bearer {token}", "accept": "application/json, text/event-stream",
         "content-type": "application/json"}
    with httpx.Client(timeout=30) as http:
        init = http.post(url, headers=h, json={"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-03-26", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})
        assert init.status_code == 200
        h["mcp-session-id"] = init.headers["mcp-session-id"]
        http.post(url, headers=h, json={"jsonrpc": "2.0", "method": "notifications/initialized"})
        batch = [
            {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
             "params": {"name": "get-sum", "arguments": {"a": 2, "b": 3, "justification": "adding"}}},
            {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "get-env", "arguments": {}}},
            {"jsonrpc": "2.0", "id": 3, "method": "tools/list"},
            {"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "get-sum",
                                                                          "arguments": {"a": 101, "b": 1}}},
            {"jsonrpc": "2.0", "method": 5},
        ]
        r = http.post(url, headers=h, json=batch)
        assert r.status_code == 200
        by_id = {e.get("id"): e for e in _events(r)}
        assert not by_id[1]["result"].get("isError") and "5" in by_id[1]["result"]["content"][0]["text"]
        assert by_id[2]["result"]["isError"] and "no-env-dump" in by_id[2]["result"]["content"][0]["text"]
        assert by_id[4]["result"]["isError"] and "sum-too-big" in by_id[4]["result"]["content"][0]["text"]
        names = [t["name"] for t in by_id[3]["result"]["tools"]]
        assert "get-env" not in names and "get-sum" in names
        assert by_id[None]["error"]["code"] == -32600

        # a batch where everything is refused never reaches the server and is answered as an array
        r = http.post(url, headers=h, json=[batch[1], batch[3]])
        assert r.status_code == 200 and [e["id"] for e in r.json()] == [2, 4]

        # garbage in, JSON-RPC error out, the session keeps working
        r = http.post(url, headers=h, content=b'{"jsonrpc": "2.0", "id": 9, "method": ')
        assert r.json()["error"]["code"] == -32700
        r = http.post(url, headers=h, json={"jsonrpc": "2.0", "id": 10, "method": "tools/call",
                                            "params": {"name": "echo", "arguments": {"message": "ok"}}})
        assert "ok" in _events(r)[0]["result"]["content"][0]["text"]
