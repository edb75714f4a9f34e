"""Onboarded agent entries work end to end through a running Airlock.

* a Claude Code remote MCP entry, rewritten by ``airlock agents onboard``, used as written (URL +
  Authorization header) by the official ``mcp`` SDK: allowed calls reach the real upstream, denied
  ones are refused by Airlock's policy;
* a stdio entry, rewritten to ``airlock mcp wrap ... -- <original command>``, spawned as Claude Code
  would (the SDK's stdio client with the entry's command, args and env): same policy decisions;
* the Claude Code PreToolUse hook onboard installs, run exactly as Claude Code runs it (a shell
  command, hook JSON on stdin), answers from Airlock's ``/v1/check``.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import anyio
import json5
import httpx
import pytest

from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from tests.harness import Airlock, free_port, port_open, run_cli, wait_until

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def upstream():
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(HERE / "mcp_upstream.py"), "http", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: port_open(port), 30, "upstream MCP server")
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def airlock(upstream):
    with Airlock({"policies": [str(HERE / "policy.yaml")], "mcp_servers": {"docs": {"url": upstream}}}) as a:
        yield a


@pytest.fixture
def onboarded(tmp_path, airlock, upstream):
    home = tmp_path / "home"
    home.mkdir()
    (home / ".claude.json").write_text(json.dumps({
        "numStartups": 3,
        "mcpServers": {"docs": {"type": "http", "url": upstream, "headers": {"X-Trace": "on"}}}}, indent=2) + "\n")
    p = run_cli("agents", "onboard", "--home", str(home), "--agent", "claude-code", "--yes", "--json",
                "-c", str(airlock.config_path), env=airlock.cli_env())
    assert p.returncode == 0, p.stderr
    return home


def test_rewritten_claude_code_entry_works_through_airlock(onboarded, airlock):
    entry = json.loads((onboarded / ".claude.json").read_text())["mcpServers"]["docs"]
    assert entry["url"] == f"{airlock.gateway_url}/mcp/docs"

    async def main():
        http = create_mcp_http_client(headers=entry["headers"])
        async with Client(streamable_http_client(entry["url"], http_client=http)) as c:
            names = {t.name for t in (await c.list_tools()).tools}
            assert "echo" in names
            r = await c.call_tool("echo", {"text": "through airlock"})
            assert not r.is_error and r.content[0].text == "echo: through airlock"
            r = await c.call_tool("delete_repo", {"name": "prod"})
            assert r.is_error and "agents may not delete repositories" in r.content[0].text

    anyio.run(main)

    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
    accept = {"accept": "application/json, text/event-stream"}
    r = httpx.post(entry["url"], json=init, headers=accept, timeout=30)
    assert r.status_code == 401                     # the rewritten URL is useless without the minted token
    r = httpx.post(entry["url"], json=init, headers={**accept, **entry["headers"]}, timeout=30)
    assert r.status_code == 200


def test_restore_removes_files_onboard_created(onboarded, airlock, upstream):
    assert (onboarded / ".claude" / "settings.json").exists()
    entry = json.loads((onboarded / ".claude.json").read_text())["mcpServers"]["docs"]
    token = entry["headers"]["Authorization"].removeprefix("Bearer ")
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
    headers = {"accept": "application/json, text/event-stream", "authorization": f"Bearer {token}"}
    assert httpx.post(entry["url"], json=init, headers=headers, timeout=30).status_code == 200
    p = run_cli("agents", "restore", "--home", str(onboarded), "--json", env=airlock.cli_env())
    assert p.returncode == 0, p.stderr
    rows = json.loads(p.stdout)
    actions = {Path(x["file"]).name: x["action"] for x in rows if "file" in x}
    assert actions == {".claude.json": "restored", "settings.json": "removed (did not exist before)"}
    # the token onboard minted is in no agent file any more: restore revoked it
    assert [x for x in rows if "token_id" in x] == [{"token_id": token.split("_")[1], "action": "revoked"}]
    assert token not in p.stdout
    assert httpx.post(entry["url"], json=init, headers=headers, timeout=30).status_code == 401
    assert not (onboarded / ".claude" / "settings.json").exists()
    assert json.loads((onboarded / ".claude.json").read_text())["mcpServers"]["docs"]["url"] == upstream


def run_hook(command: str, event: dict, env: dict) -> dict | None:
    p = subprocess.run(command, shell=True, input=json.dumps(event), capture_output=True, text=True, env=env,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout) if p.stdout.strip() else None


def test_installed_pretooluse_hook_asks_airlock(onboarded, airlock):
    settings = json.loads((onboarded / ".claude" / "settings.json").read_text())
    command = settings["hooks"]["PreToolUse"][0]["hooks"][0]["command"]
    env = airlock.cli_env()
    event = {"session_id": "s-1", "hook_event_name": "PreToolUse", "tool_name": "Bash", "cwd": "/tmp",
             "tool_input": {"command": "rm -rf /srv/data"}}
    out = run_hook(command, event, env)
    assert out["hookSpecificOutput"]["permissionDecision"] == "deny"
    assert "no recursive deletes" in out["hookSpecificOutput"]["permissionDecisionReason"]
    assert run_hook(command, {**event, "tool_input": {"command": "ls -la"}}, env) is None   # allowed: no opinion

    # the hook carries the agent's own gateway token: no admin token anywhere in its environment
    assert "--token alk_" in command
    agent_only = {k: v for k, v in env.items() if k != "AIRLOCK_ADMIN_TOKEN"}
    out = run_hook(command, event, agent_only)
    assert out["hookSpecificOutput"]["permissionDecision"] == "deny"
    forged = command.replace("--token alk_", "--token alk_forged")
    out = run_hook(forged, event, agent_only)                      # a bad token: 401, so fail closed
    assert "fail closed" in out["hookSpecificOutput"]["permissionDecisionReason"]
    r = httpx.get(airlock.admin_url + "/v1/keys", headers={"authorization": "Bearer " + command.split(
        "--token ")[1].split()[0]}, timeout=30)
    assert r.status_code == 401                                    # a gateway token is no admin token

    down = {**env, "AIRLOCK_ADMIN_URL": f"http://127.0.0.1:{free_port()}"}        # Airlock unreachable: fail closed
    out = run_hook(command, {**event, "tool_input": {"command": "ls"}}, down)
    assert out["hookSpecificOutput"]["permissionDecision"] == "deny" and "fail closed" in \
        out["hookSpecificOutput"]["permissionDecisionReason"]
    out = run_hook(command, {"not": "a hook"}, env)
    assert out["hookSpecificOutput"]["permissionDecision"] == "deny"


def test_gemini_and_cursor_hooks_ask_airlock(tmp_path, airlock):
    home = tmp_path / "home"
    (home / ".gemini").mkdir(parents=True)
    (home / ".gemini" / "settings.json").write_text('{\n  // mine\n  "ui": {"theme": "GitHub"}\n}\n')
    (home / ".cursor").mkdir()
    (home / ".cursor" / "mcp.json").write_text('{"mcpServers": {}}\n')
    p = run_cli("agents", "onboard", "--home", str(home), "--agent", "gemini", "--agent", "cursor", "--yes",
                "-c", str(airlock.config_path), env=airlock.cli_env())
    assert p.returncode == 0, p.stderr
    gemini = json5.loads((home / ".gemini" / "settings.json").read_text())["hooks"]["BeforeTool"][0]
    cursor = json.loads((home / ".cursor" / "hooks.json").read_text())["hooks"]["beforeShellExecution"][0]
    env = airlock.cli_env()

    g_event = {"session_id": "g-1", "hook_event_name": "BeforeTool", "tool_name": "Bash", "cwd": "/tmp",
               "tool_input": {"command": "rm -rf /"}, "timestamp": "2026-11-24T16:00:00Z"}
    out = run_hook(gemini["hooks"][0]["command"], g_event, env)
    assert out["decision"] == "deny" and "no recursive deletes" in out["reason"]
    assert run_hook(gemini["hooks"][0]["command"], {**g_event, "tool_input": {"command": "ls"}}, env) == {}

    c_event = {"hook_event_name": "beforeShellExecution", "conversation_id": "c-1", "command": "rm -rf build",
               "cwd": "/work", "workspace_roots": ["/work"]}
    assert run_hook(cursor["command"], c_event, env) is None                   # allowed: no opinion
    out = run_hook(cursor["command"], {**c_event, "command": "rm -rf /"}, env)
    assert out["permission"] == "deny" and "no recursive deletes of the root" in out["agent_message"]
    down = {**env, "AIRLOCK_ADMIN_URL": f"http://127.0.0.1:{free_port()}"}
    out = run_hook(cursor["command"], c_event, down)
    assert out["permission"] == "deny" and "fail closed" in out["agent_message"]


def test_wrapped_stdio_server_works_through_airlock(tmp_path, airlock):
    home = tmp_path / "home"
    home.mkdir()
    (home / ".claude.json").write_text(json.dumps({"mcpServers": {"local": {
        "command": sys.executable, "args": [str(HERE / "mcp_upstream.py"), "stdio"], "env": {"UPSTREAM_MODE": "1"}}}},
        indent=2))
    p = run_cli("agents", "onboard", "--home", str(home), "--agent", "claude-code", "--yes",
                "-c", str(airlock.config_path), env=airlock.cli_env())
    assert p.returncode == 0, p.stderr
    entry = json.loads((home / ".claude.json").read_text())["mcpServers"]["local"]
    assert Path(entry["command"]).name == "airlock" and entry["env"] == {"UPSTREAM_MODE": "1"}
    assert entry["args"][entry["args"].index("--") + 1:] == [sys.executable, str(HERE / "mcp_upstream.py"), "stdio"]
    params = StdioServerParameters(command=entry["command"], args=entry["args"],
                                   env={**airlock.cli_env(), **entry["env"]})

    async def main():
        async with Client(params) as c:
            assert "echo" in {t.name for t in (await c.list_tools()).tools}
            r = await c.call_tool("echo", {"text": "over stdio"})
            assert not r.is_error and r.content[0].text == "echo: over stdio"
            r = await c.call_tool("delete_repo", {"name": "prod"})
            assert r.is_error and "agents may not delete repositories" in r.content[0].text

    anyio.run(main)
