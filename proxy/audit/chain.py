"""Tamper evidence: a hash chain per writer stream.

Each writer (one per process start) owns a *stream* id. Its rows are numbered
``seq`` 0, 1, 2... and each carries ``prev_hash`` (the previous row's hash, ""
for the first) and ``hash`` = SHA-256 over ``prev_hash`` and the row's content
in a fixed column order. ``verify`` re-reads the rows of every stream in
``seq`` order and reports gaps (a row deleted or never written), edits (the
content no longer matches its hash) and broken links (a row's ``prev_hash``
differs from the previous row's hash: rows were replaced or re-ordered).
"""
from __future__ import annotations

import hashlib
import operator
import os
import socket
import time
from collections.abc import Iterable
from typing import Any

import orjson

from .events import HASHED, ROW_TEMPLATE


def new_stream_id() -> str:
    """host-pid-start: unique per writer start, readable in a query."""
    return f"{socket.gethostname()[:32]}-{os.getpid()}-{time.time_ns() // 1000:x}"


def ts_micros(v: Any) -> int:
    """``ts`` as integer microseconds, from the int form or the "seconds.micros" text form."""
    if isinstance(v, int):
        return v
    sec, _, frac = str(v).partition(".")
    return int(sec) * 1_000_000 + int((frac + "000000")[:6])


def ts_text(us: int) -> str:
    """Exact "seconds.micros" text that ClickHouse parses into DateTime64(6) in JSON input."""
    return "%d.%06d" % divmod(us, 1_000_000)


def row_hash(row: dict[str, Any]) -> str:
    """SHA-256 (hex) of the row's hashed columns (``ts`` as integer micros); ``prev_hash`` is one of them."""
    values = [row[c] for c in HASHED]
    values[0] = ts_micros(values[0])
    return hashlib.sha256(orjson.dumps(values)).hexdigest()


# The hashed columns as a tuple in one C call; orjson writes a tuple as the same JSON array as a list, so
# ``Chain.link`` hashes the very bytes ``row_hash`` does (for a row whose ``ts`` is still integer micros).
_hashed_values = operator.itemgetter(*HASHED)
# A row from ``build_row`` has its keys in column order (a copy of ROW_TEMPLATE); with the three chain columns
# ``link`` adds, its values are the hashed columns in order, no lookup by name needed.
if (*ROW_TEMPLATE, "stream", "seq", "prev_hash") != HASHED:
    raise RuntimeError("audit: ROW_TEMPLATE is not in column order")


class Chain:
    """Numbers and links the rows of one stream. Used by the single writer thread."""

    def __init__(self, stream: str | None = None):
        self.stream = stream or new_stream_id()
        self.seq = 0
        self.last_hash = ""

    def link(self, row: dict[str, Any]) -> dict[str, Any]:
        """Number, link and hash a row from ``build_row`` (``ts`` still integer micros, made text here)."""
        row["stream"] = self.stream
        row["seq"] = self.seq
        row["prev_hash"] = self.last_hash
        values = tuple(row.values())
        if len(values) != len(HASHED):      # not a fresh ``build_row`` row: pick the columns by name
            values = _hashed_values(row)
        h = hashlib.sha256(orjson.dumps(values)).hexdigest()
        row["hash"] = h
        row["ts"] = ts_text(row["ts"])        # the form written to the WAL and inserted as JSONEachRow
        self.seq += 1
        self.last_hash = h
        return row


def verify_rows(rows: Iterable[dict[str, Any]], limit: int = 100) -> dict[str, Any]:
    """Check rows ordered by (stream, seq). Returns a report; ``ok`` is False on any problem."""
    problems: list[dict[str, Any]] = []
    streams = 0
    count = 0
    cur: str | None = None
    expect_seq = 0
    prev_hash = ""
    total_problems = 0

    def report(stream: str, seq: int, problem: str, detail: str) -> None:
        nonlocal total_problems
        total_problems += 1
        if len(problems) < limit:
            problems.append({"stream": stream, "seq": seq, "problem": problem, "detail": detail})

    for row in rows:
        count += 1
        stream, seq = row["stream"], int(row["seq"])
        if stream != cur:
            streams += 1
            cur, expect_seq, prev_hash = stream, 0, ""
        if seq < expect_seq:
            report(stream, seq, "duplicate", f"seq {seq} appears more than once")
            continue
        if seq > expect_seq:
            report(stream, expect_seq, "gap", f"rows {expect_seq}..{seq - 1} are missing")
            prev_hash = row["prev_hash"]       # resynchronise after the gap
        if row["prev_hash"] != prev_hash:
            report(stream, seq, "broken_link", "prev_hash does not match the previous row's hash")
        if row_hash(row) != row["hash"]:
            report(stream, seq, "edited", "row content does not match its hash")
        prev_hash = row["hash"]
        expect_seq = seq + 1
    return {"ok": total_problems == 0, "streams": streams, "rows": count,
            "problem_count": total_problems, "problems": problems}
