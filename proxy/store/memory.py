"""The embedded default store: one process, no setup.

Everything lives in dicts guarded by the event loop (no awaits inside an
operation, so each method is atomic). An expired key is dropped when it is
read, or by ``_reap`` on a later TTL write if nobody reads it again (a past
minute's rate-limit counter): memory stays flat over time. Keys without a TTL
under the durable prefixes (gateway keys, approvals) are snapshotted to a
JSON file, and what changes afterwards to a journal next to it (folded into a
new snapshot once it outgrows it), so they survive a restart of the embedded default.
"""
from __future__ import annotations

import asyncio
import base64
import heapq
import inspect
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from .base import Store, Subscriber

log = logging.getLogger(__name__)
DURABLE_PREFIXES = ("key:", "approval", "mcp:toolhash:", "session:")
SNAPSHOT_DELAY = 0.2     # seconds; SIGTERM flushes at once (close)
JOURNAL_MIN_BYTES = 1 << 20   # the journal is folded into a new snapshot once larger than this
JOURNAL_FACTOR = 4            # ... and than this many times the snapshot
HEAP_SLACK = 1024        # stale deadline entries tolerated before the heap is rebuilt from _expiry


class MemoryStore(Store):
    kind = "memory"

    def __init__(self, persist_path: str | Path | None = None):
        self._data: dict[str, Any] = {}          # str -> bytes | dict[str, bytes] | float | dict[str, float](zset)
        self._expiry: dict[str, float] = {}
        self._deadlines: list[tuple[float, str]] = []   # min-heap over _expiry (may hold stale entries)
        self._subs: list[tuple[str, Subscriber]] = []
        self._scripts: dict[str, Callable[..., Any]] = {}
        self._persist = Path(persist_path) if persist_path else None
        self._dirty = False
        self._changed: set[str] = set()          # durable keys written since the last flush
        self._journal = self._persist.with_suffix(".journal") if self._persist else None
        self._journal_bytes = 0                  # appended since the last full snapshot
        self._snapshot_bytes = 0
        self._flusher: asyncio.Task | None = None
        self._write_lock = threading.Lock()
        if self._persist and (self._persist.exists() or self._journal.exists()):
            self._load()

    # -- persistence ---------------------------------------------------------------------
    def _load(self) -> None:
        """The snapshot file, then the journal of what changed after it."""
        try:
            if self._persist.exists():
                raw = orjson.loads(self._persist.read_bytes())
                self._snapshot_bytes = self._persist.stat().st_size
                for key, entry in raw.items():
                    self._put(key, entry)
        except (OSError, orjson.JSONDecodeError) as e:
            log.warning("store snapshot %s unreadable (%s); starting empty", self._persist, e)
            self._data.clear()
            self._expiry.clear()
            self._deadlines.clear()
            return
        try:
            lines = self._journal.read_bytes().splitlines() if self._journal.exists() else []
        except OSError as e:
            log.warning("store journal %s unreadable (%s); using the snapshot alone", self._journal, e)
            lines = []
        for n, line in enumerate(lines):
            try:
                delta = orjson.loads(line)
            except orjson.JSONDecodeError:          # a write cut short by a crash: the rest is lost
                log.warning("store journal %s: line %d of %d unreadable; dropped it and what follows",
                            self._journal, n + 1, len(lines))
                break
            for key, entry in delta.items():
                self._put(key, entry)
            self._journal_bytes += len(line) + 1
        heapq.heapify(self._deadlines)

    def _put(self, key: str, entry: list | None) -> None:
        """One snapshot or journal entry back into the store (None: the key was deleted)."""
        self._data.pop(key, None)
        self._expiry.pop(key, None)
        if entry is None:
            return
        typ, value, exp = entry
        if exp is not None and exp <= time.time():
            return
        if typ == "b":
            self._data[key] = base64.b64decode(value)
        elif typ == "h":
            self._data[key] = {f: base64.b64decode(v) for f, v in value.items()}
        else:
            self._data[key] = value
        if exp is not None:
            self._expiry[key] = exp
            self._deadlines.append((exp, key))

    def _snapshot(self) -> None:
        """Everything durable in the snapshot file, and an empty journal (start-up, close, compaction)."""
        self._write_snapshot(self._everything())

    def _everything(self) -> dict[str, tuple]:
        self._changed.clear()
        return {k: e for k in list(self._data) if (e := self._entry(k)) is not None}

    def _entry(self, key: str) -> tuple | None:
        """One key as the snapshot keeps it, before encoding (a copy: it is encoded and written in a
        worker thread while the event loop goes on); None if it is gone (or not durable)."""
        if not key.startswith(DURABLE_PREFIXES) or not self._alive(key):
            return None
        value, exp = self._data[key], self._expiry.get(key)
        if isinstance(value, bytes):
            return ("b", value, exp)
        if isinstance(value, dict) and all(isinstance(v, bytes) for v in value.values()):
            return ("h", dict(value), exp)
        return ("v", dict(value) if isinstance(value, dict) else value, exp)

    def _write_snapshot(self, entries: dict[str, tuple]) -> None:
        data = orjson.dumps({k: _encoded(e) for k, e in entries.items()})
        with self._write_lock:
            tmp = self._persist.with_suffix(".tmp")
            tmp.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
            os.replace(tmp, self._persist)
            self._journal.unlink(missing_ok=True)
            self._journal_bytes = 0
            self._snapshot_bytes = len(data)

    def _append(self, delta: dict[str, tuple | None]) -> None:
        line = orjson.dumps({k: _encoded(e) for k, e in delta.items()}) + b"\n"
        with self._write_lock:
            with open(self._journal, "ab") as f:
                f.write(line)
            self._journal_bytes += len(line)

    def _flush(self) -> tuple[Callable[..., None], Any]:
        """What to write now, taken on the event loop thread (no await: a consistent view).

        Only the keys written since the last flush go to the journal: with 10,000 pending
        approvals, encoding every hash each time cost ~50 ms of GIL per snapshot (every 0.2 s
        while decisions arrive), which stalled the event loop. The whole snapshot is written
        again once the journal is several times its size (and at close)."""
        if self._journal_bytes > max(JOURNAL_MIN_BYTES, JOURNAL_FACTOR * self._snapshot_bytes):
            return self._write_snapshot, self._everything()
        changed, self._changed = self._changed, set()
        return self._append, {k: self._entry(k) for k in changed}

    def _touch(self, key: str) -> None:
        if self._persist and key.startswith(DURABLE_PREFIXES):
            self._dirty = True
            self._changed.add(key)
            if self._flusher is None or self._flusher.done():
                try:
                    self._flusher = asyncio.get_running_loop().create_task(self._flush_soon())
                except RuntimeError:
                    self._snapshot()

    async def _flush_soon(self) -> None:
        # coalesce: one snapshot for all the durable writes of the next SNAPSHOT_DELAY seconds
        # (writing the whole snapshot per write is O(n^2) with thousands of pending approvals)
        while True:                         # writes made while the last one was written out go next,
            await asyncio.sleep(SNAPSHOT_DELAY)     # coalesced the same way (never back to back)
            if not self._dirty:
                return
            self._dirty = False
            await asyncio.to_thread(*self._flush())

    async def close(self) -> None:
        if self._flusher is not None and not self._flusher.done():
            await self._flusher
        if self._persist and (self._dirty or self._journal_bytes):     # fold the journal in
            self._dirty = False
            self._snapshot()

    # -- helpers -------------------------------------------------------------------------
    def _alive(self, key: str) -> bool:
        exp = self._expiry.get(key)
        if exp is not None and exp <= time.time():
            self._data.pop(key, None)
            self._expiry.pop(key, None)
            return False
        return key in self._data

    def _set_ttl(self, key: str, ttl: float | None) -> None:
        if ttl is not None:
            now = time.time()
            self._reap(now)
            self._expiry[key] = exp = now + ttl
            heapq.heappush(self._deadlines, (exp, key))
        else:
            self._expiry.pop(key, None)

    def _reap(self, now: float) -> None:
        """Drop keys whose TTL has passed (O(log n) each). Without it a key that is never read
        again (a past minute's rate-limit counter, a past day's budget) would stay forever."""
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            exp, key = heapq.heappop(heap)
            if self._expiry.get(key) == exp:         # else stale: the TTL was changed or removed
                self._alive(key)
        if len(heap) > 2 * len(self._expiry) + HEAP_SLACK:
            self._deadlines = [(exp, key) for key, exp in self._expiry.items()]
            heapq.heapify(self._deadlines)

    def size(self) -> dict[str, int]:
        """Key counts (for tests and diagnostics)."""
        return {"keys": len(self._data), "with_ttl": len(self._expiry), "deadlines": len(self._deadlines)}

    # -- key/value -------------------------------------------------------------------------
    async def get(self, key: str) -> bytes | None:
        if not self._alive(key):
            return None
        v = self._data[key]
        if isinstance(v, bytes):
            return v
        if isinstance(v, (int, float)):
            return _num_bytes(v)
        return None

    async def set(self, key, value, ttl=None, only_if_absent=False) -> bool:
        if only_if_absent and self._alive(key):
            return False
        self._data[key] = _own(value)
        self._set_ttl(key, ttl)
        self._touch(key)
        return True

    async def delete(self, key: str) -> bool:
        existed = self._alive(key)
        self._data.pop(key, None)
        self._expiry.pop(key, None)
        if existed:
            self._touch(key)
        return existed

    async def scan(self, prefix: str) -> list[str]:
        return [k for k in list(self._data) if k.startswith(prefix) and self._alive(k)]

    # -- hashes ------------------------------------------------------------------------------
    async def hset(self, key, fields, ttl=None) -> None:
        h = self._data.get(key) if self._alive(key) else None
        if not isinstance(h, dict):
            h = {}
            self._data[key] = h
        h.update({f: _own(v) for f, v in fields.items()})
        if ttl is not None:
            self._set_ttl(key, ttl)
        self._touch(key)

    async def hgetall(self, key) -> dict[str, bytes]:
        if not self._alive(key):
            return {}
        h = self._data[key]
        return dict(h) if isinstance(h, dict) else {}

    # -- counters -----------------------------------------------------------------------------
    def _num(self, key: str) -> float:
        if not self._alive(key):
            return 0.0
        v = self._data[key]
        return float(v) if isinstance(v, (int, float)) else float(v.decode()) if isinstance(v, bytes) else 0.0

    async def incr(self, key, amount=1.0, ttl=None) -> float:
        created = not self._alive(key)
        value = self._num(key) + amount
        self._data[key] = value
        if created and ttl is not None:
            self._set_ttl(key, ttl)
        self._touch(key)
        return value

    async def reserve(self, key, amount, limit, ttl=None) -> tuple[bool, float]:
        current = self._num(key)
        if current + amount > limit + 1e-12:
            return False, current
        return True, await self.incr(key, amount, ttl)

    # -- sorted sets ----------------------------------------------------------------------------
    async def zadd(self, key, member, score) -> None:
        z = self._data.get(key) if self._alive(key) else None
        if not isinstance(z, dict):
            z = self._data[key] = {}
        z[member] = float(score)
        self._touch(key)

    async def zrangebyscore(self, key, max_score) -> list[str]:
        if not self._alive(key):
            return []
        z = self._data[key]
        return [m for m, s in sorted(z.items(), key=lambda kv: kv[1]) if s <= max_score]

    async def zrem(self, key, member) -> bool:
        if not self._alive(key):
            return False
        removed = self._data[key].pop(member, None) is not None
        if removed:
            self._touch(key)
        return removed

    # -- pub/sub ----------------------------------------------------------------------------------
    async def publish(self, channel: str, message: bytes) -> None:
        for prefix, cb in list(self._subs):
            if channel.startswith(prefix):
                try:
                    res = cb(channel, bytes(message))
                    if inspect.isawaitable(res):
                        await res
                except Exception:  # a subscriber's bug must not break the publisher
                    log.exception("subscriber for %s failed", prefix)

    def subscribe(self, prefix: str, callback: Subscriber) -> None:
        self._subs.append((prefix, callback))

    # -- scripts -------------------------------------------------------------------------------------
    def register_script(self, name, lua, python) -> None:
        self._scripts[name] = python

    async def eval(self, name, keys, args):
        res = self._scripts[name](self, keys, args)
        if inspect.isawaitable(res):
            res = await res
        return res


def _encoded(entry: tuple | None) -> tuple | None:
    """A snapshot entry as JSON can carry it (bytes as base64); any thread."""
    if entry is None or entry[0] == "v":
        return entry
    typ, value, exp = entry
    if typ == "b":
        return ("b", base64.b64encode(value).decode(), exp)
    return ("h", {f: base64.b64encode(v).decode() for f, v in value.items()}, exp)


def _own(value) -> bytes:
    """A compact copy: orjson's results keep a large spare buffer that would be held for the key's life."""
    return bytes(memoryview(value))


def _num_bytes(v: float) -> bytes:
    return (str(int(v)) if float(v).is_integer() else repr(float(v))).encode()
