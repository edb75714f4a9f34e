"""The audit writer: bounded queue -> WAL (fsync per batch) -> batched ClickHouse inserts.

Two threads, so neither the event loop nor a waiting client ever waits on ClickHouse:

- the *writer* thread owns the queue, the hash chain and the WAL: it takes every queued event,
  builds + redacts + chains the rows, appends them to the WAL and fsyncs. The rows now count as
  written and waiters are told. It also decides when to insert and hands that work on;
- the *insert* thread runs one ClickHouse job at a time: an insert of the pending rows (by
  ``batch_size`` or ``flush_seconds``; their sealed WAL segments are deleted afterwards) or a replay.

If ClickHouse fails, the writer switches to *backlog*: rows only go to the WAL; every retry
(backoff up to 30 s) replays the sealed segments in order, skipping rows ClickHouse already has
(``stream``, ``seq``), so a crash between insert and delete never duplicates a row. Rows written
while a replay runs are kept pending and inserted normally once it succeeds.

If the WAL cannot be written (disk full) rows are kept in memory and written first on the next
round; meanwhile ``accepting`` is False so the audit addon can refuse governed calls (fail closed).
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from . import metrics as m
from .chain import Chain
from .events import Redactor, build_row
from .migrate import migrate
from .wal import Wal, WalError

log = logging.getLogger("airlock.audit")

MAX_UNSAVED = 200_000          # rows kept in memory while the WAL cannot be written
RETRY_MAX_SECONDS = 30.0


def connect(dsn: str) -> Any:
    import clickhouse_connect
    if dsn.startswith("chdb://"):
        return clickhouse_connect.get_client(dsn=dsn)
    return clickhouse_connect.get_client(dsn=dsn, connect_timeout=3, send_receive_timeout=30,
                                         query_retries=0, autogenerate_session_id=False)


def redacted_dsn(dsn: str) -> str:
    """The DSN without its password, for logs."""
    if "@" in dsn and "://" in dsn:
        scheme, rest = dsn.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"
    return dsn


class Writer:
    def __init__(self, dsn: str, wal_dir: Path, redactor: Redactor, batch_size: int = 5000,
                 flush_seconds: float = 1.0, queue_size: int = 100_000, fail_closed: bool = True):
        self.dsn = dsn
        self.redactor = redactor
        self.batch_size = max(1, int(batch_size))
        self.flush_seconds = max(0.01, float(flush_seconds))
        self.queue_size = max(1, int(queue_size))
        self.fail_closed = fail_closed
        self.chain = Chain()
        self.wal = Wal(wal_dir, self.chain.stream)
        self._q: deque = deque()
        self._cv = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._client: Any = None
        self._client_lock = threading.Lock()
        self.backlog = True            # replay the WAL before inserting new rows (start-up included)
        self.accepting = True
        self.last_error: str | None = None
        self._unsaved: list[dict[str, Any]] = []
        self._pending: list[bytes] = []          # JSON lines in the WAL, not yet in ClickHouse
        self._pending_rows = 0
        self._next_retry = 0.0
        self._catching_up = False         # a replay runs: new rows are kept pending too
        self._job: tuple[str, Future, list[Path]] | None = None
        self._final_replay_tried = False
        self._first_replay = threading.Event()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="airlock-audit-insert")
        self._retry_delay = 0.5
        self._idle = threading.Event()     # set when queue and pending are empty and nothing is in backlog
        self._dropped_logged = 0.0

    # -- producer side (any thread) -----------------------------------------------------
    def put(self, kind: str, fields: dict[str, Any], waiter: tuple | None = None) -> bool:
        ts = time.time()
        with self._cv:
            if len(self._q) >= self.queue_size or self._stopping:
                reason = "stopped" if self._stopping else "queue_full"
            else:
                self._q.append((kind, fields, ts, waiter))
                if self._idle.is_set():       # both sides change it under the condition: no race
                    self._idle.clear()
                if len(self._q) == 1:
                    self._cv.notify()
                return True
        m.ROWS_DROPPED.labels(reason).inc()
        now = time.monotonic()
        if now - self._dropped_logged > 5:
            self._dropped_logged = now
            log.error("audit: event %r dropped (%s; queue size %d): raise audit.queue_size or check the "
                      "writer (see airlock_audit_rows_dropped_total)", kind, reason, self.queue_size)
        return False

    def depth(self) -> int:
        return len(self._q)

    # -- lifecycle ---------------------------------------------------------------------
    def start(self, wait: float = 10.0) -> None:
        """Start the threads; the first job connects, migrates and replays the WAL. Waits up to ``wait``
        seconds for it, so a healthy ClickHouse is ready before traffic, a hung one delays nobody long."""
        self.backlog = True
        self._next_retry = 0.0
        self._thread = threading.Thread(target=self._run, name="airlock-audit-writer", daemon=True)
        self._thread.start()
        self._first_replay.wait(wait)

    def stop(self, timeout: float = 30.0) -> None:
        with self._cv:
            self._stopping = True
            self._cv.notify()
        if self._thread is not None:
            self._thread.join(timeout)
        self._pool.shutdown(wait=True, cancel_futures=True)
        with self._client_lock:
            if self._client is not None:
                try:
                    self._client.close()
                except Exception:  # noqa: BLE001 - closing a dead connection
                    pass
                self._client = None
        self.wal.close()

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait_idle(self, timeout: float) -> bool:
        """Block until everything queued so far is in ClickHouse (tests, close)."""
        return self._idle.wait(timeout)

    # -- queries (any thread) ------------------------------------------------------------
    def client(self) -> Any:
        """The shared client (connected on demand). Callers hold ``client_lock`` while using it."""
        if self._client is None:
            c = connect(self.dsn)
            migrate(c)
            self._client = c
        return self._client

    @property
    def client_lock(self) -> threading.Lock:
        return self._client_lock

    # -- the writer thread -------------------------------------------------------------------
    def _run(self) -> None:
        next_flush = time.monotonic() + self.flush_seconds
        while True:
            with self._cv:
                if not self._q and not self._stopping:
                    self._cv.wait(self._wait_time(next_flush))
                items = list(self._q)
                self._q.clear()
                stopping = self._stopping
            m.QUEUE_DEPTH.set(len(self._q))
            try:
                if items or self._unsaved:
                    self._persist(items)
                self._reap()
                now = time.monotonic()
                if not self._pending:
                    next_flush = now + self.flush_seconds
                if self._job is None:
                    if self.backlog:
                        if (now >= self._next_retry and not stopping) or (stopping and not self._final_replay_tried):
                            self._final_replay_tried = stopping
                            self._submit_replay()
                    elif self._pending and (self._pending_rows >= self.batch_size or now >= next_flush or stopping):
                        self._submit_insert()
                        next_flush = now + self.flush_seconds
                if stopping and not self._q:
                    if self._job is not None:
                        try:
                            self._job[1].result(60)
                        except Exception:  # noqa: BLE001 - reaped on the next round
                            pass
                        continue
                    if not self._pending or self.backlog:
                        return
            except Exception:  # noqa: BLE001 - the writer thread must never die
                log.exception("audit: writer loop error (rows stay in the WAL)")
                if stopping:
                    return
            with self._cv:
                if not self._q and not self._pending and not self.backlog and not self._unsaved and self._job is None:
                    self._idle.set()

    def _wait_time(self, next_flush: float) -> float | None:
        if self._job is not None:              # checked under the condition: the completion notify
            return 0.0 if self._job[1].done() else 1.0   # cannot be missed (1 s cap as a safety net)
        now = time.monotonic()
        if self.backlog:
            return max(0.0, self._next_retry - now)
        return max(0.0, next_flush - now) if self._pending else None

    def _notify(self, _fut: Future) -> None:
        with self._cv:
            self._cv.notify()

    # -- jobs on the insert thread ---------------------------------------------------------------
    def _submit_insert(self) -> None:
        chunks, rows = self._pending, self._pending_rows
        self._pending, self._pending_rows = [], 0
        self.wal.seal()                        # every sealed segment now holds only these rows
        segments = self.wal.segments()
        fut = self._pool.submit(self._do_insert, b"".join(chunks), rows)
        self._job = ("insert", fut, segments)
        fut.add_done_callback(self._notify)

    def _submit_replay(self) -> None:
        self.wal.seal()
        segments = self.wal.segments()
        self._catching_up = True               # rows arriving during the replay are inserted after it
        fut = self._pool.submit(self._do_replay, segments)
        self._job = ("replay", fut, segments)
        fut.add_done_callback(self._notify)

    def _reap(self) -> None:
        if self._job is None or not self._job[1].done():
            return
        kind, fut, segments = self._job
        self._job = None
        err = fut.exception()
        if err is not None:
            self._enter_backlog(err)
            self._first_replay.set()
            return
        if kind == "insert":
            for p in segments:
                self.wal.remove(p)
            m.WAL_SEGMENTS.set(0)
        else:
            self._left_backlog()
            self._first_replay.set()
        m.WAL_BYTES.set(self.wal.size_bytes())

    def _do_insert(self, data: bytes, rows: int) -> None:
        with self._client_lock:
            client = self.client()
        self._insert(client, data, rows)

    def _do_replay(self, segments: list[Path]) -> None:
        """Replay dead writers' slots, then ``segments`` (oldest first). Raises if ClickHouse fails."""
        with self._client_lock:
            client = self.client()
        for d, fd in self.wal.orphans():        # segments of a dead writer that shared the WAL dir
            try:
                self._replay(client, sorted(d.glob("*.wal")))
            finally:
                Wal.release(fd)
        self._replay(client, segments)
        if segments:
            log.info("audit: replayed %d WAL segment(s) into ClickHouse", len(segments))

    def _persist(self, items: list) -> None:
        rows = self._unsaved
        self._unsaved = []
        waiters: dict[Any, list] = {}
        for kind, fields, ts, waiter in items:
            try:
                row = build_row(kind, fields, self.redactor, ts)
            except Exception as e:  # noqa: BLE001 - odd input must not lose the event
                row = build_row("error", {"reason": f"unbuildable audit event {kind!r}: {type(e).__name__}"},
                                self.redactor, ts)
            rows.append(self.chain.link(row))
            m.observe(row)
            if waiter is not None:
                waiters.setdefault(waiter[0], []).append(waiter[1])
        ok = True
        data = b""
        try:
            if rows:
                data = self.wal.append(rows)
            m.ROWS_DURABLE.inc(len(rows))
            if not self.accepting:
                log.warning("audit: WAL writable again; accepting governed calls")
            self.accepting = True
        except WalError as e:
            ok = False
            m.WAL_ERRORS.inc()
            self.last_error = str(e)
            self.accepting = not self.fail_closed
            log.error("audit: %s; %d rows held in memory%s", e, len(rows),
                      "; refusing governed calls (audit.fail_closed)" if self.fail_closed else "")
            keep = rows[-MAX_UNSAVED:]
            if len(rows) > len(keep):
                m.ROWS_DROPPED.labels("wal_unwritable").inc(len(rows) - len(keep))
                log.error("audit: %d rows dropped: WAL unwritable and memory buffer full",
                          len(rows) - len(keep))
            self._unsaved = keep
        if ok and (not self.backlog or self._catching_up) and data:
            self._pending.append(data)
            self._pending_rows += len(rows)
        for loop, futs in waiters.items():
            try:
                loop.call_soon_threadsafe(_resolve, futs, ok)
            except RuntimeError:   # the loop is closed: nobody is waiting any more
                pass
        m.ACCEPTING.set(1 if self.accepting else 0)
        if self.backlog:
            m.WAL_BYTES.set(self.wal.size_bytes())
            m.WAL_SEGMENTS.set(len(self.wal.segments()))
        else:
            m.WAL_BYTES.set(self.wal.current_size)

    def _insert(self, client: Any, data: bytes, rows: int) -> None:
        """One JSONEachRow insert of WAL lines (ClickHouse parses them; no Python-side re-encoding)."""
        with self._client_lock:
            client.raw_insert("events", None, data, fmt="JSONEachRow")
        m.BATCH_ROWS.observe(rows)
        m.ROWS_WRITTEN.inc(rows)

    def _enter_backlog(self, e: BaseException) -> None:
        m.INSERT_ERRORS.inc()
        self.last_error = f"{type(e).__name__}: {e}"
        if not self.backlog:
            log.error("audit: ClickHouse %s unreachable (%s); rows accumulate in the WAL and are replayed "
                      "when it returns", redacted_dsn(self.dsn), (str(e).splitlines() or [type(e).__name__])[0][:200])
        self.backlog = True
        self._catching_up = False
        m.BACKLOG.set(1)
        self._pending, self._pending_rows = [], 0
        with self._client_lock:
            if self._client is not None:
                try:
                    self._client.close()
                except Exception:  # noqa: BLE001
                    pass
                self._client = None
        self._next_retry = time.monotonic() + self._retry_delay
        self._retry_delay = min(RETRY_MAX_SECONDS, self._retry_delay * 2)

    def _left_backlog(self) -> None:
        if self.backlog and self.last_error:
            log.warning("audit: ClickHouse reachable again; WAL backlog replayed")
        self.backlog = False
        self._catching_up = False
        self._retry_delay = 0.5
        m.BACKLOG.set(0)
        m.WAL_SEGMENTS.set(0)

    def _replay(self, client: Any, segments: list[Path]) -> None:
        """Insert the rows of ``segments`` (in order) that ClickHouse lacks, then delete each segment."""
        for seg in segments:
            lines = list(Wal.read_lines(seg))
            fresh = self._not_in_clickhouse(client, lines)
            if fresh:
                self._insert(client, b"".join(fresh), len(fresh))
                m.ROWS_REPLAYED.inc(len(fresh))
            if len(fresh) < len(lines):
                m.ROWS_DEDUPED.inc(len(lines) - len(fresh))
            self.wal.remove(seg)

    def _not_in_clickhouse(self, client: Any, lines: list[tuple[bytes, dict[str, Any]]]) -> list[bytes]:
        """The WAL lines whose (stream, seq) ClickHouse does not have yet."""
        by_stream: dict[str, list[int]] = {}
        for _, r in lines:
            by_stream.setdefault(r["stream"], []).append(r["seq"])
        have: set[tuple[str, int]] = set()
        for stream, seqs in by_stream.items():
            with self._client_lock:
                res = client.query("SELECT seq FROM events WHERE stream = {s:String} AND seq BETWEEN {a:UInt64} "
                                   "AND {b:UInt64}", parameters={"s": stream, "a": min(seqs), "b": max(seqs)})
            have.update((stream, int(x[0])) for x in res.result_rows)
        return [line for line, r in lines if (r["stream"], r["seq"]) not in have]


def _resolve(futs: list[asyncio.Future], ok: bool) -> None:
    for f in futs:
        if not f.done():
            f.set_result(ok)
