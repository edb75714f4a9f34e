"""The audit trail: ``open_audit(cfg)`` gives the process's ``AuditSink``.

Addons call ``rt.audit.emit(kind, **fields)`` (never blocks, never raises) or
``await rt.audit.write(kind, **fields)`` when the caller must not be answered
before the row is durable (WAL fsynced). The proxy only writes the WAL (``writer``);
the ingester process (``ingester``) inserts it into ClickHouse and answers queries.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import Any

from . import metrics as m
from .clickhouse import redacted_dsn
from .events import Redactor
from .supervise import IngesterLink
from .writer import ROW, Writer, kind_of

log = logging.getLogger("airlock.audit")

__all__ = ["AuditSink", "open_audit", "wal_dir_of", "DEFAULTS"]

DEFAULTS: dict[str, Any] = {"batch_size": 5000, "flush_seconds": 1.0, "queue_size": 100_000,
                            "preview_chars": 512, "fail_closed": True, "group_commit_ms": 10.0}


class AuditSink:
    """Where every audit event goes. Thread-safe; ``emit`` costs one append to a deque."""

    def __init__(self, dsn: str, wal_dir: str | Path, *, batch_size: int = 5000, flush_seconds: float = 1.0,
                 queue_size: int = 100_000, preview_chars: int = 512, fail_closed: bool = True,
                 secrets: list[str] | None = None, ingester: str | None = None, group_commit_ms: float = 10.0):
        self.dsn = dsn
        self.wal_dir = Path(wal_dir)
        self.redactor = Redactor(secrets, preview_chars)
        self.fail_closed = fail_closed
        self.writer = Writer(self.wal_dir, self.redactor, batch_size=batch_size, flush_seconds=flush_seconds,
                             queue_size=queue_size, fail_closed=fail_closed,
                             group_seconds=group_commit_ms / 1000.0)
        mode = ingester or os.environ.get("AIRLOCK_AUDIT_INGESTER") or "spawn"
        self.ingester = IngesterLink(dsn, self.wal_dir, spawn=(mode != "external"))
        m.INGEST.source = self.ingester.figures
        self._started = False
        self._closed = False

    # -- producing --------------------------------------------------------------------
    def emit(self, kind: str, **fields: Any) -> None:
        """Queue an event. Never blocks, never raises (a full queue is counted as dropped)."""
        self.emit_fields(kind, fields)

    def emit_fields(self, kind: str, fields: dict[str, Any]) -> None:
        """``emit`` for a caller that holds the fields in a dict and does not change it afterwards: the dict is
        queued as it is (``emit(kind, **fields)`` re-packs it into a new one, which costs more than the queueing)."""
        try:
            self.writer.put(kind, fields)
        except Exception:  # noqa: BLE001 - auditing must never break the caller
            m.ROWS_DROPPED.labels("error").inc()
            log.exception("audit: emit(%r) failed", kind_of(kind, fields))

    def write_now(self, kind: str, **fields: Any) -> bool | None:
        """Write the event (after everything queued before it) to the WAL from this thread: on return it
        survives a crash of this process; fsync follows within ~10 ms. False if the WAL could not take it;
        None if it could not be written from here (a flush is under way): ``await write(...)`` instead."""
        return self.write_now_fields(kind, fields)

    def write_now_fields(self, kind: str, fields: dict[str, Any]) -> bool | None:
        """``write_now`` with the fields in a dict the caller does not change afterwards (see ``emit_fields``)."""
        try:
            return self.writer.write_now(kind, fields)
        except Exception:  # noqa: BLE001
            m.ROWS_DROPPED.labels("error").inc()
            log.exception("audit: write_now(%r) failed", kind_of(kind, fields))
            return False

    def emit_row(self, row: dict[str, Any]) -> None:
        """``emit`` of a row built already with this sink's ``redactor`` (``proxy.audit.flows.request_row``)."""
        self.emit_fields(ROW, row)

    def write_now_row(self, row: dict[str, Any]) -> bool | None:
        """``write_now`` of a row built already with this sink's ``redactor``."""
        return self.write_now_fields(ROW, row)

    async def write(self, kind: str, **fields: Any) -> bool:
        """Queue an event and wait until it is fsynced to the WAL. False if it could not be."""
        return await self.write_fields(kind, fields)

    async def write_row(self, row: dict[str, Any]) -> bool:
        """``write`` of a row built already with this sink's ``redactor``."""
        return await self.write_fields(ROW, row)

    async def write_fields(self, kind: Any, fields: dict[str, Any]) -> bool:
        """``write`` with the fields in a dict the caller does not change afterwards (see ``emit_fields``)."""
        try:
            loop = asyncio.get_running_loop()
            fut = loop.create_future()
            if not self.writer.put(kind, fields, (loop, fut)):
                return False
            return await fut
        except Exception:  # noqa: BLE001
            m.ROWS_DROPPED.labels("error").inc()
            log.exception("audit: write(%r) failed", kind_of(kind, fields))
            return False

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        """Start the writer thread and the ingester (waits up to 10 s for its first pass)."""
        if self._started:
            return
        self._started = True
        self.writer.start()
        ready = await asyncio.to_thread(self.ingester.start, 10.0)
        st = self.ingester.figures()
        if not ready or st.get("backlog"):
            log.error("audit: ClickHouse %s not ready at start (%s); rows go to the WAL in %s until it is",
                      redacted_dsn(self.dsn), st.get("last_error") or "ingester starting", self.wal_dir)
        self.emit("audit_start", reason=f"writer stream {self.writer.chain.stream}", pid=os.getpid())

    async def close(self) -> None:
        """Write and seal everything queued, then let the ingester insert it and stop (if it is ours)."""
        if self._closed:
            return
        self._closed = True
        if not self._started:
            self.writer.start()
        await asyncio.to_thread(self.writer.stop)
        await asyncio.to_thread(self.ingester.stop)

    def flush(self, timeout: float = 30.0) -> bool:
        """Block until every row emitted before the call is in ClickHouse (not for the event loop)."""
        deadline = time.monotonic() + timeout
        if not self.writer.seal_wait(timeout):
            return False
        return self.ingester.flush(deadline)

    # -- reading (in the ingester) ------------------------------------------------------------
    def query(self, sql: str, params: dict | None = None, readonly: bool = True,
              settings: dict | None = None) -> list[dict]:
        """Run a query (read-only unless told otherwise) and return rows as dicts. Blocking."""
        settings = {**({"readonly": 2} if readonly else {}), **(settings or {})} or None
        cols, rows = self.ingester.call("query", sql=sql, params=params or None, settings=settings)
        return [dict(zip(cols, row)) for row in rows]

    def raw(self, sql: str, params: dict | None = None, fmt: str = "JSONEachRow") -> bytes:
        """A read-only query's result in a ClickHouse output format (JSONEachRow, CSVWithNames, Parquet)."""
        return self.ingester.call("raw", sql=sql, params=params or None, fmt=fmt)

    def command(self, sql: str) -> None:
        """Run a statement that changes ClickHouse (maintenance, tests). Blocking."""
        self.ingester.call("command", sql=sql)

    # -- health ---------------------------------------------------------------------------
    @property
    def accepting(self) -> bool:
        """False while events cannot be made durable and fail_closed is set: refuse governed calls."""
        return self.writer.accepting

    def healthy(self) -> bool:
        return self.writer.alive() and self.writer.accepting and self.ingester.reachable()

    def stats(self) -> dict[str, Any]:
        w = self.writer
        ing = self.ingester.figures(max_age=0)
        return {"dsn": redacted_dsn(self.dsn), "stream": w.chain.stream, "seq": w.chain.seq,
                "queue_depth": w.depth(), "backlog": bool(ing.get("backlog", True)), "accepting": w.accepting,
                "wal_dir": str(self.wal_dir), "wal_bytes": ing.get("wal_bytes", w.wal.size_bytes()),
                "wal_segments": ing.get("wal_segments"), "last_error": ing.get("last_error") or w.last_error,
                "writer_alive": w.alive(), "ingester": self.ingester.state(),
                **{k: ing.get(k, 0) for k in ("rows_written", "rows_replayed", "rows_deduplicated", "insert_errors")}}


def _secrets(cfg: Any) -> list[str]:
    """Secret values this process knows (provider keys, MCP header values, admin token)."""
    out: list[str] = []
    for p in getattr(cfg, "providers", {}).values():
        k = p.api_key()
        if k:
            out.append(k)
    for s in getattr(cfg, "mcp_servers", {}).values():
        for v in (s.headers or {}).values():
            out.append(v.split(" ", 1)[1] if v.lower().startswith(("bearer ", "basic ")) else v)
    tok = cfg.admin_token() if hasattr(cfg, "admin_token") else None
    if tok:
        out.append(tok)
    return [s for s in out if s and len(s) >= 8]


def wal_dir_of(cfg: Any) -> Path:
    """``audit.wal_dir``, or ``<data_dir>/wal``."""
    raw_wal = (cfg.extra.get("audit") or {}).get("wal_dir")
    return cfg.path(raw_wal) if raw_wal else cfg.path(cfg.data_dir) / "wal"


def open_audit(cfg: Any) -> AuditSink:
    """The sink for ``cfg.clickhouse_dsn()`` with its WAL under ``wal_dir_of(cfg)``."""
    opts = dict(DEFAULTS)
    opts.update({k: v for k, v in (cfg.extra.get("audit") or {}).items() if k in DEFAULTS and v is not None})
    return AuditSink(cfg.clickhouse_dsn(), wal_dir_of(cfg), batch_size=int(opts["batch_size"]),
                     flush_seconds=float(opts["flush_seconds"]), queue_size=int(opts["queue_size"]),
                     preview_chars=int(opts["preview_chars"]), fail_closed=bool(opts["fail_closed"]),
                     secrets=_secrets(cfg), group_commit_ms=float(opts["group_commit_ms"]))
