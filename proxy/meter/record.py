"""The usage row of one model call (the ledger) and its settlement.

One row per call, whatever happened: completed, cut for budget, client gone,
upstream error, or refused by Airlock at admission. Never carries a key or
token.
"""
from __future__ import annotations

import time
from typing import Any

from . import prices
from .stream import Call
from .usage import Usage


def _ident(identity, name: str) -> Any:
    return getattr(identity, name, None) if identity is not None else None


def usage_row(call: Call, identity, status: str, *, usage: Usage | None = None, cost: float | None = None,
              source: str = "none", http_status: int | None = None, reason: str | None = None) -> dict[str, Any]:
    u = usage or Usage()
    now = time.perf_counter()
    ttft = round((call.first_token - call.started) * 1000, 3) if call.first_token else None
    return {
        "account": _ident(identity, "account"), "flow": _ident(identity, "flow"),
        "subject": _ident(identity, "subject"), "agent": _ident(identity, "agent"),
        "session": _ident(identity, "session"), "provider": call.provider, "api": call.api,
        "model": call.model, "stream": call.stream,
        "input_tokens": u.input_tokens, "output_tokens": u.output_tokens, "cached_tokens": u.cached_tokens,
        "cache_write_tokens": u.cache_write_tokens, "reasoning_tokens": u.reasoning_tokens,
        "usage_source": source,
        "cost_estimated_usd": round(call.estimated_cost, 9) if call.estimated_cost is not None else None,
        "cost_usd": round(cost, 9) if cost is not None else None,
        "reserved_usd": round(call.admission.reserved_usd, 9) if call.admission else 0.0,
        "ttft_ms": ttft, "duration_ms": round((now - call.started) * 1000, 3),
        "status": status, "http_status": http_status, "cut_reason": call.cut_reason, "reason": reason,
        "price_source": call.rates.source if call.rates else None,
    }


def settle_values(call: Call, response_model: str | None = None) -> tuple[Usage, str, float | None]:
    """(usage to bill, its source, its USD cost or None when the model has no price)."""
    usage, source = call.billable()
    cost = None
    for model in (call.model, response_model):
        if model:
            cost = prices.cost(usage, model, call.provider if call.kind != "anthropic" else "anthropic",
                               call.prices)
            if cost is not None:
                break
    return usage, source, cost


# The usage row's fields that travel in the call's ``request`` audit row (its ``data`` column) besides the
# typed columns that row already has (tokens, cost, model, provider, HTTP status).
LEDGER_FIELDS = ("api", "stream", "cached_tokens", "cache_write_tokens", "reasoning_tokens", "usage_source",
                 "cost_estimated_usd", "cost_usd", "reserved_usd", "ttft_ms", "duration_ms", "cut_reason",
                 "price_source")


def ledger_fields(row: dict[str, Any]) -> dict[str, Any]:
    """What the call's ``request`` audit row carries of its usage row: the call's outcome as
    ``usage_status`` (ok, cut, refused, ...) and the ``LEDGER_FIELDS`` that are set (absent = null)."""
    out = {"usage_status": row.get("status")}
    for k in LEDGER_FIELDS:
        v = row.get(k)
        if v is not None:
            out[k] = v
    return out
