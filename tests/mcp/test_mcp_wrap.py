"""``airlock mcp wrap``: the official SDK's stdio client -> airlock -> a stdio MCPServer child."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio
import yaml

from mcp import Client, StdioServerParameters
from tests.harness import Airlock, run_cli

HERE = Path(__file__).resolve().parent
POLICY = HERE / "policy.yaml"


def params(record: Path, env: dict, *extra: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "proxy.cli.main", "mcp", "wrap", "--server", "local", "--agent", "wrap-test", *extra, "--",
              sys.executable, str(HERE / "mcp_server.py"), "stdio", "0", str(record)],
        env=env, cwd=str(Path(__file__).resolve().parents[2]))


def upstream_calls(record: Path) -> list[dict]:
    out = []
    for line in record.read_text().splitlines():
        body = json.loads(json.loads(line)["body"] or "null")
        if isinstance(body, dict) and body.get("method") == "tools/call":
            out.append(body["params"])
    return out


async def exercise(p: StdioServerParameters) -> None:
    async with Client(p) as c:
        tools = {t.name: t for t in (await c.list_tools()).tools}
        assert "secret_admin" not in tools and "delete_repo" not in tools
        assert "justification" in tools["deploy"].input_schema["required"]
        r = await c.call_tool("echo", {"text": "over stdio", "justification": "testing"})
        assert not r.is_error and r.content[0].text == "over stdio"
        r = await c.call_tool("delete_repo", {"name": "prod"})
        assert r.is_error and "no-delete" in r.content[0].text
        r = await c.call_tool("deploy", {"env": "prod"})
        assert r.is_error and "justification" in r.content[0].text
        r = await c.call_tool("deploy", {"env": "prod", "justification": "hotfix"})
        assert not r.is_error and r.content[0].text == "deployed to prod"


def check_upstream(record: Path) -> None:
    calls = upstream_calls(record)
    assert [c["name"] for c in calls] == ["echo", "deploy"]
    assert all("justification" not in c.get("arguments", {}) for c in calls)


def test_wrap_offline_uses_the_engine_in_process(tmp_path):
    cfg = tmp_path / "airlock.yaml"
    cfg.write_text(yaml.safe_dump({"policies": [str(POLICY)], "data_dir": str(tmp_path / "var"),
                                   "listen": {"admin": "127.0.0.1:9"}}))
    record = tmp_path / "stdio.jsonl"
    env = {"PATH": "/usr/bin:/bin", "AIRLOCK_CONFIG": str(cfg), "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    anyio.run(exercise, params(record, env, "--offline"))
    check_upstream(record)
    # the same audit rows as through a running Airlock, in the config's audit store (real chDB)
    from proxy.audit import open_audit
    from proxy.config import load
    sink = open_audit(load(cfg))              # the wrapper has exited: this sink starts its own ingester
    anyio.run(sink.start)
    try:
        rows = sink.query("SELECT tool, server, action, rule, outcome FROM events WHERE kind = 'decision'")
    finally:
        anyio.run(sink.close)
    got = {(r["tool"], r["action"], r["outcome"]) for r in rows}
    assert ("delete_repo", "deny", "refused") in got and ("echo", "allow", "allowed") in got
    assert all(r["server"] == "local" for r in rows)


def test_wrap_asks_the_running_airlock(tmp_path):
    with Airlock({"policies": [str(POLICY)], "limits": {"drain_seconds": 2}}) as a:
        record = tmp_path / "stdio.jsonl"
        env = {k: v for k, v in a.cli_env().items() if k in ("PATH", "AIRLOCK_ADMIN_URL", "AIRLOCK_ADMIN_TOKEN",
                                                               "AIRLOCK_CONFIG", "HOME")}
        env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
        anyio.run(exercise, params(record, env))
        check_upstream(record)
        rows = a.admin("GET", "/v1/mcp/tools", params={"server": "local"}).json()["tools"]
        assert {"echo", "deploy", "add"} <= {r["tool"] for r in rows}     # tools/list went through the admin API
        listed = run_cli("mcp", "tools", "list", "--server", "local", "--json", env=a.cli_env())
        assert listed.returncode == 0 and {r["tool"] for r in json.loads(listed.stdout)} >= {"echo"}
        bad = run_cli("mcp", "tools", "accept", "--server", "local", "--tool", "nope", env=a.cli_env())
        assert bad.returncode != 0 and "airlock mcp tools list" in bad.stderr and "Traceback" not in bad.stderr


def test_wrap_missing_command_is_a_clear_error(tmp_path):
    cfg = tmp_path / "airlock.yaml"
    cfg.write_text(yaml.safe_dump({"policies": [str(POLICY)], "data_dir": str(tmp_path / "var")}))
    r = run_cli("mcp", "wrap", "--server", "x", "--offline", "--", "/nonexistent/server",
                env={"AIRLOCK_CONFIG": str(cfg)}, input="")
    assert r.returncode == 127 and "command not found" in r.stderr and "Traceback" not in r.stderr


def test_wrap_with_a_wrong_admin_token_says_so(tmp_path):
    with Airlock({"policies": [str(POLICY)], "limits": {"drain_seconds": 2}}) as a:
        env = {**a.cli_env(), "AIRLOCK_ADMIN_TOKEN": "adm_wrong"}
        r = run_cli("mcp", "wrap", "--server", "x", "--", sys.executable, "-c", "pass", env=env, input="")
        assert r.returncode == 3 and "admin token" in r.stderr and "Traceback" not in r.stderr
