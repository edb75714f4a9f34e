"""Prometheus metrics of the approvals area (default registry, served at /metrics)."""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CREATED = Counter("airlock_approvals_created_total", "Approval requests created, by mode", ["mode"])
DECIDED = Counter("airlock_approvals_released_total",
                  "Held or async calls that got their answer, by final state", ["state"])
HELD = Gauge("airlock_approvals_held", "Calls held in this process waiting for a decision")
ERRORS = Counter("airlock_approvals_errors_total",
                 "Approval path failures (each one denied the call), by reason", ["reason"])
NOTIFY = Counter("airlock_approvals_notifications_total", "Notification deliveries, by channel type and result",
                 ["type", "result"])
GC_REFREEZE = Histogram("airlock_approvals_gc_refreeze_seconds",
                        "Full collections run after held calls were released (see proxy/approvals/heap.py)",
                        buckets=(0.005, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
