"""The ingester process: flush semantics, a killed ingester, two writer processes on one WAL base."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from proxy.audit.clickhouse import CHDB_OPTIONS
from proxy.audit.events import Redactor
from proxy.audit.ingest import Ingester
from proxy.audit.ingester import spawn_for
from proxy.audit.query import verify
from proxy.audit.writer import Writer
from tests.audit.conftest import flushed, wal_rows
from tests.harness import wait_until

ROOT = Path(__file__).resolve().parents[2]


def _count(sink, where: str = "kind = 'request'") -> int:
    return sink.query(f"SELECT count() AS n FROM events WHERE {where}")[0]["n"]


async def test_flush_means_every_emitted_row_is_in_clickhouse(make_sink):
    """Rows sealed by size, by time and by flush itself: right after flush() returns, exactly N rows."""
    s = make_sink(batch_size=700, flush_seconds=60)
    await s.start()
    total = 0
    for n in (1, 699, 2500, 3):
        for i in range(n):
            s.emit("request", path=f"/f/{total + i}")
        total += n
        await flushed(s)
        assert _count(s) == total                           # no waiting: flush() already means "in ClickHouse"
    assert _count(s, "1") == total + 1                      # + audit_start, nothing twice
    assert not list(s.wal_dir.glob("*.wal*"))
    await s.close()


async def test_killed_ingester_is_restarted_and_loses_nothing(make_sink):
    s = make_sink()
    await s.start()
    for i in range(200):
        s.emit("request", path=f"/k/{i}")
    await flushed(s)
    first = s.ingester.handle.pid
    os.kill(first, signal.SIGKILL)
    for i in range(200, 500):                               # durable in the WAL while no ingester runs
        assert await s.write("request", path=f"/k/{i}")
    wait_until(lambda: s.ingester.restarts >= 1 and s.ingester.handle.alive(), 60, "the ingester restarted")
    assert s.ingester.handle.pid != first
    await flushed(s, 60)
    paths = [r["path"] for r in s.query("SELECT path FROM events WHERE kind = 'request' ORDER BY seq")]
    assert paths == [f"/k/{i}" for i in range(500)]
    assert verify(s)["ok"]
    assert s.stats()["ingester"]["restarts"] >= 1
    await s.close()


_WRITER = textwrap.dedent("""
    import asyncio, json, os, sys
    from proxy.audit import AuditSink

    async def main(wal, n, die):
        s = AuditSink("chdb://unused", wal, ingester="external", flush_seconds=0.05, batch_size=50)
        await s.start()
        acked = 0
        for i in range(n):
            if await s.write("request", path=f"/{os.getpid()}/{i}"):
                acked += 1
        print(json.dumps({"stream": s.writer.chain.stream, "acked": acked}), flush=True)
        if die:
            os.kill(os.getpid(), 9)           # no close: the open segment stays unsealed
        assert s.flush(60)
        await s.close()

    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3] == "die"))
""")


def test_two_writer_processes_share_one_wal_base_and_one_ingester(tmp_path):
    wal = tmp_path / "wal"
    ing = spawn_for(f"chdb://{tmp_path / 'ch'}", wal)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    try:
        procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(wal), "300", mode], env=env,
                                  stdout=subprocess.PIPE, text=True) for mode in ("live", "die")]
        outs = [json.loads(p.communicate(timeout=120)[0].strip().splitlines()[-1]) for p in procs]
        assert procs[0].returncode == 0 and procs[1].returncode == -signal.SIGKILL
        assert [o["acked"] for o in outs] == [300, 300]
        reader = _Reader(wal)
        # the dead writer's slot is taken whole, its unsealed segment included
        wait_until(lambda: reader.count() == 602, 60, "both writers' rows in ClickHouse")
        streams = {r["stream"]: r["n"] for r in reader.query("SELECT stream, count() AS n FROM events GROUP BY stream")}
        assert streams == {outs[0]["stream"]: 301, outs[1]["stream"]: 301}
        assert verify(reader)["ok"]
        wait_until(lambda: not [p for p in wal.rglob("*.wal*")], 30, "every segment deleted")
    finally:
        assert ing.stop(60) == 0
    assert not ing.alive() and not list(wal.rglob("*.wal*"))


class _Reader:
    """Queries through the running ingester, as a proxy in external mode does."""

    def __init__(self, wal: Path):
        from proxy.audit.supervise import IngesterLink
        self.link = IngesterLink("", wal, spawn=False)

    def query(self, sql: str, params=None, settings=None):
        cols, rows = self.link.call("query", sql=sql, params=params, settings=settings)
        return [dict(zip(cols, r)) for r in rows]

    def count(self) -> int:
        return self.query("SELECT count() AS n FROM events")[0]["n"]


def test_torn_open_segment_of_a_dead_writer(tmp_path):
    """A dead writer's open segment with half a line: the whole lines go in, the torn one is skipped;
    unreadable or refused rows are counted and never block the rest."""
    wal = tmp_path / "wal"
    wal.mkdir()
    line = b'{"ts":"1700000000.000001","kind":"request","stream":"dead","seq":0,"path":"/ok"}\n'
    (wal / ("0" * 19 + "1-dead.wal.open")).write_bytes(line + b"not json\n" + b'{"ts": 1, "kind": "req')
    # and a segment ClickHouse cannot parse: set aside and counted, it must not block the others
    (wal / ("0" * 19 + "2-bad.wal")).write_bytes(b'{"ts":"yesterday","kind":"request","seq":0}\n')
    (wal / ("0" * 19 + "3-next.wal")).write_bytes(line.replace(b'"dead"', b'"next"'))
    ing = spawn_for(f"chdb://{tmp_path / 'ch'}", wal)
    try:
        reader = _Reader(wal)
        wait_until(lambda: _ready(reader) and reader.count() == 2, 60, "the whole lines ingested")
        assert not list(wal.glob("*.wal*"))
        assert [p.name for p in (wal / "rejected").iterdir()] == ["0" * 19 + "2-bad.wal"]
        assert reader.link.call("stats")["rows_rejected"] == 2       # the unreadable line and the refused row
    finally:
        ing.stop(60)


def _ready(reader: _Reader) -> bool:
    try:
        return bool(reader.link.call("ping")["ready"])
    except OSError:
        return False


def test_a_pass_waits_for_a_worthwhile_insert_unless_asked(tmp_path):
    """Small young segments wait (one insert per few seconds costs ClickHouse far less CPU per row); a
    flush (ask_now), an old segment or enough bytes make the pass insert them."""
    wal = tmp_path / "wal"
    wal_rows(wal, ["/a/0", "/a/1"])
    ing = Ingester(f"chdb://{tmp_path / 'ch'}", wal, max_wait=3600)
    try:
        assert ing.run_pass() and ing.ready and not ing.pending()      # the first pass takes what is there
        wal_rows(wal, ["/b/0"])
        assert ing.run_pass() and ing.pending()                        # one small, young segment: it waits
        ing.ask_now()
        assert ing.run_pass() and not ing.pending()
        wal_rows(wal, ["/c/0"])
        ing.max_wait = 0.0                                             # it has waited long enough
        assert ing.run_pass() and not ing.pending()
        wal_rows(wal, ["/d/0"])
        ing.max_wait, ing.min_bytes = 3600, 1                          # enough bytes for one insert
        assert ing.run_pass() and not ing.pending()
        with ing.client_lock:
            res = ing.client().query("SELECT path FROM events")
        assert sorted(r[0] for r in res.result_rows) == ["/a/0", "/a/1", "/b/0", "/c/0", "/d/0"]
    finally:
        ing._drop_client()


def test_a_torn_last_line_is_cut_before_clickhouse_reads_the_segments(tmp_path):
    """Segments go to ClickHouse as files, unless one ends in a torn line (a dead writer's): then the
    batch goes in from memory without it, and the whole lines of every segment are in, once."""
    wal = tmp_path / "wal"
    ing = Ingester(f"chdb://{tmp_path / 'ch'}", wal)
    try:
        assert ing.run_pass()
        line = b'{"ts":"1700000000.000001","kind":"request","stream":"dead","seq":0,"path":"/ok"}\n'
        (wal / ("0" * 19 + "1-dead.wal.open")).write_bytes(line + b'{"ts": 1, "kind": "req')
        (wal / ("0" * 19 + "2-next.wal")).write_bytes(line.replace(b'"dead"', b'"next"'))
        assert ing.run_pass() and not list(wal.glob("*.wal*"))         # a dead writer's slot: taken at once
        wal_rows(wal, ["/a/0", "/a/1"])
        ing.ask_now()
        assert ing.run_pass() and not list(wal.glob("*.wal*"))
        with ing.client_lock:
            res = ing.client().query("SELECT stream, path FROM events ORDER BY path, stream")
        assert [r[1] for r in res.result_rows] == ["/a/0", "/a/1", "/ok", "/ok"]
        assert {r[0] for r in res.result_rows[2:]} == {"dead", "next"}
        assert (ing.figures["rows_written"], ing.figures["rows_rejected"]) == (4, 0)
    finally:
        ing._drop_client()


def test_segments_read_by_clickhouse_land_as_a_plain_insert_of_the_lines_would(tmp_path):
    """ClickHouse reads the segments through file() with LowCardinality columns parsed as plain strings:
    every column of every row is what inserting the same JSON lines into ``events`` gives."""
    wal = tmp_path / "wal"
    w = Writer(wal, Redactor(), flush_seconds=60)
    w.start()
    for i in range(3):
        w.put("request", {"path": f"/p/{i}", "account": "acme", "agent": f"agent-{i % 2}", "model": "gpt-é\"\\",
                          "status": 200 + i, "cost": 0.5 * i, "tokens_in": i, "extra": {"k": [i, "v"]}})
    assert w.seal_wait(30)
    w.stop()
    lines = b"".join(p.read_bytes() for p in sorted(wal.glob("*.wal")))
    ing = Ingester(f"chdb://{tmp_path / 'ch'}", wal)
    try:
        assert ing.run_pass() and not ing.pending()
        with ing.client_lock:
            c = ing.client()
            assert "LowCardinality" not in ing._structure and "`agent` String" in ing._structure
            c.command("CREATE TABLE events_as_lines AS events")
            c.raw_insert("events_as_lines", None, lines, fmt="JSONEachRow")
            got, want = (c.raw_query(f"SELECT * FROM {t} WHERE kind = 'request' ORDER BY seq FORMAT JSONEachRow")
                         for t in ("events", "events_as_lines"))
        assert got == want and got.count(b"\n") == 3 and b"agent-1" in got
        assert ing.figures["rows_written"] == lines.count(b"\n")
    finally:
        ing._drop_client()


def test_chdb_runs_one_merge_at_a_time_with_capped_caches(tmp_path):
    """The server settings chDB is opened with reach the engine (they bound the ingester's memory)."""
    ing = Ingester(f"chdb://{tmp_path / 'ch'}", tmp_path / "wal")
    try:
        with ing.client_lock:
            res = ing.client().query("SELECT name, value FROM system.server_settings WHERE name IN "
                                     "{names:Array(String)}", parameters={"names": list(CHDB_OPTIONS)})
        assert {n: int(v) for n, v in res.result_rows} == CHDB_OPTIONS
    finally:
        ing._drop_client()
