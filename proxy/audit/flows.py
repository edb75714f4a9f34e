"""The ``request`` audit row of a proxied flow, from what the other addons left in flow.metadata.

A model call has this one row: its usage (tokens, cost, the call's outcome as ``usage_status``, timing)
rides in it, so the ledger (``usage_ledger``, a materialized view of these rows) costs no second row."""
from __future__ import annotations

from typing import Any

from .. import flowmeta
from ..meter.record import ledger_fields
from ..sessions import from_headers
from .events import strip_query

_MODEL_KINDS = ("openai", "anthropic")


def _as_dict(v: Any) -> dict[str, Any]:
    if v is None:
        return {}
    if isinstance(v, dict):
        return v
    if hasattr(v, "as_dict"):
        try:
            d = v.as_dict()
            if isinstance(d, dict):
                out = dict(d)
                for extra in ("model", "provider", "cost", "cost_usd"):   # attributes as_dict may omit
                    if extra not in out and hasattr(v, extra):
                        out[extra] = getattr(v, extra)
                return out
        except Exception:  # noqa: BLE001 - a broken helper must not cost the row
            return {}
    slots = getattr(type(v), "__slots__", ())
    if slots:
        return {k: getattr(v, k, None) for k in slots}
    return dict(getattr(v, "__dict__", {}))


def _first(d: dict[str, Any], names: tuple[str, ...]) -> Any:
    for n in names:
        v = d.get(n)
        if v is not None and v != "":
            return v
    return None


# Names a usage carries its figures under, preferred first.
_TOKENS_IN = ("input_tokens", "tokens_in", "prompt_tokens")
_TOKENS_OUT = ("output_tokens", "tokens_out", "completion_tokens")
_TOKENS = ("total_tokens", "tokens")
_COST = ("cost", "cost_usd")


def request_fields(flow, error: str | None = None) -> dict[str, Any]:
    """Who, where, what happened and what it cost: the columns of one ``request`` row.

    Runs on the event loop once per flow: the dict is built in as few steps as it can be, keys always in
    the same order (the ones that end up in ``data`` keep theirs there)."""
    req = flow.request
    resp = flow.response
    md = flow.metadata
    route = md.get(flowmeta.ROUTE)
    path = strip_query(route.path if route is not None and route.path else req.path)
    ident = md.get(flowmeta.IDENTITY)
    if ident is not None:
        f: dict[str, Any] = {"method": req.method, "path": path, "account": ident.account, "flow": ident.flow,
                             "subject": ident.subject, "agent": ident.agent, "session": ident.session,
                             "token_id": ident.token_id}
    else:                               # refused before identity (bad token, ended session): keep the session
        f = {"method": req.method, "path": path, "session": from_headers(flowmeta.headers(flow))}
    if route is not None:
        f["listener"] = route.listener
        f["route_kind"] = kind = route.kind
        f["route_name"] = route.name
    else:
        kind = ""
        f["route_kind"] = "other"
        f["host"] = req.pretty_host
    if resp is not None:
        f["status"] = resp.status_code
        end = resp.timestamp_end or resp.timestamp_start
        f["bytes_out"] = len(resp.raw_content) if resp.raw_content else int(resp.headers.get("content-length", 0) or 0)
    else:
        end = flow.error.timestamp if flow.error else None
    start = req.timestamp_start
    if end and start:
        f["latency_ms"] = max(0.0, (end - start) * 1000.0)
    raw = req.raw_content
    f["bytes_in"] = len(raw) if raw else 0
    outcome = md.get(flowmeta.OUTCOME)
    if outcome:
        f["outcome"] = outcome
    elif error:
        f["outcome"] = "error"
    elif resp is not None:
        f["outcome"] = "forwarded" if flow.server_conn and flow.server_conn.timestamp_start else "answered"
    if error:
        f["reason"] = error
    dec = md.get(flowmeta.DECISION)
    if dec is not None:
        d = _as_dict(dec)
        f.update(action=d.get("action") or d.get("decision"), rule=d.get("rule"), reason=f.get("reason") or d.get("reason"))
    if kind == "mcp":
        body = flowmeta.request_json(flow)
        if isinstance(body, dict):
            f["rpc_method"] = body.get("method")
            params = body.get("params")
            if body.get("method") == "tools/call" and isinstance(params, dict):
                f["tool"] = params.get("name")
            f["server"] = route.name
    elif kind in _MODEL_KINDS:
        f["provider"] = route.name
        body = flowmeta.request_json(flow)
        if isinstance(body, dict) and isinstance(body.get("model"), str):
            f["model"] = body["model"]
    usage = md.get(flowmeta.USAGE)
    if usage is not None:
        _add_usage(f, usage if usage.__class__ is dict else _as_dict(usage))
    return f


def _add_usage(f: dict[str, Any], usage: dict[str, Any]) -> None:
    """The call's usage: tokens, cost, model and provider columns, and what the ledger keeps in ``data``."""
    if not usage:
        return
    tin = _first(usage, _TOKENS_IN) or 0
    tout = _first(usage, _TOKENS_OUT) or 0
    f["tokens_in"] = tin
    f["tokens_out"] = tout
    f["tokens"] = _first(usage, _TOKENS) or (tin + tout)
    cost = _first(usage, _COST)
    if cost is not None:
        f["cost"] = cost
    v = usage.get("model")
    f["model"] = v if v is not None and v != "" else f.get("model")
    v = usage.get("provider")
    f["provider"] = v if v is not None and v != "" else f.get("provider")
    if "usage_source" in usage:            # the gateway's ledger row (proxy.meter.record.usage_row)
        f.update(ledger_fields(usage))
        if usage.get("rule") and not f.get("rule"):
            f["rule"] = usage["rule"]
    elif usage.get("cached_tokens"):
        f["cached_tokens"] = usage["cached_tokens"]
