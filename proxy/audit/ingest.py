"""The ingest loop: sealed WAL segments -> ClickHouse, in order, then deleted. Runs in the ingester
process (``proxy.audit.ingester``), the only process that holds a ClickHouse client.

Each pass walks every writer slot under the WAL base (see ``wal``). A live writer's slot (its flock is
held) gives its sealed ``*.wal`` segments; a dead writer's slot is locked by the ingester and taken
whole (open segment sealed first; a torn last line is cut). Segments are inserted oldest first, several
per insert (up to ``max_bytes``), as JSONEachRow straight from the WAL bytes, and deleted once inserted.
With chDB, ClickHouse reads the segment files itself (``INSERT INTO events SELECT * FROM file(...)``): no
copy of them is made in Python, so the ingester's memory does not grow with the size of an insert. The
file() structure is ``events``' with LowCardinality unwrapped: ClickHouse parses the JSON into plain
String columns and converts each whole column after, ~2 us per row less than parsing into
LowCardinality value by value (what ``INSERT ... FROM INFILE`` does).

Every insert costs ClickHouse a fixed ~25 ms of CPU (a new part in ``events`` and in each materialized
view's table, and the merges those parts cause later), so a pass waits until an insert is worth it: at least
``min_bytes`` sealed, or a sealed segment ``max_wait`` seconds old, or a dead writer's slot to take. A
flush (``ask_now``) or a forced pass inserts at once. At 3,000 rows/s this is one insert every 5 s
instead of every second: less than half the CPU per row, and fewer parts to merge.

A segment is *uncertain* when a previous ingester may already have inserted it (it existed when this
one started) or when an insert of it failed (it may have landed anyway): its rows are checked against
ClickHouse on (``stream``, ``seq``) and only the missing ones are inserted, so a crash between insert and
delete never duplicates a row. While ClickHouse fails, passes are retried with backoff (0.5 s doubling up
to 30 s) and rows accumulate in the WAL.
"""
from __future__ import annotations

import logging
import re
import threading
import time
from pathlib import Path
from typing import Any

from .clickhouse import connect, redacted_dsn
from .metrics import BATCH_BUCKETS
from .migrate import migrate
from .wal import OPEN_SUFFIX, SUFFIX, Wal, dir_bytes, fsync_dir, seal_leftovers, sealed, slot_dirs, try_lock, unlock

log = logging.getLogger("airlock.audit.ingest")

RETRY_MAX_SECONDS = 30.0
MIN_BYTES = 16 << 20          # ~25k rows: a pass inserts once this much is sealed...
MAX_WAIT_SECONDS = 5.0        # ...or once a sealed segment is this old (or at once when asked)
PURGE_SECONDS = 5.0           # chDB: give the freed pages of the last inserts back to the OS at most this often
MAX_BYTES = 32 << 20          # at most ~50k rows per insert: bounds ClickHouse's memory for one insert
_PLAIN_PATH = re.compile(r"^[A-Za-z0-9_./-]+$")   # no glob or SQL quoting characters: fit for file()
# one thread reads and parses (no parallel parsing): the CPU is the same on one core, and fewer buffers live
_FILE_SETTINGS = "max_threads = 1, input_format_parallel_parsing = 0, async_insert = 0"


# ClickHouse error codes that mean "this data cannot be parsed", not "ClickHouse is unwell"
_DATA_CODES = {6, 26, 27, 32, 38, 41, 53, 69, 70, 72, 117}


def _data_error(e: BaseException) -> bool:
    text = str(e)
    i = text.find("Code: ")
    if i < 0:
        return False
    code = text[i + 6:].split(".", 1)[0]
    return code.isdigit() and int(code) in _DATA_CODES


def _key(row: Any) -> tuple[str, int] | None:
    """(stream, seq) of a WAL row, None if it has none."""
    if isinstance(row, dict) and isinstance(row.get("stream"), str) and isinstance(row.get("seq"), int):
        return row["stream"], row["seq"]
    return None


def _whole_lines(seg: Path) -> int | None:
    """The number of lines of ``seg``, None if its last line is torn (read in 1 MB pieces)."""
    n, last, buf = 0, b"\n", bytearray(1 << 20)
    with open(seg, "rb", buffering=0) as f:
        while k := f.readinto(buf):
            n += buf.count(b"\n", 0, k)
            last = buf[k - 1:k]
    return n if last == b"\n" else None


def _structure(client: Any) -> str:
    """The columns of ``events`` as a file() structure (an SQL string literal), LowCardinality unwrapped."""
    cols = client.query("SELECT name, type FROM system.columns WHERE database = currentDatabase() AND "
                        "table = 'events' ORDER BY position").result_rows
    plain = ", ".join(f"`{n}` {t[len('LowCardinality('):-1] if t.startswith('LowCardinality(') else t}"
                      for n, t in cols)
    return "'" + plain.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _from_files(segs: list[Path], structure: str) -> str | None:
    """The insert of one slot's segments read by ClickHouse as one glob, None if a path needs quoting."""
    d, names = str(segs[0].parent), [p.name for p in segs]
    if not all(_PLAIN_PATH.match(x) for x in [d, *names]):
        return None
    return (f"INSERT INTO events SELECT * FROM file('{d}/{{{','.join(names)}}}', 'JSONEachRow', {structure}) "
            f"SETTINGS {_FILE_SETTINGS}")


def _stem(p: Path) -> str:
    n = p.name
    return n[: -len(OPEN_SUFFIX)] if n.endswith(OPEN_SUFFIX) else n[: -len(SUFFIX)]


class Ingester:
    def __init__(self, dsn: str, base: Path, max_bytes: int = MAX_BYTES, min_bytes: int = MIN_BYTES,
                 max_wait: float = MAX_WAIT_SECONDS):
        self.dsn = dsn
        self.base = Path(base)
        self.max_bytes = max(1, int(max_bytes))
        self.min_bytes = min_bytes
        self.max_wait = max_wait
        self._now = True                              # the next pass inserts whatever is sealed (ask_now)
        self._local = dsn.startswith("chdb://")       # ClickHouse in this process (chDB)
        self._purges, self._purged = self._local, 0.0
        self.client_lock = threading.Lock()          # the ingest loop and query threads share the client
        self._client: Any = None
        self._structure = ""                          # chDB: events' columns for file(), read once connected
        self._uncertain = {_stem(p) for d in slot_dirs(self.base) for p in d.glob("*.wal*")}
        self.cv = threading.Condition()               # notified after every pass (flush waits on it)
        self.passes = 0
        self.ready = False                            # the first pass has run (migrated, backlog tried)
        self.backlog = False
        self.last_error: str | None = None
        self.next_try = 0.0
        self._delay = 0.5
        self.figures: dict[str, Any] = {"rows_written": 0, "rows_replayed": 0, "rows_deduplicated": 0,
                                        "rows_rejected": 0, "insert_errors": 0,
                                        "batch_buckets": [0] * (len(BATCH_BUCKETS) + 1), "batch_sum": 0}

    # -- the client ---------------------------------------------------------------------
    def client(self) -> Any:
        """The client (connected + migrated on demand). Callers hold ``client_lock``."""
        if self._client is None:
            c = connect(self.dsn)
            migrate(c)
            if self._local:
                self._structure = _structure(c)
            self._client = c
        return self._client

    def _drop_client(self) -> None:
        with self.client_lock:
            if self._client is not None:
                try:
                    self._client.close()
                except Exception:  # noqa: BLE001 - closing a dead connection
                    pass
                self._client = None

    # -- one pass ---------------------------------------------------------------------------
    def ask_now(self) -> None:
        """Make the next pass insert every sealed segment, worth it or not (a flush waits for it)."""
        self._now = True

    def _worth_it(self) -> bool:
        """Enough sealed bytes for one efficient insert, a segment waiting ``max_wait``, or a dead writer."""
        size, now = 0, time.time()
        for d in slot_dirs(self.base):
            for p in sealed(d):
                try:
                    st = p.stat()
                except FileNotFoundError:
                    continue
                size += st.st_size
                if size >= self.min_bytes or now - st.st_mtime >= self.max_wait:
                    return True
            fd = try_lock(d)
            if fd is not None:                        # its writer is gone: take its open segment now
                unlock(fd)
                if next(d.glob(f"*{OPEN_SUFFIX}"), None) is not None:
                    return True
        return False

    def run_pass(self, force: bool = False) -> bool:
        """Ingest every segment available now (once worth it, see ``_worth_it``, unless forced or asked).
        False if ClickHouse failed (retried after backoff)."""
        if self.backlog and not force and time.monotonic() < self.next_try:
            return False
        now, self._now = self._now, False
        if not (force or now or self.backlog or self._worth_it()):
            return True
        ok = True
        try:
            with self.client_lock:
                self.client()                         # connected + migrated, or ClickHouse failed
            for d in slot_dirs(self.base):
                fd = try_lock(d)                      # free: its writer is gone, take the slot whole
                try:
                    if fd is not None:
                        seal_leftovers(d)
                    self._ingest_dir(d)
                finally:
                    unlock(fd)
            self._purge()
        except Exception as e:  # noqa: BLE001 - any driver error means "ClickHouse failed"
            ok = False
            self._failed(e)
        else:
            if self.backlog:
                log.warning("audit: ClickHouse %s reachable again; WAL backlog ingested", redacted_dsn(self.dsn))
            self.backlog, self._delay = False, 0.5
        with self.cv:
            self.passes += 1
            self.ready = True
            self.cv.notify_all()
        return ok

    def _purge(self) -> None:
        """chDB's jemalloc keeps freed pages for seconds: an insert's would stay in the RSS until the next."""
        if self._purges and time.monotonic() - self._purged >= PURGE_SECONDS:
            self._purged = time.monotonic()
            try:
                with self.client_lock:
                    self.client().command("SYSTEM JEMALLOC PURGE")
            except Exception as e:  # noqa: BLE001 - a chDB built without jemalloc: not an ingest failure
                self._purges = False
                log.warning("audit: chDB cannot purge its allocator (%s); not trying again", str(e)[:200])

    def _ingest_dir(self, d: Path) -> None:
        segs = sealed(d)
        while segs:
            batch = [segs.pop(0)]
            size = batch[0].stat().st_size
            while segs and size + (more := segs[0].stat().st_size) <= self.max_bytes:
                batch.append(segs.pop(0))
                size += more
            try:
                self._ingest(batch)
            except Exception as e:
                if not _data_error(e):
                    raise
                for seg in batch:                    # ClickHouse answered but refused the data: find the segment
                    try:
                        self._ingest([seg])
                    except Exception as e1:
                        if not _data_error(e1):
                            raise
                        self._reject(seg, e1)

    def _ingest(self, batch: list[Path]) -> None:
        sql = _from_files(batch, self._structure) if self._local and self._structure else None
        if sql and not any(_stem(s) in self._uncertain for s in batch):
            counts = [_whole_lines(s) for s in batch]
            if None not in counts:                    # as written, no torn line: ClickHouse reads the files
                self._insert(sql, sum(counts), batch)
                return
        rows, data, replayed, deduped, unreadable = 0, [], 0, 0, 0
        for seg in batch:
            lines, n, skipped, bad = self._read(seg)
            data.append(lines)
            rows += n
            unreadable += bad
            if skipped is not None:
                replayed, deduped = replayed + n, deduped + skipped
        self._insert(b"".join(data), rows, batch)
        self.figures["rows_replayed"] += replayed
        self.figures["rows_deduplicated"] += deduped
        self.figures["rows_rejected"] += unreadable

    def _reject(self, seg: Path, e: BaseException) -> None:
        """Move a segment ClickHouse refuses (not a connection problem) aside so the rest can go in."""
        n = sum(1 for _ in Wal.read_lines(seg))
        dest = self.base / "rejected"
        dest.mkdir(exist_ok=True)
        seg.rename(dest / seg.name)
        self._uncertain.discard(_stem(seg))
        self.figures["rows_rejected"] += n
        log.error("audit: ClickHouse refused WAL segment %s (%d rows): %s; moved to %s (see "
                  "airlock_audit_rows_rejected_total)", seg.name, n, str(e).splitlines()[0][:300], dest)

    def _read(self, seg: Path) -> tuple[bytes, int, int | None, int]:
        """(JSON lines to insert, their count, rows skipped as already in ClickHouse or None when the
        segment is not uncertain and goes in as written, unreadable lines skipped)."""
        if _stem(seg) in self._uncertain:
            lines = list(Wal.read_lines(seg))            # unreadable lines are logged and skipped: count them
            unreadable = seg.read_bytes().count(b"\n") - len(lines)
            fresh = self._not_in_clickhouse(lines)
            return b"".join(fresh), len(fresh), len(lines) - len(fresh), unreadable
        data = seg.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            log.warning("audit WAL %s: ignoring torn last line (unacknowledged batch)", seg.name)
        return data[:end], data.count(b"\n", 0, end), None, 0

    def _insert(self, data: bytes | str, rows: int, segs: list[Path]) -> None:
        """Insert ``data`` (JSON lines, or the SQL of an insert from the segment files), then delete ``segs``."""
        try:
            if rows:
                with self.client_lock:
                    if isinstance(data, str):
                        self.client().command(data)
                    else:
                        self.client().raw_insert("events", None, data, fmt="JSONEachRow")
        except Exception:
            self._uncertain.update(_stem(s) for s in segs)    # it may have landed: check before retrying
            raise
        for s in segs:
            try:
                s.unlink()
            except FileNotFoundError:
                pass
            self._uncertain.discard(_stem(s))
        if segs:
            fsync_dir(segs[0].parent)
        f = self.figures
        f["rows_written"] += rows
        f["batch_sum"] += rows
        i = next((i for i, b in enumerate(BATCH_BUCKETS) if rows <= b), len(BATCH_BUCKETS))
        f["batch_buckets"][i] += 1

    def _not_in_clickhouse(self, lines: list[tuple[bytes, dict[str, Any]]]) -> list[bytes]:
        """The WAL lines whose (stream, seq) ClickHouse does not have yet."""
        by_stream: dict[str, list[int]] = {}
        keys = [_key(r) for _, r in lines]
        for k in keys:
            if k is not None:
                by_stream.setdefault(k[0], []).append(k[1])
        have: set[tuple[str, int]] = set()
        for stream, seqs in by_stream.items():
            with self.client_lock:
                res = self.client().query("SELECT seq FROM events WHERE stream = {s:String} AND seq BETWEEN "
                                          "{a:UInt64} AND {b:UInt64}",
                                          parameters={"s": stream, "a": min(seqs), "b": max(seqs)})
            have.update((stream, int(x[0])) for x in res.result_rows)
        return [line for (line, _), k in zip(lines, keys) if k not in have]   # keyless: ClickHouse judges

    def _failed(self, e: BaseException) -> None:
        self.figures["insert_errors"] += 1
        self.last_error = f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:300]}"
        if not self.backlog:
            log.error("audit: ClickHouse %s failed (%s); rows accumulate in the WAL and are ingested when it "
                      "answers again", redacted_dsn(self.dsn), self.last_error)
        self.backlog = True
        self._drop_client()
        self.next_try = time.monotonic() + self._delay
        self._delay = min(RETRY_MAX_SECONDS, self._delay * 2)

    # -- flush + figures ------------------------------------------------------------------------
    def pending(self) -> set[Path]:
        return {p for d in slot_dirs(self.base) for p in sealed(d)}

    def wait_ingested(self, segments: set[Path], timeout: float) -> bool:
        """Block until none of ``segments`` is left (each pass deletes what it inserted)."""
        deadline = time.monotonic() + timeout
        with self.cv:
            while True:
                segments = {p for p in segments if p.exists()}
                left = deadline - time.monotonic()
                if not segments or left <= 0:
                    return not segments
                self.cv.wait(min(left, 0.5))

    def stats(self) -> dict[str, Any]:
        dirs = slot_dirs(self.base)
        return {**self.figures, "backlog": self.backlog, "last_error": self.last_error, "ready": self.ready,
                "wal_bytes": sum(dir_bytes(d) for d in dirs),
                "wal_segments": sum(len(list(d.glob("*.wal*"))) for d in dirs)}
