"""The audit writer + its ingester process against real chDB: rows, redaction, WAL spill and replay,
dedup, fail-closed."""
from __future__ import annotations

import os
import shutil

import pytest

from proxy.audit import metrics as m
from proxy.audit.ingest import Ingester
from proxy.audit.wal import Wal
from tests.audit.conftest import closed_port, flushed, wal_rows
from tests.harness import wait_until


async def test_rows_land_with_typed_columns_and_chain(make_sink):
    s = make_sink()
    await s.start()
    s.emit("request", account="acme", agent="claude", session="s1", listener="gateway", route_kind="openai",
           route_name="openai", method="POST", path="/v1/chat/completions", status=200, latency_ms=12.5,
           model="gpt-4o-mini", tokens_in=10, tokens_out=5, tokens=15, cost=0.0003, extra_note="hi")
    assert await s.write("decision", tool="bash", server="shell", action="deny", rule="no-prod")
    await flushed(s)
    rows = s.query("SELECT * FROM events ORDER BY seq")
    kinds = [r["kind"] for r in rows]
    assert kinds == ["audit_start", "request", "decision"]
    req = rows[1]
    assert (req["account"], req["status"], req["model"], req["tokens"]) == ("acme", 200, "gpt-4o-mini", 15)
    assert req["latency_ms"] == 12.5 and abs(req["cost"] - 0.0003) < 1e-12
    assert '"extra_note":"hi"' in req["data"]
    assert [r["seq"] for r in rows] == [0, 1, 2]
    assert rows[1]["prev_hash"] == rows[0]["hash"] and rows[2]["prev_hash"] == rows[1]["hash"]
    # the usage ledger and the daily roll-up are filled by materialized views
    assert s.query("SELECT count() AS n FROM usage_ledger")[0]["n"] == 1
    daily = s.query("SELECT sum(calls) AS c, sum(tokens_in) AS t FROM daily_stats WHERE kind = 'request'")
    assert (daily[0]["c"], daily[0]["t"]) == (1, 10)
    await s.close()


async def test_secrets_never_reach_a_row(make_sink, tmp_path):
    planted = {
        "openai": "sk-proj-Zx9Qw8Er7Ty6Ui5Op4As3Df2",
        "gateway": "alk_0123456789abcdef_S3cr3tS3cr3tS3cr3tS3cr3t",
        "github": "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
        "literal": "plain-looking-value-7731",
    }
    s = make_sink(secrets=[planted["literal"]], preview_chars=64)
    await s.start()
    s.emit("decision", tool="bash", args={"command": f"curl -H 'Authorization: Bearer {planted['openai']}' x",
                                          "token": "whatever-the-shape", "env": {"GITHUB": planted["github"]}},
           reason=f"prompt said use {planted['gateway']}", subject=planted["literal"],
           prompt="x" * 5000)
    await flushed(s)
    rows = s.query("SELECT * FROM events")
    text = repr(rows)
    for value in (*planted.values(), "whatever-the-shape"):
        assert value not in text
    assert "[REDACTED]" in text
    dec = [r for r in rows if r["kind"] == "decision"][0]
    assert len(dec["data"]) < 5000            # the prompt preview was truncated
    # nor in the WAL (rows are redacted before they are written anywhere)
    for p in (tmp_path / "wal").glob("*.wal*"):
        for value in planted.values():
            assert value.encode() not in p.read_bytes()
    await s.close()


async def test_wal_segments_removed_once_inserted(make_sink, tmp_path):
    s = make_sink(flush_seconds=60, batch_size=10_000)
    await s.start()
    for i in range(20):
        assert await s.write("request", account="a", status=200, seq_hint=i)
    # durable before any insert: the rows are in the WAL, not yet in ClickHouse
    wal_rows = [r for p in s.writer.wal.segments() for r in Wal.read(p)]
    assert len([r for r in wal_rows if r["kind"] == "request"]) == 20
    await s.close()                                     # seals; the ingester inserts everything, then exits
    assert list((tmp_path / "wal").glob("*.wal*")) == []
    s2 = make_sink()
    await s2.start()
    assert s2.query("SELECT count() AS n FROM events WHERE kind = 'request'")[0]["n"] == 20
    await s2.close()


async def test_unreachable_clickhouse_spills_then_replays_in_order(make_sink, tmp_path):
    """ClickHouse at a closed port: rows accumulate in the WAL; a sink that reaches ClickHouse replays them.

    No ClickHouse server binary is available here, so "ClickHouse comes back" is a second writer on the same
    WAL pointed at real chDB (the WAL is what carries rows across; the insert path is the same client API).
    """
    down = make_sink(dsn=f"http://127.0.0.1:{closed_port()}/default")
    await down.start()
    assert down.stats()["backlog"]
    for i in range(300):
        assert await down.write("request", account="acme", status=200, path=f"/p/{i}")
    assert down.stats()["wal_bytes"] > 0
    assert down.healthy()                       # durable in the WAL: still accepting governed calls
    await down.close()
    assert list((tmp_path / "wal").glob("*.wal"))

    up = make_sink()
    await up.start()
    await flushed(up)
    rows = up.query("SELECT path, stream, seq FROM events WHERE kind = 'request' ORDER BY stream, seq")
    assert [r["path"] for r in rows] == [f"/p/{i}" for i in range(300)]
    assert up.stats()["rows_replayed"] >= 300            # uncertain at start: checked against ClickHouse
    assert list((tmp_path / "wal").glob("*.wal")) == []
    from proxy.audit.query import verify
    assert verify(up)["ok"]
    await up.close()


def test_ingester_retries_with_backoff_and_catches_up(tmp_path):
    """The ingest loop (run here in the test process) keeps rows in the WAL while ClickHouse fails, backs
    off, and ingests the backlog in order as soon as ClickHouse answers again."""
    wal = tmp_path / "wal"
    wal_rows(wal, [f"/a/{i}" for i in range(50)])
    ing = Ingester(f"http://127.0.0.1:{closed_port()}/default", wal)
    try:
        assert not ing.run_pass() and ing.backlog and ing.figures["insert_errors"] == 1
        assert not ing.run_pass()                          # backing off: no new attempt yet
        assert ing.figures["insert_errors"] == 1 and ing.next_try > 0
        assert ing.pending()                               # rows wait in the WAL
        ing.dsn = f"chdb://{tmp_path / 'ch'}"             # ClickHouse is back
        wal_rows(wal, [f"/a/{i}" for i in range(50, 60)])
        assert ing.run_pass(force=True) and not ing.backlog and not ing.pending()
        with ing.client_lock:
            res = ing.client().query("SELECT path FROM events WHERE kind = 'request' ORDER BY stream, seq")
        assert [r[0] for r in res.result_rows] == [f"/a/{i}" for i in range(60)]
    finally:
        ing._drop_client()


async def test_replay_skips_rows_clickhouse_already_has(make_sink, tmp_path):
    """A crash between insert and segment delete must not duplicate rows."""
    s = make_sink(flush_seconds=60, batch_size=10_000)
    await s.start()
    for i in range(40):
        assert await s.write("request", path=f"/d/{i}")
    saved = tmp_path / "saved"
    saved.mkdir()
    for p in (tmp_path / "wal").glob("*.wal*"):
        shutil.copy(p, saved / p.name)
    await s.close()                                    # inserted, WAL segments deleted
    for p in saved.iterdir():                          # ...as if the ingester died before deleting them
        shutil.copy(p, tmp_path / "wal" / p.name.replace(".wal.open", ".wal"))
    s2 = make_sink()
    await s2.start()
    await flushed(s2)
    assert s2.query("SELECT count() AS n FROM events WHERE kind='request'")[0]["n"] == 40
    assert s2.stats()["rows_deduplicated"] >= 40
    await s2.close()


async def test_torn_wal_line_is_ignored(make_sink, tmp_path):
    wal = tmp_path / "wal"
    wal.mkdir()
    s = make_sink(flush_seconds=60)
    await s.start()
    assert await s.write("request", path="/whole")
    seg = sorted(wal.glob("*.wal*"))[0]
    good = seg.read_bytes()
    await s.close()
    # a crashed writer left a complete batch and half a line
    (wal / ("0" * 19 + "1-dead.wal")).write_bytes(good + b'{"ts": 1, "kind": "req')
    s2 = make_sink()
    await s2.start()
    await flushed(s2)
    assert s2.query("SELECT count() AS n FROM events WHERE path = '/whole'")[0]["n"] == 1
    await s2.close()


async def test_queue_full_is_counted_not_silent(make_sink, caplog):
    s = make_sink(queue_size=5)                  # not started: nothing drains the queue
    dropped0 = m.ROWS_DROPPED.labels("queue_full")._value.get()
    for i in range(8):
        s.emit("request", path=str(i))
    assert m.ROWS_DROPPED.labels("queue_full")._value.get() - dropped0 == 3
    assert "dropped" in caplog.text
    await s.close()


async def test_odd_input_never_raises(make_sink):
    s = make_sink()
    await s.start()

    class Weird:
        def __str__(self):
            raise RuntimeError("no")

    s.emit("request", status="not-a-number", latency_ms=float("nan"), tokens=-5, obj=object(), nested={1: {2: [3]}})
    s.emit("request", weird=Weird())
    await flushed(s)
    rows = s.query("SELECT kind, status, latency_ms, tokens FROM events WHERE kind IN ('request','error')")
    assert len(rows) == 2
    assert rows[0]["status"] == 0 and rows[0]["latency_ms"] == 0.0 and rows[0]["tokens"] == 0
    await s.close()


def _mount_tmpfs(path, size: str) -> bool:
    import subprocess
    path.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


async def test_disk_full_fails_closed_then_recovers(make_sink, tmp_path):
    import subprocess
    wal = tmp_path / "fullwal"
    if not _mount_tmpfs(wal, "256k"):
        pytest.skip("needs root to mount a small tmpfs for the disk-full case")
    try:
        s = make_sink(wal="fullwal", flush_seconds=3600, batch_size=1_000_000, fail_closed=True)
        await s.start()
        big = "y" * 400
        results = []
        for i in range(2000):
            results.append(await s.write("request", path=f"/f/{i}", note=big))
            if not results[-1]:
                break
        assert results[-1] is False                  # the WAL filled up
        assert not s.accepting and not s.healthy()   # governed calls are refused from now on
        assert s.write_now("request", path="/now-full") is False     # from the event loop: kept in memory too
        assert m.ROWS_DROPPED.labels("wal_unwritable")._value.get() == 0
        # space comes back (the rows reach ClickHouse and their segments are deleted): accepting again
        subprocess.run(["mount", "-o", "remount,size=16m", str(wal)], check=True)
        assert await s.write("request", path="/after")
        assert s.accepting
        assert s.write_now("request", path="/now-after") is True
        await s.close()
        s2 = make_sink()
        await s2.start()
        n = s2.query("SELECT count() AS n FROM events WHERE kind='request'")[0]["n"]
        assert n == len(results) + 3                 # nothing forgotten, the failed ones included
        paths = [r["path"] for r in s2.query("SELECT path FROM events WHERE kind='request' ORDER BY seq")]
        assert paths[-3:] == ["/now-full", "/after", "/now-after"]    # in the order they were written
        await s2.close()
    finally:
        subprocess.run(["umount", "-l", str(wal)])


async def test_derived_metrics_count_recorded_rows(make_sink):
    s = make_sink()
    deny0 = m.DECISIONS.labels("deny", "no-prod")._value.get()
    cost0 = m.MODEL_COST.labels("openai", "gpt-4o")._value.get()
    await s.start()
    s.emit("decision", action="deny", rule="no-prod", tool="bash")
    s.emit("decision", action="deny", rule="no-prod", tool="bash")
    s.emit("request", provider="openai", model="gpt-4o", cost=0.25)
    s.emit("approval.created", approval_id="a1")
    await flushed(s)
    assert m.DECISIONS.labels("deny", "no-prod")._value.get() - deny0 == 2
    assert abs(m.MODEL_COST.labels("openai", "gpt-4o")._value.get() - cost0 - 0.25) < 1e-9
    assert m.APPROVAL_EVENTS.labels("approval.created")._value.get() >= 1
    await s.close()


async def test_two_writers_on_one_wal_dir_never_touch_each_others_segments(make_sink, tmp_path):
    """A second writer takes its own slot; a dead writer's slot is replayed by the next one to start."""
    a = make_sink(dsn=f"http://127.0.0.1:{closed_port()}/default")
    b = make_sink(dsn=f"http://127.0.0.1:{closed_port()}/default")
    await a.start()
    await b.start()
    assert a.writer.wal.dir != b.writer.wal.dir
    assert await a.write("request", path="/from-a")
    assert await b.write("request", path="/from-b")
    a_rows = [r["seq"] for p in a.writer.wal.segments() for r in Wal.read(p)]
    await b.close()                                    # b's slot is now orphaned, a's is live
    assert [r["seq"] for p in a.writer.wal.segments() for r in Wal.read(p)] == a_rows   # a's rows untouched
    await a.close()
    c = make_sink()
    await c.start()
    await flushed(c)
    paths = sorted(r["path"] for r in c.query("SELECT path FROM events WHERE kind = 'request'"))
    assert paths == ["/from-a", "/from-b"]
    assert not list((tmp_path / "wal").rglob("*.wal"))
    await c.close()


async def test_backlog_gauges(make_sink):
    """The proxy's /metrics shows the ingester's figures under the usual names."""
    from prometheus_client import REGISTRY
    s = make_sink(dsn=f"http://127.0.0.1:{closed_port()}/default", batch_size=1)
    await s.start()
    assert await s.write("request", path="/g")

    def sample(name):
        return REGISTRY.get_sample_value(name)
    wait_until(lambda: sample("airlock_audit_wal_segments") and sample("airlock_audit_backlog") == 1, 20,
               "the ingester's backlog figures")
    assert sample("airlock_audit_accepting") == 1 and sample("airlock_audit_wal_bytes") > 0
    assert sample("airlock_audit_insert_errors_total") >= 1
    await s.close()


def test_a_detached_segment_is_sealed_apart_while_appends_go_on(tmp_path):
    """The writer hands a segment over under its lock and seals it (fsync, rename, directory fsync)
    outside it: appends in between go to a new segment, and the ingester reads both in write order."""
    wal = Wal(tmp_path, "s1")
    wal.append([{"seq": 0}])
    fd, new_entry = wal.dirty_fd()
    os.close(fd)
    assert new_entry and wal.dirty_fd() is None          # the directory entry is fsynced once
    wal.append([{"seq": 1}])
    seg = wal.detach()
    wal.append([{"seq": 2}])                             # no disk wait: a new open segment
    fd, new_entry = wal.dirty_fd()
    os.close(fd)
    assert new_entry
    assert len(wal.segments()) == 2 and all(p.name.endswith(".wal.open") for p in wal.segments())
    seg.seal()
    first, second = wal.segments()
    assert first.name.endswith(".wal") and second.name.endswith(".wal.open")
    assert [r["seq"] for p in wal.segments() for r in Wal.read(p)] == [0, 1, 2]
    wal.close()
    assert [p.name.endswith(".wal") for p in wal.segments()] == [True, True]


async def test_a_long_group_commit_loses_nothing_and_holds_up_no_flush(make_sink):
    """``audit.group_commit_ms`` spaces the writer's rounds (fsyncs); a ``write()`` waiter and a flush still
    go at once, and every row, queued or written from the caller's thread, lands and counts as durable."""
    s = make_sink(group_commit_ms=1000, flush_seconds=60)
    assert s.writer.group_seconds == 1.0
    await s.start()
    durable = m.ROWS_DURABLE._value.get()
    for i in range(3):
        s.emit("request", path=f"/queued/{i}")
    for i in range(2):
        assert s.write_now("request", path=f"/now/{i}") is True
    assert await s.write("decision", tool="bash", action="deny")
    await flushed(s)
    paths = [r["path"] for r in s.query("SELECT path FROM events WHERE kind = 'request' ORDER BY seq")]
    assert paths == ["/queued/0", "/queued/1", "/queued/2", "/now/0", "/now/1"]
    assert m.ROWS_DURABLE._value.get() - durable == 7          # audit_start, five requests, the decision
    await s.close()


def test_group_commit_is_bounded(tmp_path):
    from proxy.audit.events import Redactor
    from proxy.audit.writer import Writer
    assert Writer(tmp_path / "a", Redactor(), group_seconds=30).group_seconds == 1.0
    assert Writer(tmp_path / "b", Redactor(), group_seconds=0).group_seconds == 0.001


def test_write_now_wakes_a_sleeping_writer_to_fsync(tmp_path):
    """With nothing pending the writer sleeps until told; each row ``write_now`` writes then must still be
    fsynced (counted durable) with no other event, flush or waiter to wake it, round after round."""
    from proxy.audit.events import Redactor
    from proxy.audit.writer import Writer
    w = Writer(tmp_path / "wal", Redactor(), flush_seconds=0.01)   # sealed at once: the writer then sleeps
    w.start()
    try:
        for i in range(20):
            durable = m.ROWS_DURABLE._value.get()
            wait_until(lambda: w._parked, what="the writer asleep")
            assert w.write_now("request", {"path": f"/r/{i}"}) is True
            wait_until(lambda: m.ROWS_DURABLE._value.get() > durable, what=f"row {i} fsynced")
    finally:
        w.stop()
    assert sum(1 for p in (tmp_path / "wal").glob("*.wal") for _ in open(p, "rb")) == 20
