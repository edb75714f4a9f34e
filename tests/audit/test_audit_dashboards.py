"""Every Grafana panel's SQL runs against real chDB with sample data (a schema change cannot silently
break a dashboard). Macros are expanded the way the grafana-clickhouse-datasource plugin does."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from proxy.audit import AuditSink
from tests.audit.conftest import flushed

DASHBOARDS = sorted((Path(__file__).resolve().parents[2] / "schema" / "dashboards").glob("*.json"))
NOW = time.time()
# the range ends well after NOW: in a full run this module executes minutes after it was imported
FROM, TO = int(NOW - 6 * 3600), int(NOW + 24 * 3600)


def expand(sql: str, account: str | None) -> str:
    """The plugin's macros and Grafana's variable formats, for a 6 h range and ``account`` (None = All)."""
    def conditional_all(m: re.Match) -> str:
        return "1 = 1" if account is None else m.group(1)
    sql = re.sub(r"\$__conditionalAll\((.*?),\s*\$account\)", conditional_all, sql)
    sql = sql.replace("${account:singlequote}", f"'{account}'")
    sql = re.sub(r"\$__timeFilter\((\w+)\)", rf"\1 >= toDateTime({FROM}) AND \1 <= toDateTime({TO})", sql)
    sql = re.sub(r"\$__dateFilter\((\w+)\)", rf"\1 >= toDate(toDateTime({FROM})) AND \1 <= toDate(toDateTime({TO}))",
                 sql)
    sql = re.sub(r"\$__timeInterval\((\w+)\)", r"toStartOfInterval(toDateTime(\1), INTERVAL 60 second)", sql)
    sql = sql.replace("$__fromTime", f"toDateTime({FROM})").replace("$__toTime", f"toDateTime({TO})")
    assert "$" not in sql, f"unexpanded macro or variable in: {sql}"
    return sql


def panels():
    for path in DASHBOARDS:
        dash = json.loads(path.read_text())
        for p in dash["panels"]:
            for t in p["targets"]:
                yield pytest.param(path.stem, p["title"], t["rawSql"], id=f"{path.stem}:{p['title']}")


def sample(sink: AuditSink) -> None:
    t = NOW - 600
    for i in range(20):
        acct = "acme" if i % 2 else "globex"
        sess = f"sess-{i % 4}"
        sink.emit("request", ts=t + i, account=acct, agent="claude-code", subject="alice", session=sess,
                  listener="gateway", route_kind="openai", route_name="openai", method="POST",
                  path="/v1/chat/completions", status=500 if i == 3 else 200, latency_ms=20 + i,
                  provider="openai", model="gpt-4o-mini", tokens_in=100, tokens_out=20, cost=0.001 * i)
        sink.emit("request", ts=t + i + 0.5, account=acct, agent="claude-code", session=sess, listener="proxy",
                  route_kind="mcp", route_name="github", method="POST", path="/mcp", status=200 if i % 5 else 403,
                  latency_ms=5, tool="create_issue", server="github", outcome="mcp_deny" if i % 5 == 0 else "")
        sink.emit("decision", ts=t + i + 0.2, account=acct, agent="claude-code", session=sess, tool="create_issue",
                  server="github", action="deny" if i % 5 == 0 else "allow", rule="no-prod" if i % 5 == 0 else "",
                  reason="policy")
    sink.emit("tool_changed", ts=t + 30, server="github", tool="create_issue", reason="description changed")
    sink.emit("approval.created", ts=t + 40, approval_id="ap1", tool="deploy", server="ops", account="acme")
    sink.emit("approval.decided", ts=t + 100, approval_id="ap1", state="approved", decided_by="bob")
    sink.emit("session_end", ts=t + 200, session="sess-1", reason="runaway")


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    import asyncio
    tmp = tmp_path_factory.mktemp("dash")
    sink = AuditSink(f"chdb://{tmp / 'ch'}", tmp / "wal", flush_seconds=0.05)

    async def fill():
        await sink.start()
        sample(sink)
        await flushed(sink)

    asyncio.run(fill())
    yield sink
    asyncio.run(sink.close())


def test_dashboards_exist_for_every_area():
    assert {p.stem for p in DASHBOARDS} == {"overview", "spend", "decisions", "approvals", "sessions"}
    for path in DASHBOARDS:
        dash = json.loads(path.read_text())
        for p in dash["panels"]:
            assert p["datasource"]["type"] == "grafana-clickhouse-datasource"
            assert all(t["rawSql"].strip() for t in p["targets"])


@pytest.mark.parametrize("dashboard,title,sql", list(panels()))
def test_panel_sql_runs_and_returns_rows(filled, dashboard, title, sql):
    for account in (None, "acme"):
        rows = filled.query(expand(sql, account))
        assert rows, f"{dashboard} / {title} returned no rows for account={account or 'All'}"


def test_committed_json_matches_the_generator():
    import importlib.util
    path = DASHBOARDS[0].parent / "build.py"
    spec = importlib.util.spec_from_file_location("dash_build", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for name, (uid, title, ps) in mod.DASHBOARDS.items():
        committed = json.loads((path.parent / f"{name}.json").read_text())
        assert committed == json.loads(json.dumps(mod.dashboard(uid, title, ps))), \
            f"{name}.json is stale: run python schema/dashboards/build.py"
