"""The ``request`` audit row of a proxied flow, from what the other addons left in flow.metadata.

A model call has this one row: its usage (tokens, cost, the call's outcome as ``usage_status``, timing)
rides in it, so the ledger (``usage_ledger``, a materialized view of these rows) costs no second row."""
from __future__ import annotations

import time
from typing import Any

import orjson

from .. import flowmeta
from ..meter.record import LEDGER_FIELDS, ledger_fields
from ..policy.model import Decision
from ..sessions import from_headers
from .events import MAX_INT, ROW_TEMPLATE, Redactor, build_row, secret_key, strip_query

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


def _usage_figures(usage: dict[str, Any]) -> tuple[Any, Any, Any, Any]:
    """(tokens in, tokens out, total tokens or None, cost or None) under the names a usage carries them,
    as they are (both row builders check them their own way)."""
    tin, tout = usage.get(_TOKENS_IN[0]), usage.get(_TOKENS_OUT[0])    # the gateway's names: one lookup each
    if tin is None or tin == "":
        tin = _first(usage, _TOKENS_IN[1:])
    if tout is None or tout == "":
        tout = _first(usage, _TOKENS_OUT[1:])
    return tin or 0, tout or 0, _first(usage, _TOKENS), _first(usage, _COST)


def _add_usage(f: dict[str, Any], usage: dict[str, Any]) -> None:
    """The call's usage: tokens, cost, model and provider columns, and what the ledger keeps in ``data``."""
    if not usage:
        return
    tin, tout, total, cost = _usage_figures(usage)
    f["tokens_in"] = tin
    f["tokens_out"] = tout
    f["tokens"] = total or (tin + tout)
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


# -- the same row, built straight from the flow ---------------------------------------------------------
_PLAIN = frozenset({int, float, bool, type(None)})
_DATA_KEYS = frozenset({"usage_status", "rpc_method", *LEDGER_FIELDS})   # what the fast path puts in data


def request_row(flow, redactor: Redactor, error: str | None = None, ts: float | None = None) -> dict[str, Any]:
    """``build_row("request", request_fields(flow, error), redactor, ts)``, in a third of the time.

    The audit addon calls this once per flow on the event loop. The calls Airlock sees every second (a model
    call with its usage, an MCP call with its decision, a refusal) are built here column by column; any
    value off the usual shapes (a count that is not an int, a usage without its ledger fields, a decision
    that is not a ``Decision``...) takes the reference path, so both give the same row for every flow
    (tests/audit/test_request_row.py)."""
    row = _fast_row(flow, redactor, error)
    if row is None:
        return build_row("request", request_fields(flow, error), redactor, ts)
    row["ts"] = int((time.time() if ts is None else ts) * 1_000_000)
    return row


# Who called what: the string columns a caller's calls to one endpoint share, kept as a row to copy. Keyed by
# the Identity object (the identity addon hands out the same one per token and session) and the route; each
# entry holds its Identity and Redactor, so neither id can be reused while it is cached.
_CALLERS: dict[tuple, tuple[Any, Redactor, dict[str, Any]]] = {}
_MAX_CALLERS = 1024


def _caller_row(red: Redactor, ident: flowmeta.Identity, route: flowmeta.Route, req) -> dict[str, Any]:
    """A fresh row with kind, method, path, the identity's and the route's columns filled in."""
    method, path = req.method, route.path or req.path
    key = (id(ident), id(red), route.listener, route.kind, route.name, path, method)
    hit = _CALLERS.get(key)
    if hit is not None and hit[0] is ident and hit[1] is red:
        return hit[2].copy()
    col = red.column
    row = ROW_TEMPLATE.copy()
    row["kind"] = "request"
    row["method"], row["path"] = col(method), col(strip_query(path))
    row["account"], row["flow"], row["subject"] = col(ident.account), col(ident.flow), col(ident.subject)
    row["agent"], row["session"], row["token_id"] = col(ident.agent), col(ident.session), col(ident.token_id)
    row["listener"], row["route_kind"], row["route_name"] = col(route.listener), col(route.kind), col(route.name)
    if len(_CALLERS) >= _MAX_CALLERS:
        _CALLERS.clear()
    _CALLERS[key] = (ident, red, row)
    return row.copy()


def _fast_row(flow, red: Redactor, error: str | None) -> dict[str, Any] | None:
    """The row without ``ts``, or None when the flow needs the reference path (see ``request_row``)."""
    md = flow.metadata
    route, ident = md.get(flowmeta.ROUTE), md.get(flowmeta.IDENTITY)
    usage, dec = md.get(flowmeta.USAGE), md.get(flowmeta.DECISION)
    if route.__class__ is not flowmeta.Route or ident.__class__ is not flowmeta.Identity or \
            (usage is not None and (usage.__class__ is not dict or "usage_source" not in usage)) or \
            (dec is not None and dec.__class__ is not Decision):
        return None
    req, resp = flow.request, flow.response
    col = red.column
    row = _caller_row(red, ident, route, req)
    if resp is not None:
        row["status"] = resp.status_code
        end = resp.timestamp_end or resp.timestamp_start
        raw = resp.raw_content
        row["bytes_out"] = len(raw) if raw else int(resp.headers.get("content-length", 0) or 0)
        if not 0 <= row["bytes_out"] <= MAX_INT or not 0 <= row["status"] <= MAX_INT:
            return None
    else:
        end = flow.error.timestamp if flow.error else None
    start = req.timestamp_start
    timed = bool(end and start)
    if timed:
        row["latency_ms"] = lat = max(0.0, (end - start) * 1000.0)
        if lat.__class__ is not float or lat == float("inf"):
            return None
    raw = req.raw_content
    row["bytes_in"] = len(raw) if raw else 0
    outcome = md.get(flowmeta.OUTCOME)
    if outcome:
        row["outcome"] = col(outcome)
    elif error:
        row["outcome"] = "error"
    elif resp is not None:
        row["outcome"] = "forwarded" if flow.server_conn and flow.server_conn.timestamp_start else "answered"
    reason = error or None
    rule = None
    if dec is not None:
        row["action"] = col(dec.action)
        rule = dec.rule
        reason = reason or dec.reason
    data: dict[str, Any] = {}
    model = None
    kind = route.kind
    if kind == "mcp":
        body = flowmeta.request_json(flow)
        if body.__class__ is dict:
            method = body.get("method")
            data["rpc_method"] = v = _plain(method, red)
            if v is _NOT_PLAIN:
                return None
            params = body.get("params")
            if method == "tools/call" and params.__class__ is dict:
                row["tool"] = col(params.get("name"))
            row["server"] = col(route.name)
    elif kind in _MODEL_KINDS:
        row["provider"] = col(route.name)
        body = flowmeta.request_json(flow)
        if body.__class__ is dict and body.get("model").__class__ is str:
            model = body["model"]
    if usage is not None and usage:
        if not _usage_columns(row, usage, timed):
            return None
        v = usage.get("model")
        if v is not None and v != "":
            model = v
        v = usage.get("provider")
        if v is not None and v != "":
            row["provider"] = col(v)
        if not _ledger_data(data, usage, red):
            return None
        if usage.get("rule") and not rule:
            rule = usage["rule"]
    if model is not None:
        row["model"] = col(model)
    if rule is not None:
        row["rule"] = col(rule)
    if reason is not None:
        row["reason"] = col(reason)
    if data:
        _data_column(row, data, red)
    return row


def _usage_columns(row: dict[str, Any], usage: dict[str, Any], timed: bool) -> bool:
    """Tokens and cost of a gateway usage row into their columns; False if one is off the usual shapes."""
    tin, tout, total, cost = _usage_figures(usage)
    tokens = total or (tin + tout) if tin.__class__ is int and tout.__class__ is int else None
    if tokens.__class__ is not int or not (0 <= tin <= MAX_INT and 0 <= tout <= MAX_INT and 0 <= tokens <= MAX_INT):
        return False
    row["tokens_in"], row["tokens_out"], row["tokens"] = tin, tout, tokens or tin + tout
    if cost is not None:
        if cost.__class__ not in (float, int) or cost != cost or abs(cost) == float("inf"):
            return False
        row["cost"] = float(cost)
    # ``duration_ms`` stands in for a latency the flow has no timestamps for: the reference path knows how
    return timed or usage.get("duration_ms") is None


_NOT_PLAIN = object()
# (key in data, key in the usage, kept when None): what ``ledger_fields`` takes, in its order
_LEDGER_KEYS = (("usage_status", "status", True), *((k, k, False) for k in LEDGER_FIELDS))


def _plain(v: Any, red: Redactor) -> Any:
    """``v`` as ``Redactor.value`` would leave a plain value (a string redacted and cut), or _NOT_PLAIN."""
    if v.__class__ is str:
        v = red.text(v)
        cut = red.preview_chars
        return v if len(v) <= cut else v[:cut] + "…"
    return v if v.__class__ in _PLAIN else _NOT_PLAIN


def _ledger_data(data: dict[str, Any], usage: dict[str, Any], red: Redactor) -> bool:
    """``ledger_fields(usage)`` into ``data``, each value through ``_plain``; False if one is not a plain value
    (the reference path then builds the row)."""
    get, text, cut = usage.get, red.text, red.preview_chars
    for key, name, keep_none in _LEDGER_KEYS:
        v = get(name)
        if v is None and not keep_none:
            continue
        if v.__class__ is str:                  # ``_plain`` written out: this runs ~13 times per model call
            v = text(v)
            v = v if len(v) <= cut else v[:cut] + "…"
        elif v.__class__ not in _PLAIN:
            return False
        data[key] = v
    return True


def _data_column(row: dict[str, Any], data: dict[str, Any], red: Redactor) -> None:
    """``data`` (plain values, redacted and cut already) as the row's JSON text, cut at 8× the preview."""
    text = orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS, default=str).decode()
    limit = red.preview_chars * 8
    row["data"] = text if len(text) <= limit else text[:limit] + "…"


if any(secret_key(k) for k in _DATA_KEYS):
    raise RuntimeError("audit: a data key of the request row reads as a credential; _data_column must redact it")
