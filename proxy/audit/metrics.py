"""Prometheus metrics of the audit pipeline (default REGISTRY, created once per process).

The writer's figures are plain metrics of the proxy process. The ingester's (rows written, replayed,
deduplicated, insert errors, batch sizes, backlog, WAL bytes/segments) live in the ingester process:
``INGEST`` republishes its last figures (fetched over the socket, cached 1 s) under the same names.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from ..metrics import child

QUEUE_DEPTH = Gauge("airlock_audit_queue_depth", "Audit events waiting in the in-memory queue")
ACCEPTING = Gauge("airlock_audit_accepting", "0 when the WAL cannot be written and governed calls are refused")
ROWS_DURABLE = Counter("airlock_audit_rows_durable_total", "Audit rows fsynced to the WAL")
ROWS_DROPPED = Counter("airlock_audit_rows_dropped_total", "Audit events lost (must stay 0)", ["reason"])
WAL_ERRORS = Counter("airlock_audit_wal_errors_total", "Failed WAL writes (disk full, permissions)")
INGESTER_RESTARTS = Counter("airlock_audit_ingester_restarts_total", "Times the proxy restarted a dead ingester")

# Figures derived from the audit stream itself (counted by the writer as rows are recorded).
DECISIONS = Counter("airlock_policy_decisions_total", "MCP policy decisions recorded, by action and rule",
                    ["action", "rule"])
APPROVAL_EVENTS = Counter("airlock_approval_events_total", "Approval lifecycle events recorded, by kind", ["kind"])
MODEL_COST = Counter("airlock_model_cost_by_model_usd_total", "Model spend recorded in request rows, by provider "
                     "and model", ["provider", "model"])
SESSIONS_ENDED = Counter("airlock_sessions_ended_total", "Sessions ended by an administrator")

_COUNTERS = {"rows_written": ("airlock_audit_rows_written", "Audit rows inserted into ClickHouse"),
             "rows_replayed": ("airlock_audit_rows_replayed", "Audit rows replayed from the WAL into ClickHouse"),
             "rows_deduplicated": ("airlock_audit_rows_deduplicated",
                                   "WAL rows skipped on replay because ClickHouse already had them"),
             "rows_rejected": ("airlock_audit_rows_rejected",
                               "WAL rows that could not be read or that ClickHouse refused to parse "
                               "(logged; a refused segment is moved to <wal_dir>/rejected)"),
             "insert_errors": ("airlock_audit_insert_errors", "Failed ClickHouse inserts (rows kept in the WAL)")}
_GAUGES = {"wal_bytes": ("airlock_audit_wal_bytes", "Bytes of audit rows in WAL segments not yet in ClickHouse"),
           "wal_segments": ("airlock_audit_wal_segments", "WAL segment files not yet in ClickHouse"),
           "backlog": ("airlock_audit_backlog", "1 while ClickHouse is unreachable and rows accumulate in the WAL")}
BATCH_BUCKETS = (1, 10, 100, 500, 1000, 5000, 10000, 50000)


class IngestFigures:
    """A collector for the ingester's figures; ``source`` returns its last ``stats`` dict."""

    def __init__(self) -> None:
        self.source: Callable[[], dict[str, Any]] | None = None

    def collect(self):
        f = self.source() if self.source is not None else {}
        for key, (name, doc) in _COUNTERS.items():
            yield CounterMetricFamily(name, doc, value=float(f.get(key, 0)))
        for key, (name, doc) in _GAUGES.items():
            yield GaugeMetricFamily(name, doc, value=float(f.get(key, 0) or 0))
        counts = f.get("batch_buckets") or [0] * (len(BATCH_BUCKETS) + 1)
        cum, buckets = 0, []
        for bound, n in zip([str(b) for b in BATCH_BUCKETS] + ["+Inf"], counts):
            cum += n
            buckets.append((bound, float(cum)))
        yield HistogramMetricFamily("airlock_audit_batch_rows", "Rows per ClickHouse insert", buckets=buckets,
                                    sum_value=float(f.get("batch_sum", 0)))

    def describe(self):
        return []


INGEST = IngestFigures()
REGISTRY.register(INGEST)


class Tally:
    """The derived metrics of a batch of recorded rows: ``add`` each row (a kind check for most), then
    ``publish`` once (one ``inc`` per label set and batch)."""

    def __init__(self) -> None:
        self.cost: dict[tuple[str, str], float] = {}

    def add(self, row: dict) -> None:
        kind = row["kind"]
        if kind == "request":
            c = row["cost"]
            if c:
                key = (row["provider"] or "-", row["model"] or "-")
                self.cost[key] = self.cost.get(key, 0.0) + c
        elif kind == "decision":
            DECISIONS.labels(row["action"] or "-", row["rule"] or "default").inc()
        elif kind.startswith("approval."):
            APPROVAL_EVENTS.labels(kind).inc()
        elif kind == "session_end":
            SESSIONS_ENDED.inc()

    def publish(self) -> None:
        for (provider, model), c in self.cost.items():
            child(MODEL_COST, provider, model).inc(c)
        self.cost.clear()
