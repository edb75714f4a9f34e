"""``request_row`` (the audit addon's row, built straight from the flow) against the reference:
``build_row("request", request_fields(flow))``. Same columns, same values, same ``data`` text (key order
included), for the usual flows and for odd ones that must take the reference path."""
from __future__ import annotations

import random

import orjson
import pytest
from mitmproxy.test import tflow, tutils

from proxy import flowmeta
from proxy.audit.events import Redactor, build_row
from proxy.audit.flows import request_fields, request_row
from proxy.policy.model import Decision

KEY = "sk-proj-" + "A" * 40
RED = Redactor([KEY], preview_chars=64)

STRINGS = ["", "a", "acme", "gpt-4o-mini", "genai-prices", "tok:296e7ee7fb078a48", "/chat/completions",
           f"Bearer {KEY}", f"x {KEY} y", "é" * 30, "z" * 2000, "password=hunter22"]
NUMBERS = [0, 1, 12, 2**63, -5, 3.5, float("nan"), float("inf"), True, None, "17", "x"]


def _usage(rng: random.Random) -> dict:
    """A gateway usage row (proxy.meter.record.usage_row), some of its values off the usual shapes."""
    odd = rng.random() < 0.3
    pick = (lambda pool, usual: rng.choice(pool) if odd and rng.random() < 0.3 else usual)
    return {"account": "acme", "flow": None, "subject": None, "agent": "wrk", "session": "s-1",
            "provider": pick(STRINGS, "openai"), "api": pick(STRINGS, "chat"), "model": pick(STRINGS, "gpt-4o"),
            "stream": pick(NUMBERS, rng.random() < 0.5),
            "input_tokens": pick(NUMBERS, rng.randint(0, 5000)), "output_tokens": pick(NUMBERS, rng.randint(0, 900)),
            "cached_tokens": pick(NUMBERS, 0), "cache_write_tokens": 0, "reasoning_tokens": rng.choice([0, 7]),
            "usage_source": pick(STRINGS, rng.choice(["provider", "estimate", "none"])),
            "cost_estimated_usd": rng.choice([None, 0.0001]),
            "cost_usd": pick(NUMBERS, rng.choice([None, 7.38e-05, 0.0])),
            "reserved_usd": 0.0, "ttft_ms": rng.choice([None, 12.5]), "duration_ms": pick(NUMBERS, 2.109),
            "status": pick(STRINGS, rng.choice(["ok", "cut", "refused"])), "http_status": 200,
            "cut_reason": rng.choice([None, "budget", f"leaked {KEY}"]), "reason": None,
            "price_source": rng.choice([None, "genai-prices"])}


_IDENTITIES: dict[tuple, flowmeta.Identity] = {}


def _flow(rng: random.Random):
    kind = rng.choice(["openai", "anthropic", "mcp", "other"])
    body = {"model": rng.choice(STRINGS + [5, None])} if kind != "mcp" else rng.choice([
        {"jsonrpc": "2.0", "method": "tools/call", "params": {"name": rng.choice(STRINGS + [7]), "arguments": {}}},
        {"jsonrpc": "2.0", "method": rng.choice(["tools/list", ["odd"], None])}, [1, 2]])
    path = rng.choice(["/v1/chat/completions", f"/v1/x?key={KEY}", "/mcp"])
    req = tutils.treq(method=b"POST", path=path.encode(), content=orjson.dumps(body))
    resp = tutils.tresp(status_code=rng.choice([200, 403, 502]), content=b"x" * rng.randint(0, 50)) \
        if rng.random() < 0.8 else None
    f = tflow.tflow(req=req, resp=resp if resp is not None else False, err=resp is None and rng.random() < 0.7)
    if rng.random() < 0.3:
        f.request.timestamp_start = None                # no latency: duration_ms stands in
    if rng.random() < 0.9:
        f.metadata[flowmeta.ROUTE] = flowmeta.Route(rng.choice(["gateway", "proxy"]), kind,
                                                    rng.choice(STRINGS[:4]), rng.choice(["", path]))
    if rng.random() < 0.9:                              # the same Identity object again and again, as in Airlock
        who = (rng.choice(STRINGS[:6]), rng.choice([None, "ci"]), None, rng.choice(STRINGS[:6] + [None]),
               rng.choice(STRINGS + [None]))
        f.metadata[flowmeta.IDENTITY] = _IDENTITIES.setdefault(who, flowmeta.Identity("0123456789abcdef", *who))
    if kind in ("openai", "anthropic") and rng.random() < 0.8:
        f.metadata[flowmeta.USAGE] = _usage(rng) if rng.random() < 0.9 else \
            rng.choice([{}, {"input_tokens": 3, "cached_tokens": 2}, {"tokens_in": 4, "cost": 0.5}])
    if kind == "mcp" and rng.random() < 0.6:
        f.metadata[flowmeta.DECISION] = Decision(rng.choice(["allow", "deny", ""]), rng.choice([None, "r1"]),
                                                 "none", None, rng.choice(["", "matched r1", f"has {KEY}"]))
    if rng.random() < 0.3:
        f.metadata[flowmeta.OUTCOME] = rng.choice(["denied", "budget_exceeded", ""])
    return f


@pytest.mark.parametrize("seed", range(6))
def test_request_row_matches_the_reference(seed):
    rng = random.Random(seed)
    for _ in range(400):
        f = _flow(rng)
        error = rng.choice([None, None, "", "connection reset", f"upstream said {KEY}"])
        try:
            want = build_row("request", request_fields(f, error), RED, 1700000000.25)
        except Exception as e:  # noqa: BLE001 - the reference raising: the fast path must raise too
            with pytest.raises(type(e)):
                request_row(f, RED, error, 1700000000.25)
            continue
        got = request_row(f, RED, error, 1700000000.25)
        assert list(got.items()) == list(want.items()) or _same_nan(got, want), (got, want)
        assert KEY not in orjson.dumps(got).decode()


def _same_nan(a: dict, b: dict) -> bool:
    """Equal, NaN counting as equal to NaN (a NaN in ``data`` is serialised the same on both paths)."""
    return list(a) == list(b) and all(x == y or (x != x and y != y) for x, y in zip(a.values(), b.values()))


def test_the_usual_model_call_takes_the_fast_path(monkeypatch):
    """A model call with the gateway's usage row is built without the reference (which costs half as much again)."""
    import proxy.audit.flows as flows
    req = tutils.treq(method=b"POST", path=b"/v1/chat/completions", content=b'{"model": "gpt-4o"}')
    f = tflow.tflow(req=req, resp=tutils.tresp(content=b'{"ok": true}'))
    f.metadata[flowmeta.ROUTE] = flowmeta.Route("gateway", "openai", "openai", "/chat/completions")
    f.metadata[flowmeta.IDENTITY] = flowmeta.Identity("0123456789abcdef", "acme", None, None, "wrk", "s-1")
    f.metadata[flowmeta.USAGE] = {**_usage(random.Random(0)), "input_tokens": 12, "output_tokens": 120,
                                  "cost_usd": 7.38e-05, "duration_ms": 2.1, "stream": False, "model": "gpt-4o",
                                  "api": "chat"}
    want = build_row("request", request_fields(f), RED, 1.0)
    monkeypatch.setattr(flows, "build_row", lambda *a, **k: pytest.fail("took the reference path"))
    for _ in range(2):                           # the caller's columns built, then reused
        got = flows.request_row(f, RED, None, 1.0)
        assert got == want and got["tokens"] == 132 and orjson.loads(got["data"])["api"] == "chat"


def test_a_callers_next_call_starts_from_a_clean_row():
    """Calls of one caller to one endpoint share their string columns (cached per Identity and route): what
    one call sets (a decision, usage, an error) never leaks into the next one's row."""
    rng = random.Random(7)
    pairs = 0
    while pairs < 300:
        first, second = _flow(rng), _flow(rng)
        route, ident = first.metadata.get(flowmeta.ROUTE), first.metadata.get(flowmeta.IDENTITY)
        if route is None or ident is None:
            continue
        second.metadata[flowmeta.ROUTE] = flowmeta.Route(route.listener, route.kind, route.name, route.path)
        second.metadata[flowmeta.IDENTITY] = ident
        second.request.method, second.request.path = first.request.method, first.request.path
        try:
            request_row(first, RED, rng.choice([None, "reset"]), 1.0)
            want = build_row("request", request_fields(second), RED, 1.0)
        except TypeError:                     # odd usage the reference cannot add up (checked above)
            continue
        assert request_row(second, RED, None, 1.0) == want or _same_nan(request_row(second, RED, None, 1.0), want)
        pairs += 1
