"""Audit test helpers: each sink spawns its ingester process with real chDB (every sink is closed, so its ingester exits)."""
from __future__ import annotations

import asyncio

import pytest

from proxy.audit import AuditSink
from proxy.audit.events import Redactor
from proxy.audit.writer import Writer


@pytest.fixture
def make_sink(tmp_path):
    """Build sinks on tmp paths; each is closed at the end so the next test may open another chDB path."""
    made: list[AuditSink] = []

    def make(dsn: str | None = None, wal: str = "wal", **kw) -> AuditSink:
        kw.setdefault("flush_seconds", 0.05)
        s = AuditSink(dsn or f"chdb://{tmp_path / 'ch'}", tmp_path / wal, **kw)
        made.append(s)
        return s

    yield make
    for s in made:
        if not s._closed:
            asyncio.run(s.close()) if not _loop_running() else None


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
        return True
    except RuntimeError:
        return False


def closed_port() -> int:
    from tests.harness import free_port
    return free_port()


async def flushed(sink: AuditSink, timeout: float = 30.0) -> None:
    assert await asyncio.to_thread(sink.flush, timeout), "audit writer did not drain in time"


def wal_rows(wal_dir, paths: list[str]) -> None:
    """Rows written and sealed by a proxy-side writer alone (no ingester)."""
    w = Writer(wal_dir, Redactor(), flush_seconds=60)
    w.start()
    for p in paths:
        w.put("request", {"path": p})
    assert w.seal_wait(30)
    w.stop()
