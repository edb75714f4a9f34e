"""Generates the Grafana dashboards in this folder (run: python schema/dashboards/build.py).

Panels use the official ClickHouse datasource plugin (grafana-clickhouse-datasource) and its macros:
$__timeFilter(col), $__timeInterval(col), $__dateFilter(col), $__conditionalAll(cond, $var).
tests/audit/test_dashboards.py runs every panel's SQL against chDB with sample data.
"""
from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
DS = {"type": "grafana-clickhouse-datasource", "uid": "${datasource}"}
ACCOUNT = "$__conditionalAll(account IN (${account:singlequote}), $account)"


def target(sql: str, fmt: str) -> dict:
    return {"refId": "A", "datasource": DS, "editorType": "sql", "rawSql": " ".join(sql.split()),
            "format": 0 if fmt == "timeseries" else 1, "queryType": "timeseries" if fmt == "timeseries" else "table"}


def panel(i: int, title: str, kind: str, sql: str, w: int = 12, h: int = 8, unit: str | None = None) -> dict:
    fmt = "timeseries" if kind in ("timeseries", "barchart") else "table"
    p = {"id": i, "title": title, "type": kind, "datasource": DS, "targets": [target(sql, fmt)],
         "gridPos": {"x": 0, "y": 0, "w": w, "h": h}, "fieldConfig": {"defaults": {}, "overrides": []},
         "options": {}}
    if unit:
        p["fieldConfig"]["defaults"]["unit"] = unit
    return p


def layout(panels: list[dict]) -> list[dict]:
    x = y = row_h = 0
    for p in panels:
        g = p["gridPos"]
        if x + g["w"] > 24:
            x, y, row_h = 0, y + row_h, 0
        g["x"], g["y"] = x, y
        x += g["w"]
        row_h = max(row_h, g["h"])
    return panels


def dashboard(uid: str, title: str, panels: list[dict]) -> dict:
    return {
        "uid": uid, "title": title, "tags": ["airlock"], "timezone": "utc", "schemaVersion": 39, "version": 1,
        "time": {"from": "now-24h", "to": "now"}, "refresh": "30s", "editable": True,
        "templating": {"list": [
            {"name": "datasource", "type": "datasource", "query": "grafana-clickhouse-datasource",
             "label": "ClickHouse"},
            {"name": "account", "type": "query", "datasource": DS, "label": "Account", "includeAll": True,
             "multi": True, "current": {"text": "All", "value": "$__all"}, "refresh": 2,
             "definition": "SELECT DISTINCT account FROM events WHERE account != '' ORDER BY account",
             "query": "SELECT DISTINCT account FROM events WHERE account != '' ORDER BY account"},
        ]},
        "panels": layout(panels),
    }


OVERVIEW = [
    panel(1, "Requests by route", "timeseries", f"""
        SELECT $__timeInterval(ts) AS time, route_kind, count() AS requests FROM events
        WHERE $__timeFilter(ts) AND kind = 'request' AND {ACCOUNT}
        GROUP BY time, route_kind ORDER BY time""", w=16),
    panel(2, "Requests", "stat", f"""
        SELECT count() AS requests FROM events WHERE $__timeFilter(ts) AND kind = 'request' AND {ACCOUNT}""", w=4),
    panel(3, "Error rate", "stat", f"""
        SELECT round(countIf(status >= 500 OR outcome = 'error') / greatest(count(), 1), 4) AS error_rate
        FROM events WHERE $__timeFilter(ts) AND kind = 'request' AND {ACCOUNT}""", w=4, unit="percentunit"),
    panel(4, "Latency p50 / p95 / p99 (ms) by listener", "timeseries", f"""
        SELECT $__timeInterval(ts) AS time, listener,
               quantile(0.5)(latency_ms) AS p50, quantile(0.95)(latency_ms) AS p95, quantile(0.99)(latency_ms) AS p99
        FROM events WHERE $__timeFilter(ts) AND kind = 'request' AND {ACCOUNT}
        GROUP BY time, listener ORDER BY time""", unit="ms"),
    panel(5, "Top accounts", "table", f"""
        SELECT account, count() AS requests, sum(tokens) AS tokens, round(sum(cost), 4) AS cost_usd
        FROM events WHERE $__timeFilter(ts) AND kind = 'request' AND account != '' AND {ACCOUNT}
        GROUP BY account ORDER BY requests DESC LIMIT 20"""),
    panel(6, "Policy decisions", "piechart", f"""
        SELECT action, count() AS decisions FROM events
        WHERE $__timeFilter(ts) AND kind = 'decision' AND {ACCOUNT} GROUP BY action ORDER BY decisions DESC""", w=8),
    panel(7, "Audit events by kind", "table", f"""
        SELECT kind, count() AS events FROM events WHERE $__timeFilter(ts) AND {ACCOUNT}
        GROUP BY kind ORDER BY events DESC""", w=8),
    panel(8, "Refusals by outcome", "table", f"""
        SELECT outcome, count() AS refused FROM events
        WHERE $__timeFilter(ts) AND kind = 'request' AND status >= 400 AND {ACCOUNT}
        GROUP BY outcome ORDER BY refused DESC""", w=8),
]

SPEND = [
    panel(1, "Spend per day by account (USD)", "barchart", f"""
        SELECT toDateTime(day) AS time, account, round(sum(cost), 6) AS cost_usd FROM daily_stats
        WHERE $__dateFilter(day) AND {ACCOUNT} GROUP BY time, account ORDER BY time""", w=16, unit="currencyUSD"),
    panel(2, "Spend (USD)", "stat", f"""
        SELECT round(sum(cost), 4) AS cost_usd FROM usage_ledger WHERE $__timeFilter(ts) AND {ACCOUNT}""",
          w=8, unit="currencyUSD"),
    panel(3, "Tokens by model", "timeseries", f"""
        SELECT $__timeInterval(ts) AS time, model, sum(tokens_in) AS input, sum(tokens_out) AS output
        FROM usage_ledger WHERE $__timeFilter(ts) AND {ACCOUNT} GROUP BY time, model ORDER BY time"""),
    panel(4, "Spend by model", "table", f"""
        SELECT provider, model, count() AS calls, sum(tokens) AS tokens, round(sum(cost), 6) AS cost_usd
        FROM usage_ledger WHERE $__timeFilter(ts) AND {ACCOUNT}
        GROUP BY provider, model ORDER BY cost_usd DESC LIMIT 50"""),
    panel(5, "Spend by agent", "table", f"""
        SELECT agent, account, sum(calls) AS calls, sum(tokens_in + tokens_out) AS tokens,
               round(sum(cost), 6) AS cost_usd
        FROM daily_stats WHERE $__dateFilter(day) AND kind = 'request' AND {ACCOUNT}
        GROUP BY agent, account ORDER BY cost_usd DESC LIMIT 50"""),
    panel(6, "Spend by subject", "table", f"""
        SELECT subject, count() AS calls, round(sum(cost), 6) AS cost_usd FROM usage_ledger
        WHERE $__timeFilter(ts) AND {ACCOUNT} GROUP BY subject ORDER BY cost_usd DESC LIMIT 50"""),
]

DECISIONS = [
    panel(1, "Decisions by action", "timeseries", f"""
        SELECT $__timeInterval(ts) AS time, action, count() AS decisions FROM events
        WHERE $__timeFilter(ts) AND kind = 'decision' AND {ACCOUNT} GROUP BY time, action ORDER BY time""", w=16),
    panel(2, "Denied", "stat", f"""
        SELECT count() AS denied FROM events WHERE $__timeFilter(ts) AND kind = 'decision' AND action = 'deny'
        AND {ACCOUNT}""", w=8),
    panel(3, "Top rules", "table", f"""
        SELECT rule, action, count() AS hits FROM events
        WHERE $__timeFilter(ts) AND kind = 'decision' AND {ACCOUNT}
        GROUP BY rule, action ORDER BY hits DESC LIMIT 30"""),
    panel(4, "Tool calls by tool", "table", f"""
        SELECT tool, sum(calls) AS calls, sum(denied) AS denied
        FROM daily_stats WHERE $__dateFilter(day) AND kind = 'decision' AND {ACCOUNT}
        GROUP BY tool ORDER BY calls DESC LIMIT 30"""),
    panel(5, "Latest denials", "table", f"""
        SELECT ts, account, agent, session, server, tool, rule, reason FROM events
        WHERE $__timeFilter(ts) AND kind = 'decision' AND action = 'deny' AND {ACCOUNT}
        ORDER BY ts DESC LIMIT 100""", w=24),
    panel(6, "Tool definition changes", "table", """
        SELECT ts, server, tool, reason FROM events WHERE $__timeFilter(ts) AND kind = 'tool_changed'
        ORDER BY ts DESC LIMIT 50""", w=24),
]

APPROVALS = [
    panel(1, "Approval events", "timeseries", f"""
        SELECT $__timeInterval(ts) AS time, kind, count() AS events FROM events
        WHERE $__timeFilter(ts) AND kind LIKE 'approval.%' AND {ACCOUNT} GROUP BY time, kind ORDER BY time""", w=16),
    panel(2, "Requested / decided", "stat", f"""
        SELECT countIf(kind = 'approval.created') AS requested, countIf(kind = 'approval.decided') AS decided,
               countIf(kind = 'approval.expired') AS expired
        FROM events WHERE $__timeFilter(ts) AND kind LIKE 'approval.%' AND {ACCOUNT}""", w=8),
    panel(3, "Time to decision (s)", "table", f"""
        SELECT c.tool AS tool, count() AS decided,
               round(quantile(0.5)(dateDiff('millisecond', c.ts, d.ts)) / 1000, 1) AS p50_s,
               round(quantile(0.95)(dateDiff('millisecond', c.ts, d.ts)) / 1000, 1) AS p95_s
        FROM (SELECT approval_id, tool, ts FROM events
              WHERE kind = 'approval.created' AND $__timeFilter(ts) AND {ACCOUNT}) AS c
        INNER JOIN (SELECT approval_id, ts FROM events WHERE kind = 'approval.decided') AS d
        ON c.approval_id = d.approval_id GROUP BY tool ORDER BY decided DESC"""),
    panel(4, "Outcomes", "piechart", """
        SELECT JSONExtractString(data, 'state') AS state, count() AS approvals FROM events
        WHERE $__timeFilter(ts) AND kind = 'approval.decided' GROUP BY state"""),
    panel(5, "Latest approval events", "table", """
        SELECT ts, kind, approval_id, tool, server, reason, data FROM events
        WHERE $__timeFilter(ts) AND kind LIKE 'approval.%' ORDER BY ts DESC LIMIT 100""", w=24),
]

SESSIONS = [
    panel(1, "Active sessions", "timeseries", f"""
        SELECT $__timeInterval(ts) AS time, uniqExact(session) AS sessions FROM events
        WHERE $__timeFilter(ts) AND session != '' AND {ACCOUNT} GROUP BY time ORDER BY time""", w=16),
    panel(2, "Sessions ended by an administrator", "stat", """
        SELECT count() AS ended FROM events WHERE $__timeFilter(ts) AND kind = 'session_end'""", w=8),
    panel(3, "Sessions", "table", f"""
        SELECT session, any(account) AS account, any(agent) AS agent, min(first_ts) AS started,
               max(last_ts) AS last_seen, sum(tool_calls) AS tool_calls, sum(model_calls) AS model_calls,
               sum(denied) AS denied, round(sum(cost), 6) AS cost_usd, max(ended) AS ended
        FROM sessions GROUP BY session
        HAVING last_seen >= $__fromTime AND {ACCOUNT}
        ORDER BY last_seen DESC LIMIT 200""", w=24, h=10),
    panel(4, "Most expensive sessions", "table", f"""
        SELECT session, any(account) AS account, any(agent) AS agent, round(sum(cost), 6) AS cost_usd,
               sum(tokens) AS tokens
        FROM sessions GROUP BY session HAVING max(last_ts) >= $__fromTime AND {ACCOUNT}
        ORDER BY cost_usd DESC LIMIT 20"""),
    panel(5, "Denials per session", "table", f"""
        SELECT session, count() AS denied FROM events
        WHERE $__timeFilter(ts) AND session != '' AND (action = 'deny' OR status IN (401, 403, 429)) AND {ACCOUNT}
        GROUP BY session ORDER BY denied DESC LIMIT 20"""),
]

DASHBOARDS = {"overview": ("airlock-overview", "Airlock · Overview", OVERVIEW),
              "spend": ("airlock-spend", "Airlock · Spend", SPEND),
              "decisions": ("airlock-decisions", "Airlock · Policy decisions", DECISIONS),
              "approvals": ("airlock-approvals", "Airlock · Approvals", APPROVALS),
              "sessions": ("airlock-sessions", "Airlock · Sessions", SESSIONS)}

if __name__ == "__main__":
    for name, (uid, title, panels) in DASHBOARDS.items():
        (HERE / f"{name}.json").write_text(json.dumps(dashboard(uid, title, panels), indent=2) + "\n")
        print(f"wrote {name}.json ({len(panels)} panels)")
