"""The audit writer (proxy side): bounded queue -> rows built, redacted, chained -> WAL (fsync per batch).

A writer thread takes the queued events, builds + redacts + chains the rows, appends them to the
open WAL segment and fsyncs; the rows now count as written and ``write()`` waiters are told.
``write_now`` does the same from the calling thread (the event loop) for a governed call's rows, up to
the write; the writer thread fsyncs them within ``group_seconds`` (10 ms by default). Both take ``_io``
before the queue, so rows reach the WAL in queue order. It seals the segment (see ``wal`` for the protocol) every
``batch_size`` rows or ``flush_seconds``, whichever comes first, or when ``seal_wait`` asks. The
disk waits (fsync, rename, directory fsync) happen outside ``_io``: ``write_now`` on the event loop
never waits for the disk, only for the hand-over of a segment. The ingester process inserts sealed
segments into ClickHouse: nothing here talks to ClickHouse.

If the WAL cannot be written (disk full) rows are kept in memory and written first on the next
round; meanwhile ``accepting`` is False so the audit addon can refuse governed calls (fail closed).
"""
from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections import deque

import orjson
from pathlib import Path
from typing import Any

from . import metrics as m
from .chain import Chain
from .clickhouse import connect, redacted_dsn  # noqa: F401 - ``airlock db`` imports them from here
from .events import Redactor, build_row
from .wal import Detached, Wal, WalError, fsync_dir

log = logging.getLogger("airlock.audit")

MAX_UNSAVED = 200_000          # rows kept in memory while the WAL cannot be written
# Group commit: ``emit`` does not wake the writer per event (a thread wake-up and a GIL hand-off per row
# cost the event loop more than the row itself). The writer drains the queue every ``group_seconds``
# (``audit.group_commit_ms``; default GROUP_SECONDS), at once when WAKE_AT events wait, when a ``write()``
# caller waits for its fsync, or a flush asks; and it fsyncs what ``write_now`` wrote within ``group_seconds``.
# Each round costs an fsync (~0.1 ms of CPU here) and GIL hand-overs with the event loop: under load, most
# of the writer's cost is per round, not per row.
GROUP_SECONDS = 0.01
MAX_GROUP_SECONDS = 1.0
WAKE_AT = 512
ROW = object()      # the kind of a queued item that is a row already built (``build_row``, ``request_row``)


def kind_of(kind: Any, fields: dict[str, Any]) -> Any:
    """The kind of a queued event, for a log line (a built row carries it inside)."""
    return fields.get("kind") if kind is ROW else kind


class _Seal:
    """A marker in the queue: every event queued before it is in a sealed segment once ``done`` is set."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.ok = False


class Writer:
    def __init__(self, wal_dir: Path, redactor: Redactor, batch_size: int = 5000,
                 flush_seconds: float = 1.0, queue_size: int = 100_000, fail_closed: bool = True,
                 group_seconds: float = GROUP_SECONDS):
        self.redactor = redactor
        self.group_seconds = min(MAX_GROUP_SECONDS, max(0.001, float(group_seconds)))
        self.batch_size = max(1, int(batch_size))
        self.flush_seconds = max(0.01, float(flush_seconds))
        self.queue_size = max(1, int(queue_size))
        self.fail_closed = fail_closed
        self.chain = Chain()
        self.wal = Wal(wal_dir, self.chain.stream)
        self._q: deque = deque()
        self._lock = threading.Lock()           # ``put`` takes it directly: Condition.__enter__ is Python code
        self._cv = threading.Condition(self._lock)
        # the chain, the WAL and _unsaved; taken before _cv by whoever drains the queue, so rows reach the
        # WAL in the order they were queued whichever thread writes them
        self._io = threading.Lock()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._running = False           # the writer thread is in its loop (``alive``; cheaper than is_alive())
        self.accepting = True
        self.last_error: str | None = None
        self._unsaved: list[bytes] = []         # WAL lines of rows the WAL could not take yet
        self._dropped_logged = 0.0
        self._urgent = False            # a waiter, a seal marker or stop is queued: drain now
        self._parked = False            # the writer sleeps until told (nothing queued, nothing pending)
        # the metrics of rows written (held under ``_io``): published by the writer thread once per round, not
        # per row (a prometheus update takes a lock and costs about as much as writing the row)
        self._tally = m.Tally()
        self._written = 0

    # -- producer side (any thread) -----------------------------------------------------
    def put(self, kind: str, fields: dict[str, Any], waiter: tuple | None = None) -> bool:
        ts = time.time()
        with self._lock:
            if len(self._q) >= self.queue_size or self._stopping:
                reason = "stopped" if self._stopping else "queue_full"
            else:
                self._q.append((kind, fields, ts, waiter))
                if waiter is not None:
                    self._urgent = True
                    self._cv.notify()
                elif self._parked or len(self._q) == WAKE_AT:
                    self._parked = False
                    self._cv.notify()
                return True
        m.ROWS_DROPPED.labels(reason).inc()
        now = time.monotonic()
        if now - self._dropped_logged > 5:
            self._dropped_logged = now
            log.error("audit: event %r dropped (%s; queue size %d): raise audit.queue_size or check the "
                      "writer (see airlock_audit_rows_dropped_total)", kind_of(kind, fields), reason,
                      self.queue_size)
        return False

    def write_now(self, kind: Any, fields: dict[str, Any]) -> bool | None:
        """Write this event, and every event queued before it, to the WAL from the calling thread (no
        hand-off to the writer thread). On return they survive a crash of this process; the writer
        fsyncs them within ``group_seconds``. False: the WAL could not take them (they are kept in memory).
        None: a flush or a ``write()`` waiter is queued; use ``put`` with a waiter instead.
        ``kind`` ROW: ``fields`` is a row already built (it is chained and written as it is)."""
        ts = 0.0 if kind is ROW else time.time()
        with self._io:
            if self._q or self._urgent or self._stopping or self._unsaved:   # events queued before it: taken
                with self._cv:                                                # under the queue's lock, first
                    if self._stopping or self._urgent or not self._running:
                        return None
                    items = list(self._q)
                    self._q.clear()
                items.append((kind, fields, ts, None))
                ok, _ = self._persist(items)
            elif self._running:
                # nothing queued: an event another thread queues meanwhile is concurrent with this one and
                # is written after it (by the writer thread, or by the next ``write_now``)
                ok = self._write([self._line(kind, fields, ts)])
            else:
                return None
        # Asleep with nothing pending, it must fsync these rows: wake it. Read without the lock (under load it
        # never sleeps like that): it announces ``_parked`` before it looks at the WAL's rows one last time
        # (``_sleep``), and these rows were written before this read, so one of the two sees the other.
        if self._parked:
            with self._cv:
                if self._parked:
                    self._parked = False
                    self._cv.notify()
        return ok

    def depth(self) -> int:
        return len(self._q)

    def seal_wait(self, timeout: float) -> bool:
        """Block until every event queued before the call is fsynced in a sealed segment."""
        marker = _Seal()
        with self._cv:
            if not self._running:
                return False
            self._q.append((None, marker, 0.0, None))
            self._urgent = True
            self._cv.notify()
        return marker.done.wait(timeout) and marker.ok

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        m.ACCEPTING.set(1 if self.accepting else 0)
        self._thread = threading.Thread(target=self._run, name="airlock-audit-writer", daemon=True)
        self._running = True
        try:
            self._thread.start()
        except BaseException:
            self._running = False
            raise

    def stop(self, timeout: float = 30.0) -> None:
        """Write and seal everything queued, then stop (the ingester takes the rest)."""
        with self._cv:
            self._stopping = True
            self._cv.notify()
        if self._thread is not None:
            self._thread.join(timeout)
        self.wal.close()

    def alive(self) -> bool:
        return self._running

    # -- the writer thread -------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._rounds()
        finally:
            self._running = False

    def _rounds(self) -> None:
        _name_os_thread(b"airlock-audit-w")
        while True:
            with self._cv:
                self._sleep()
            try:
                with self._io:
                    with self._cv:
                        items = list(self._q)
                        self._q.clear()
                        self._urgent = False
                        stopping = self._stopping
                    events = [it for it in items if it[0] is not None]
                    markers = [it[1] for it in items if it[0] is None]
                    ok, waiters = self._persist(events) if (events or self._unsaved) else (True, {})
                    dirty = self.wal.dirty_fd()
                    written, self._written = self._written, 0
                    self._tally.publish()
                m.QUEUE_DEPTH.set(0)
                synced = self._fsync(*dirty) if dirty is not None else True   # outside the lock: write_now
                ok = synced and ok                                              # goes on meanwhile
                self._publish(written, synced)      # before anyone is told: a flush that returns sees them counted
                _tell(waiters, ok)
                with self._io:                      # only the hand-over: the disk waits happen outside
                    w = self.wal
                    due = w.rows >= self.batch_size or (w.rows and time.monotonic() - w.opened >= self.flush_seconds)
                    detached = w.detach() if (due or markers or stopping) else None
                    unsaved = bool(self._unsaved)
                sealed = self._seal(detached) if detached is not None else True
                for mk in markers:
                    mk.ok = sealed and not unsaved
                    mk.done.set()
            except Exception:  # noqa: BLE001 - the writer thread must never die
                log.exception("audit: writer loop error (rows written so far stay in the WAL)")
                stopping = self._stopping
            if stopping:
                with self._cv:
                    if self._q:
                        continue
                if self._unsaved:
                    m.ROWS_DROPPED.labels("wal_unwritable").inc(len(self._unsaved))
                    log.error("audit: stopping with %d rows the WAL could not take: dropped", len(self._unsaved))
                return

    @staticmethod
    def _publish(written: int, durable: bool) -> None:
        """Count the rows written since the last round once they are fsynced (a failed fsync: not durable)."""
        if written and durable:
            m.ROWS_DURABLE.inc(written)

    def _sleep(self) -> None:
        """Wait (holding the condition) until the queue is worth draining."""
        if self._urgent or self._stopping or len(self._q) >= WAKE_AT:
            return
        t = self._wait_time()
        if not self._q and t is None:             # idle: sleep until the next event, then gather a group
            self._parked = True
            if self.wal.rows or self._unsaved:    # a ``write_now`` that read ``_parked`` before it was set
                self._parked = False
            else:
                self._cv.wait()
                self._parked = False
                if self._urgent or self._stopping:
                    return
            t = None
        g = self.group_seconds
        self._cv.wait(g if t is None else min(g, t))

    def _wait_time(self) -> float | None:
        if self._unsaved:
            return 0.5
        if not self.wal.rows:
            return None
        return max(0.0, self.wal.opened + self.flush_seconds - time.monotonic())

    def _seal(self, segment: Detached) -> bool:
        try:
            segment.seal()
            return True
        except WalError as e:
            m.WAL_ERRORS.inc()
            self.last_error = str(e)
            log.error("audit: %s", e)
            return False

    def _fsync(self, fd: int, new_entry: bool = False) -> bool:
        try:
            os.fsync(fd)
            if new_entry:                       # the segment's name in its directory, once per segment
                fsync_dir(self.wal.dir)
            return True
        except OSError as e:
            m.WAL_ERRORS.inc()
            self.last_error = f"audit WAL fsync failed: {e.strerror or e}"
            log.error("audit: %s", self.last_error)
            return False
        finally:
            os.close(fd)

    def _persist(self, items: list) -> tuple[bool, dict]:
        """Build, chain and write ``items`` (after any rows kept from a failed write) to the WAL, not yet
        fsynced. Holds ``_io``.
        Returns (written, the ``write()`` waiters to tell once fsynced)."""
        lines = self._unsaved                   # a row is kept as its WAL line: its dict is freed at once
        self._unsaved = []
        waiters: dict[Any, list] = {}
        line, keep = self._line, lines.append
        for kind, fields, ts, waiter in items:
            keep(line(kind, fields, ts))
            if waiter is not None:
                waiters.setdefault(waiter[0], []).append(waiter[1])
        return (self._write(lines) if lines else True), waiters

    def _line(self, kind: Any, fields: dict[str, Any], ts: float) -> bytes:
        """The WAL line of one event: its row built (unless ``kind`` is ROW), chained and counted. Holds ``_io``."""
        if kind is ROW:
            row = fields
        else:
            try:
                row = build_row(kind, fields, self.redactor, ts)
            except Exception as e:  # noqa: BLE001 - odd input must not lose the event
                row = build_row("error", {"reason": f"unbuildable audit event {kind!r}: {type(e).__name__}"},
                                self.redactor, ts)
        self.chain.link(row)
        self._tally.add(row)
        return orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE)

    def _write(self, lines: list[bytes]) -> bool:
        """Append ``lines`` to the WAL; if it cannot take them, keep them for the next round and (with
        fail_closed) stop accepting governed calls. Holds ``_io``."""
        try:
            self.wal.write_lines(lines)
        except WalError as e:
            m.WAL_ERRORS.inc()
            self.last_error = str(e)
            self.accepting = not self.fail_closed
            m.ACCEPTING.set(0 if self.fail_closed else 1)
            log.error("audit: %s; %d rows held in memory%s", e, len(lines),
                      "; refusing governed calls (audit.fail_closed)" if self.fail_closed else "")
            kept = lines[-MAX_UNSAVED:]
            if len(lines) > len(kept):
                m.ROWS_DROPPED.labels("wal_unwritable").inc(len(lines) - len(kept))
                log.error("audit: %d rows dropped: WAL unwritable and memory buffer full",
                          len(lines) - len(kept))
            self._unsaved = kept
            return False
        self._written += len(lines)
        if not self.accepting:
            log.warning("audit: WAL writable again; accepting governed calls")
            self.accepting = True
            m.ACCEPTING.set(1)
        return True


def _name_os_thread(name: bytes) -> None:
    """Give the calling thread its name in the OS too (``top -H``, ``/proc/PID/task/TID/comm``; at most 15
    bytes): Python names its threads for itself only. Best effort (Linux ``prctl(PR_SET_NAME)``)."""
    try:
        import ctypes
        ctypes.CDLL(None).prctl(15, ctypes.c_char_p(name[:15]), 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _tell(waiters: dict, ok: bool) -> None:
    for loop, futs in waiters.items():
        try:
            loop.call_soon_threadsafe(_resolve, futs, ok)
        except RuntimeError:   # the loop is closed: nobody is waiting any more
            pass


def _resolve(futs: list[asyncio.Future], ok: bool) -> None:
    for f in futs:
        if not f.done():
            f.set_result(ok)
