"""Tamper evidence: `verify` finds edited, deleted and re-linked rows in real chDB; migrations are versioned."""
from __future__ import annotations

from proxy.audit import migrate as mig
from proxy.audit.chain import Chain, row_hash, verify_rows
from proxy.audit.events import Redactor, build_row
from proxy.audit.query import QueryError, check_read_only, verify
from tests.audit.conftest import flushed


def _admin(sink, sql: str) -> None:
    sink.command(sql)                      # runs in the ingester, which owns the ClickHouse client


async def _filled(make_sink, n: int = 30):
    s = make_sink()
    await s.start()
    for i in range(n):
        s.emit("request", account="acme", path=f"/v/{i}", status=200, cost=0.001 * i)
    await flushed(s)
    return s


async def test_intact_trail_verifies(make_sink):
    s = await _filled(make_sink)
    report = verify(s)
    assert report == {"ok": True, "streams": 1, "rows": 31, "problem_count": 0, "problems": []}
    await s.close()


async def test_edited_row_is_reported(make_sink):
    s = await _filled(make_sink)
    _admin(s, "ALTER TABLE events UPDATE status = 500 WHERE path = '/v/7' SETTINGS mutations_sync = 1")
    report = verify(s)
    assert not report["ok"]
    assert [(p["seq"], p["problem"]) for p in report["problems"]] == [(8, "edited")]
    await s.close()


async def test_edit_with_recomputed_hash_breaks_the_next_link(make_sink):
    """Rewriting a row *and* its hash still shows: the next row points at the old hash."""
    s = await _filled(make_sink)
    row = s.query("SELECT * FROM events WHERE path = '/v/3'")[0]
    _admin(s, "ALTER TABLE events UPDATE hash = 'f00d' WHERE path = '/v/3' SETTINGS mutations_sync = 1")
    problems = [(p["seq"], p["problem"]) for p in verify(s)["problems"]]
    assert (row["seq"], "edited") in problems and (row["seq"] + 1, "broken_link") in problems
    await s.close()


async def test_deleted_rows_are_a_gap(make_sink):
    s = await _filled(make_sink)
    _admin(s, "ALTER TABLE events DELETE WHERE path IN ('/v/10', '/v/11') SETTINGS mutations_sync = 1")
    report = verify(s)
    assert [(p["seq"], p["problem"]) for p in report["problems"]] == [(11, "gap")]
    assert "11..12" in report["problems"][0]["detail"]
    await s.close()


def test_chain_in_memory_duplicates_and_order():
    red = Redactor()
    chain = Chain("s")
    rows = [chain.link(build_row("request", {"path": f"/{i}"}, red, ts=1000.0 + i)) for i in range(5)]
    assert verify_rows(rows)["ok"]
    assert verify_rows(rows + [dict(rows[-1])])["problems"][0]["problem"] == "duplicate"
    swapped = rows[:1] + [dict(rows[2], seq=1), dict(rows[1], seq=2)] + rows[3:]
    assert {p["problem"] for p in verify_rows(swapped)["problems"]} >= {"edited", "broken_link"}


def test_link_hashes_what_verify_recomputes():
    """``link`` hashes a fresh row's values in column order; ``verify`` recomputes the hash column by column
    from a stored row (any key order, ``ts`` as text)."""
    red = Redactor(["literal-secret-1"])
    chain = Chain("s")
    events = [("request", {"path": "/a", "status": "500", "cost": 0.5, "extra": {"token": "x"}}),
              ("decision", {"action": "deny", "reason": "Bearer abcdefghijkl literal-secret-1"}),
              ("key_mint", {"tokens_in": -1, "input_tokens": 3, "session": "s" * 40})]
    rows = [chain.link(build_row(k, f, red, ts=1000.5 + i)) for i, (k, f) in enumerate(events)]
    rows.append(chain.link({**build_row("request", {}, red, ts=1001.0), "extra": 1}))   # not fresh: by name
    assert [row_hash(r) == r["hash"] for r in rows] == [True] * 4
    assert verify_rows([dict(reversed(r.items())) for r in rows])["ok"]


def test_read_only_check():
    assert check_read_only("  -- why\n SELECT 1;") == "SELECT 1"
    assert check_read_only("WITH x AS (SELECT 1) SELECT * FROM x")
    assert check_read_only("SELECT ';' AS semi")
    for bad in ("", "DROP TABLE events", "SELECT 1; DROP TABLE events", "ALTER TABLE events DELETE WHERE 1",
                "/* SELECT */ INSERT INTO events VALUES"):
        try:
            check_read_only(bad)
        except QueryError:
            continue
        raise AssertionError(f"accepted {bad!r}")


async def test_migrations_are_versioned_and_idempotent(make_sink):
    known = [v for v, _, _ in mig.migrations()]
    for _ in range(2):                                # the second start finds every migration applied
        s = make_sink()
        await s.start()
        versions = [r["version"] for r in s.query("SELECT version FROM schema_migrations ORDER BY version")]
        assert versions == known
        tables = {r["name"] for r in s.query("SELECT name FROM system.tables WHERE database = currentDatabase()")}
        assert {"events", "usage_ledger", "daily_stats", "sessions", "schema_migrations"} <= tables
        await s.close()


def test_statement_splitting():
    sql = "-- c;\nCREATE TABLE a (x String DEFAULT ';') ENGINE = Memory;\n\nCREATE VIEW v AS SELECT 1;\n"
    assert mig.statements(sql) == ["CREATE TABLE a (x String DEFAULT ';') ENGINE = Memory",
                                   "CREATE VIEW v AS SELECT 1"]


def test_cli_db_migrate(tmp_path):
    import json as _json

    from tests.harness import run_cli
    dsn = f"chdb://{tmp_path / 'ch'}"
    first = run_cli("db", "migrate", "--dsn", dsn, "--json")
    assert first.returncode == 0, first.stderr
    out = _json.loads(first.stdout)
    assert out["applied_now"] == out["known"] and out["versions"] == [v for v, _, _ in mig.migrations()]
    again = run_cli("db", "migrate", "--dsn", dsn)
    assert again.returncode == 0 and "0 migration(s) applied" in again.stdout
    bad = run_cli("db", "migrate", "--dsn", "http://127.0.0.1:9/default")
    assert bad.returncode == 1 and "cannot open" in bad.stderr and "Traceback" not in bad.stderr


async def test_paged_export_verify_tail_and_sessions(make_sink, monkeypatch):
    import csv
    import io
    import json as _json

    from proxy.audit import query as q
    from proxy.sessions import Sessions
    from proxy.store.memory import MemoryStore
    s = await _filled(make_sink, n=30)
    monkeypatch.setattr(q, "PAGE", 7)                       # force several pages
    lines = b"".join(q.export(s, "jsonl")).decode().splitlines()
    assert [_json.loads(x)["seq"] for x in lines] == list(range(31))
    table = list(csv.DictReader(io.StringIO(b"".join(q.export(s, "csv")).decode())))
    assert [int(r["seq"]) for r in table] == list(range(31))
    assert q.export_count(s, None, None) == 31
    assert verify(s)["rows"] == 31 and verify(s)["ok"]
    first = q.tail(s, None, limit=5)
    assert [r["seq"] for r in first["rows"]] == [26, 27, 28, 29, 30]
    s.emit("request", path="/late", session="sess-x", account="acme")
    await flushed(s)
    nxt = q.tail(s, first["cursor"], limit=5)
    assert [r["path"] for r in nxt["rows"]] == ["/late"]
    assert q.tail(s, nxt["cursor"])["rows"] == []
    sessions = Sessions(MemoryStore(), s)
    assert [x["session"] for x in sessions.list(since_us=q.parse_time("1h"))] == ["sess-x"]
    assert sessions.list(since_us=q.parse_time("2999-01-01T00:00:00Z")) == []
    assert sessions.list(account="nobody") == []
    await s.close()


async def test_query_limit_is_enforced_by_clickhouse(make_sink):
    from proxy.audit.query import run_query
    s = await _filled(make_sink, n=30)
    out = run_query(s, "SELECT * FROM events", limit=10)
    assert out["count"] == 10 and out["truncated"] is True
    assert run_query(s, "SELECT count() AS n FROM events")["rows"] == [{"n": 31}]
    await s.close()
