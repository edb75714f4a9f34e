"""Read side of the audit trail for the admin API and the CLI.

Everything here is blocking (ClickHouse I/O): callers on the event loop run it
with ``asyncio.to_thread``.
"""
from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

from .chain import verify_rows
from .events import COLUMNS

_READ_ONLY = re.compile(r"^\s*(select|with|show|describe|desc|explain|exists)\b", re.IGNORECASE)
_COMMENTS = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)
_STRINGS = re.compile(r"'(?:[^'\\]|\\.)*'")
_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
EXPORT_FORMATS = {"jsonl": "JSONEachRow", "csv": "CSVWithNames", "parquet": "Parquet"}
PAGE = 20_000


class QueryError(ValueError):
    """A query the caller must fix (message safe to show)."""


def check_read_only(sql: str) -> str:
    """The statement if it is a single read-only query, else QueryError."""
    body = _COMMENTS.sub(" ", sql or "").strip().rstrip(";").strip()
    if not body:
        raise QueryError("empty query: pass a SELECT statement")
    if ";" in _STRINGS.sub("''", body):
        raise QueryError("only one statement per query")
    if not _READ_ONLY.match(body):
        raise QueryError("only read-only queries (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN) are allowed")
    return body


def parse_time(value: str | None) -> int | None:
    """Microseconds since the epoch from ISO 8601, a unix time, or a relative age ("15m", "2h", "7d")."""
    if value in (None, ""):
        return None
    v = str(value).strip()
    m = _RELATIVE.match(v)
    if m:
        return int((time.time() - float(m.group(1)) * _UNITS[m.group(2)]) * 1_000_000)
    try:
        return int(float(v) * 1_000_000)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        raise QueryError(f"invalid time {value!r}: use ISO 8601 (2026-01-31T12:00:00Z), a unix time, "
                         "or an age like 15m, 2h, 7d") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp() * 1_000_000)


def _range_where(frm: int | None, to: int | None) -> tuple[str, dict[str, Any]]:
    conds, params = [], {}
    if frm is not None:
        conds.append("toUnixTimestamp64Micro(ts) >= {frm:Int64}")
        params["frm"] = frm
    if to is not None:
        conds.append("toUnixTimestamp64Micro(ts) < {to:Int64}")
        params["to"] = to
    return (" WHERE " + " AND ".join(conds)) if conds else "", params


def run_query(sink: Any, sql: str, params: dict | None = None, limit: int = 10_000) -> dict[str, Any]:
    body = check_read_only(sql)
    # ClickHouse stops reading after limit + 1 rows: a careless SELECT * cannot exhaust memory
    rows = sink.query(body, params, settings={"max_result_rows": limit + 1, "result_overflow_mode": "break"})
    truncated = len(rows) > limit
    return {"rows": rows[:limit], "count": min(len(rows), limit), "truncated": truncated}


# -- tail ----------------------------------------------------------------------------------
def encode_cursor(row: dict[str, Any]) -> str:
    return f"{row['ts_us']}:{row['seq']}:{row['stream']}"


def tail(sink: Any, after: str | None = None, limit: int = 100, kind: str | None = None) -> dict[str, Any]:
    """Rows after ``after`` (a cursor from a previous call) in write order; without one, the last ``limit``."""
    limit = max(1, min(int(limit), 10_000))
    params: dict[str, Any] = {"lim": limit}
    where = []
    if kind:
        where.append("kind = {kind:String}")
        params["kind"] = kind
    cols = ", ".join(c for c in COLUMNS if c not in ("prev_hash", "hash"))
    if after:
        try:
            ts_s, seq_s, stream = after.split(":", 2)
            params.update(a_ts=int(ts_s), a_seq=int(seq_s), a_stream=stream)
        except ValueError:
            raise QueryError("invalid cursor: pass the `cursor` value of the previous answer") from None
        where.append("(toUnixTimestamp64Micro(ts), stream, seq) > ({a_ts:Int64}, {a_stream:String}, {a_seq:UInt64})")
        w = (" WHERE " + " AND ".join(where)) if where else ""
        sql = (f"SELECT toUnixTimestamp64Micro(ts) AS ts_us, {cols} FROM events{w} "
               "ORDER BY ts, stream, seq LIMIT {lim:UInt32}")
        rows = sink.query(sql, params)
    else:
        w = (" WHERE " + " AND ".join(where)) if where else ""
        sql = (f"SELECT toUnixTimestamp64Micro(ts) AS ts_us, {cols} FROM events{w} "
               "ORDER BY ts DESC, stream DESC, seq DESC LIMIT {lim:UInt32}")
        rows = list(reversed(sink.query(sql, params)))
    cursor = encode_cursor(rows[-1]) if rows else after
    for r in rows:
        r.pop("ts_us", None)
    return {"rows": rows, "cursor": cursor}


# -- export --------------------------------------------------------------------------------
def export_count(sink: Any, frm: int | None, to: int | None) -> int:
    where, params = _range_where(frm, to)
    return int(sink.query(f"SELECT count() AS n FROM events{where}", params)[0]["n"])


def export(sink: Any, fmt: str, frm: int | None = None, to: int | None = None) -> Iterator[bytes]:
    """The events in [from, to) in time order, as chunks of the format (jsonl/csv paged, parquet whole)."""
    if fmt not in EXPORT_FORMATS:
        raise QueryError(f"unknown format {fmt!r}: use jsonl, csv or parquet")
    where, params = _range_where(frm, to)
    ch_fmt = EXPORT_FORMATS[fmt]
    if fmt == "parquet":
        yield sink.raw(f"SELECT * FROM events{where} ORDER BY ts, stream, seq", params, fmt=ch_fmt)
        return
    offset = 0
    first = True
    while True:
        page_params = dict(params, lim=PAGE, off=offset)
        data = sink.raw(f"SELECT * FROM events{where} ORDER BY ts, stream, seq LIMIT {{lim:UInt32}} "
                        "OFFSET {off:UInt64}", page_params, fmt=ch_fmt if first or fmt != "csv" else "CSV")
        if not data:
            return
        yield data
        n = data.count(b"\n") - (1 if first and fmt == "csv" else 0)
        first = False
        if n < PAGE:
            return
        offset += PAGE


# -- verify --------------------------------------------------------------------------------
def _chain_rows(sink: Any, stream: str) -> Iterator[dict[str, Any]]:
    cols = ", ".join("toUnixTimestamp64Micro(ts) AS ts" if c == "ts" else c for c in COLUMNS)
    start = 0
    while True:
        rows = sink.query(f"SELECT {cols} FROM events WHERE stream = {{s:String}} AND seq >= {{a:UInt64}} "
                          "ORDER BY seq LIMIT {lim:UInt32}", {"s": stream, "a": start, "lim": PAGE})
        yield from rows
        if len(rows) < PAGE:
            return
        start = int(rows[-1]["seq"]) + 1


def verify(sink: Any, stream: str | None = None, limit: int = 100) -> dict[str, Any]:
    """Check every stream's hash chain: gaps, edited rows, broken links, duplicates."""
    if stream:
        streams = [stream]
    else:
        streams = [r["stream"] for r in sink.query("SELECT DISTINCT stream FROM events ORDER BY stream")]

    def rows() -> Iterator[dict[str, Any]]:
        for s in streams:
            yield from _chain_rows(sink, s)

    return verify_rows(rows(), limit=limit)
