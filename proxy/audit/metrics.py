"""Prometheus metrics of the audit pipeline (default REGISTRY, created once per process)."""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

QUEUE_DEPTH = Gauge("airlock_audit_queue_depth", "Audit events waiting in the in-memory queue")
WAL_BYTES = Gauge("airlock_audit_wal_bytes", "Bytes of audit rows in WAL segments not yet in ClickHouse")
WAL_SEGMENTS = Gauge("airlock_audit_wal_segments", "WAL segment files not yet in ClickHouse")
BACKLOG = Gauge("airlock_audit_backlog", "1 while ClickHouse is unreachable and rows accumulate in the WAL")
ACCEPTING = Gauge("airlock_audit_accepting", "0 when the WAL cannot be written and governed calls are refused")
ROWS_WRITTEN = Counter("airlock_audit_rows_written_total", "Audit rows inserted into ClickHouse")
ROWS_DURABLE = Counter("airlock_audit_rows_durable_total", "Audit rows fsynced to the WAL")
ROWS_REPLAYED = Counter("airlock_audit_rows_replayed_total", "Audit rows replayed from the WAL into ClickHouse")
ROWS_DEDUPED = Counter("airlock_audit_rows_deduplicated_total",
                       "WAL rows skipped on replay because ClickHouse already had them")
ROWS_DROPPED = Counter("airlock_audit_rows_dropped_total", "Audit events lost (must stay 0)", ["reason"])
INSERT_ERRORS = Counter("airlock_audit_insert_errors_total", "Failed ClickHouse inserts (rows kept in the WAL)")
WAL_ERRORS = Counter("airlock_audit_wal_errors_total", "Failed WAL writes (disk full, permissions)")
BATCH_ROWS = Histogram("airlock_audit_batch_rows", "Rows per ClickHouse insert",
                       buckets=(1, 10, 100, 500, 1000, 5000, 10000, 50000))

# Figures derived from the audit stream itself (counted by the writer as rows are recorded).
DECISIONS = Counter("airlock_policy_decisions_total", "MCP policy decisions recorded, by action and rule",
                    ["action", "rule"])
APPROVAL_EVENTS = Counter("airlock_approval_events_total", "Approval lifecycle events recorded, by kind", ["kind"])
MODEL_COST = Counter("airlock_model_cost_by_model_usd_total", "Model spend recorded in request rows, by provider "
                     "and model", ["provider", "model"])
SESSIONS_ENDED = Counter("airlock_sessions_ended_total", "Sessions ended by an administrator")


def observe(row: dict) -> None:
    """Count one recorded row in the derived metrics (cheap: a kind check for most rows)."""
    kind = row["kind"]
    if kind == "request":
        if row["cost"]:
            MODEL_COST.labels(row["provider"] or "-", row["model"] or "-").inc(row["cost"])
    elif kind == "decision":
        DECISIONS.labels(row["action"] or "-", row["rule"] or "default").inc()
    elif kind.startswith("approval."):
        APPROVAL_EVENTS.labels(kind).inc()
    elif kind == "session_end":
        SESSIONS_ENDED.inc()
