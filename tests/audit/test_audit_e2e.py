"""The audit trail of a real ``airlock run``: SDK clients, aimock and a real MCP server upstream,
the CLI reading through the admin API, planted secrets, sessions ended mid-run."""
from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import anyio
import httpx
import openai
import pytest

from tests.harness import Airlock, free_port, port_open, run_cli, wait_until

MCP_SERVER = Path(__file__).resolve().parents[1] / "mcp" / "mcp_server.py"
PROVIDER_KEY = "sk-live-provider-Zq8Wm4Rt6Yu2Io0P"
PLANTED = {
    "in_tool_args": "ghp_PLANTEDtoolARGsecret000000000000000",
    "in_prompt": "sk-proj-PLANTEDpromptSECRET1234567890",
    "aws": "AKIAPLANTED000000000",
}


@pytest.fixture(scope="module")
def mcp_upstream(tmp_path_factory):
    port = free_port()
    rec = tmp_path_factory.mktemp("mcp") / "rec.jsonl"
    proc = subprocess.Popen([sys.executable, str(MCP_SERVER), "streamable-http", str(port), str(rec)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(lambda: port_open(port), 30, "MCP server")
    yield f"http://127.0.0.1:{port}/mcp"
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="module")
def al(tmp_path_factory, aimock, mcp_upstream):
    a = Airlock({"providers": {"openai": {"base_url": aimock.url + "/v1", "api_key_env": "TEST_OPENAI_KEY"}},
                 "mcp_servers": {"srv": {"url": mcp_upstream}},
                 "audit": {"flush_seconds": 0.1}},
                env={"TEST_OPENAI_KEY": PROVIDER_KEY}, workdir=tmp_path_factory.mktemp("audit-e2e"))
    a.start()
    a.token = a.mint("acme", subject="alice", agent="pytest")
    yield a
    a.stop()


def cli(a: Airlock, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    r = run_cli(*args, env=a.cli_env(), cwd=a.workdir)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def rows(a: Airlock, sql: str) -> list[dict]:
    return json.loads(cli(a, "audit", "query", sql, "--json").stdout)


def wait_rows(a: Airlock, sql: str, n: int = 1) -> list[dict]:
    return wait_until(lambda: (lambda r: r if len(r) >= n else None)(rows(a, sql)), 30, f"{n} rows of {sql}")


def chat(a: Airlock, session: str | None = None, system: str = "be brief") -> str:
    headers = {"x-airlock-session": session} if session else None
    client = openai.OpenAI(base_url=f"{a.gateway_url}/openai/v1", api_key=a.token, max_retries=0,
                           default_headers=headers)
    r = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "system", "content": system},
                                                                      {"role": "user", "content": "hi"}])
    return r.choices[0].message.content


async def mcp_echo(a: Airlock, text: str) -> str:
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client
    http = create_mcp_http_client(headers={"authorization": f"Bearer {a.token}"})
    async with Client(streamable_http_client(f"{a.gateway_url}/mcp/srv", http_client=http)) as c:
        res = await c.call_tool("echo", {"text": text})
        return res.content[0].text


def test_model_and_tool_calls_are_recorded_without_secrets(al):
    assert chat(al, system=f"the deploy key is {PLANTED['in_prompt']} and {PLANTED['aws']}")
    out = anyio.run(mcp_echo, al, f"token={PLANTED['in_tool_args']}")
    assert PLANTED["in_tool_args"] in out          # the call itself went through untouched
    model_rows = wait_rows(al, "SELECT * FROM events WHERE kind = 'request' AND route_kind = 'openai'")
    r = model_rows[0]
    assert (r["account"], r["subject"], r["agent"], r["listener"]) == ("acme", "alice", "pytest", "gateway")
    assert (r["method"], r["status"], r["model"], r["provider"]) == ("POST", 200, "gpt-4o-mini", "openai")
    assert r["path"].endswith("chat/completions") and r["latency_ms"] > 0 and r["bytes_in"] > 0
    wait_rows(al, "SELECT * FROM events WHERE kind = 'request' AND route_kind = 'mcp' AND tool = 'echo'")
    wait_rows(al, "SELECT * FROM events WHERE kind = 'decision' AND tool = 'echo'")
    everything = cli(al, "audit", "export", "--format", "jsonl").stdout
    assert "echo" in everything and "gpt-4o-mini" in everything
    for secret in (*PLANTED.values(), PROVIDER_KEY, al.token, al.token.split("_", 2)[2]):
        assert secret not in everything, secret
        assert secret not in al.logs(), secret


def test_sessions_list_show_and_end(al):
    sid = "run-7f3a"
    assert chat(al, session=sid)
    wait_rows(al, f"SELECT * FROM events WHERE session = '{sid}' AND kind = 'request'")
    listed = json.loads(cli(al, "sessions", "list", "--json").stdout)
    mine = [s for s in listed if s["session"] == sid]
    assert mine and mine[0]["model_calls"] == 1 and mine[0]["account"] == "acme" and not mine[0]["ended"]
    shown = json.loads(cli(al, "sessions", "show", sid, "--json").stdout)
    assert shown["summary"]["model_calls"] == 1
    assert [e["kind"] for e in shown["timeline"]] == ["request"]       # one row per model call
    assert "gpt-4o-mini" in cli(al, "sessions", "show", sid).stdout

    out = json.loads(cli(al, "sessions", "end", sid, "--reason", "runaway agent", "--json").stdout)
    assert out["already_ended"] is False
    with pytest.raises(openai.AuthenticationError) as e:
        chat(al, session=sid)
    assert "ended" in str(e.value)
    assert chat(al, session="another-run")          # other sessions of the same token go on
    ended = wait_rows(al, f"SELECT * FROM events WHERE session = '{sid}' AND kind = 'session_end'")
    assert ended[0]["reason"] == "runaway agent"
    shown = json.loads(cli(al, "sessions", "show", sid, "--json").stdout)
    assert shown["summary"]["ended"] is True
    assert [e["status"] for e in shown["timeline"] if e["kind"] == "request"] == [200, 401]

    missing = cli(al, "sessions", "show", "no-such-session", check=False)
    assert missing.returncode != 0 and "no session" in missing.stderr and "Traceback" not in missing.stderr


def test_query_is_read_only_and_errors_are_clear(al):
    for sql in ("DROP TABLE events", "INSERT INTO events (kind) VALUES ('x')", "SELECT 1; DROP TABLE events"):
        r = cli(al, "audit", "query", sql, check=False)
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        assert "read-only" in r.stderr or "one statement" in r.stderr
    r = cli(al, "audit", "query", "SELECT nope FROM events", check=False)
    assert r.returncode == 1 and "audit query failed" in r.stderr
    assert rows(al, "SELECT count() AS n FROM events")[0]["n"] > 0


def test_export_formats_tail_and_verify(al, tmp_path):
    chat(al)
    wait_rows(al, "SELECT 1 FROM events WHERE kind = 'request'")      # ingested (it may wait for a batch)
    n = rows(al, "SELECT count() AS n FROM events")[0]["n"]
    cli(al, "audit", "export", "--format", "jsonl", "--output", str(tmp_path / "a.jsonl"))
    lines = (tmp_path / "a.jsonl").read_text().splitlines()
    assert len(lines) >= n and all(json.loads(x)["kind"] for x in lines)
    cli(al, "audit", "export", "--format", "csv", "--output", str(tmp_path / "a.csv"))
    table = list(csv.DictReader(io.StringIO((tmp_path / "a.csv").read_text())))
    assert len(table) >= n and "hash" in table[0]
    cli(al, "audit", "export", "--format", "parquet", "--output", str(tmp_path / "a.parquet"))
    import pyarrow.parquet as pq
    assert pq.read_table(tmp_path / "a.parquet").num_rows >= n
    future = cli(al, "audit", "export", "--from", "2999-01-01T00:00:00Z").stdout
    assert future == ""
    bad = cli(al, "audit", "export", "--from", "yesterday-ish", check=False)
    assert bad.returncode == 1 and "invalid time" in bad.stderr

    tail = [json.loads(x) for x in cli(al, "audit", "tail", "-n", "3", "--json").stdout.splitlines()]
    assert len(tail) == 3
    assert tail == [json.loads(x) for x in lines[-3:]] or tail[-1]["ts"] >= json.loads(lines[-1])["ts"]
    # healthy: a pass that failed under a loaded machine is retried (backoff from 0.5 s); one that stays failed is not
    seen: list[dict] = []

    def healthy():
        seen.append(json.loads(cli(al, "audit", "status", "--json").stdout))
        st = seen[-1]
        return st if st["backlog"] is False and st["accepting"] is True and st["writer_alive"] is True else None
    try:
        status = wait_until(healthy, 20, "audit status healthy", interval=0.5)
    except Exception:
        raise AssertionError(f"audit status not healthy: {seen[-1]}") from None
    assert status["dsn"].startswith("chdb://") and status["stream"]
    verify = json.loads(cli(al, "audit", "verify", "--json").stdout)
    assert verify["ok"] and verify["rows"] >= n
    from prometheus_client.parser import text_string_to_metric_families
    text = httpx.get(al.admin_url + "/metrics", headers=al.admin_headers).text
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for fam in text_string_to_metric_families(text) for s in fam.samples}
    assert samples[("airlock_audit_rows_written_total", ())] >= n
    assert not [v for (name, _), v in samples.items() if name == "airlock_audit_rows_dropped_total" and v]
    assert samples[("airlock_audit_queue_depth", ())] >= 0


def test_tail_follow_prints_new_rows(al):
    import os
    import select
    proc = subprocess.Popen([sys.executable, "-m", "proxy.cli.main", "audit", "tail", "-f", "-n", "1", "--json",
                             "--interval", "0.2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=al.cli_env(), cwd=al.workdir)
    fd = proc.stdout.fileno()
    buf = bytearray()

    def lines() -> list[dict]:
        while select.select([fd], [], [], 0.2)[0]:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            buf.extend(chunk)
        return [json.loads(x) for x in bytes(buf).splitlines() if x.strip()]

    try:
        assert wait_until(lambda: lines(), 30, "the first tail line")[0]["kind"]
        chat(al, session="tail-me")
        wait_until(lambda: any(r.get("session") == "tail-me" and r["kind"] == "request" for r in lines()), 30,
                   "tail -f to print the new request")
    finally:
        proc.terminate()
        proc.wait(10)
