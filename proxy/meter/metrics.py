"""Prometheus metrics of the model gateway (default registry, served at /metrics)."""
from __future__ import annotations

from prometheus_client import Counter

TOKENS = Counter("airlock_model_tokens_total", "Model tokens billed, by provider, model and direction",
                 ["provider", "model", "direction"])
COST = Counter("airlock_model_cost_usd_total", "Settled model spend in USD, by provider", ["provider"])
CALLS = Counter("airlock_model_calls_total", "Model calls by provider, API and final status",
                ["provider", "api", "status"])
CUTS = Counter("airlock_model_stream_cuts_total", "Streams Airlock ended early, by reason", ["reason"])
FAILURES = Counter("airlock_gateway_failures_total",
                   "Internal failures in the gateway/metering path (the call was denied or billed by estimate)",
                   ["stage"])
BUDGET_ALERTS = Counter("airlock_budget_alerts_total", "Soft budgets that went over their limit", ["budget"])
OVERSHOOTS = Counter("airlock_budget_overshoots_total",
                     "Calls that settled above what they reserved under a hard limit (the provider passed the "
                     "cap sent to it, or the input estimate was low), by unit", ["unit"])
