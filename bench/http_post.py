"""Non-streaming 1 KB JSON POST (``/v1/chat/completions``, ~1 KB ``chat.completion`` back): requests/s
and latency at 1 and 50 connections (wrk, closed loop), then open-loop constant-rate figures
(bench/openloop.py): added p50/p99 at 250 req/s and the highest rate sustained with p99 < 20 ms.
Every target of ``targets.catalogue()`` in one run, against the same upstream (bench/upstream.py).
"""
from __future__ import annotations

import sys

import orjson

from . import openloop
from .common import median, openai_upstream, wrk

BODY = orjson.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x" * 900}]})
PATH = "/v1/chat/completions"
RATES = [100, 250, 500, 750, 1000, 1250, 1500, 2000, 2500, 3000, 4000]


def closed_loop(url: str, headers: dict, seconds: float, runs_c1: int, runs_c50: int) -> dict:
    wrk(url, 10, max(1, seconds / 2), BODY, headers=headers)                       # warm-up
    c1 = [wrk(url, 1, seconds, BODY, headers=headers) for _ in range(runs_c1)]
    c50 = [wrk(url, 50, seconds, BODY, headers=headers) for _ in range(runs_c50)]
    return {"c1_rps": median([r.rps for r in c1]), "c1_p50_ms": median([r.p50_ms for r in c1]),
            "c1_p99_ms": median([r.p99_ms for r in c1]), "c50_rps": median([r.rps for r in c50]),
            "c50_p50_ms": median([r.p50_ms for r in c50]), "c50_p99_ms": median([r.p99_ms for r in c50]),
            "errors": sum(r.errors for r in c1 + c50)}


def open_loop(url: str, headers: dict, seconds: float, rates: list[int], step_seconds: float) -> dict:
    at250 = openloop.run(url, 250, seconds, 50, BODY, headers)
    sus = openloop.sustained(url, rates, step_seconds, 20.0, 50, BODY, headers)
    return {"ol_seconds": seconds, "ol250_p50_ms": at250["p50_ms"], "ol250_p99_ms": at250["p99_ms"],
            "ol250_errors": at250["errors"],
            "sustained_rps": sus["sustained_rps"], "sustained_capped": sus["capped"],
            "sustained_steps": [(s["rate"], s["p99_ms"], s["errors"]) for s in sus["steps"]]}


def run(catalogue: dict, seconds: float = 5, runs_c1: int = 2, runs_c50: int = 3, ol_seconds: float = 5,
        rates: list[int] | None = None, step_seconds: float | None = None,
        open_loop_skip: tuple[str, ...] = ("airlock -O, addons:", "bare mitmproxy, python -O, with"),
        log=lambda m: print(m, file=sys.stderr)) -> dict:
    """``catalogue``: {name: factory(upstream_url) -> context manager of a Target} (targets.catalogue()).
    Targets whose name starts with one of ``open_loop_skip`` get the closed-loop figures only."""
    out: dict = {}
    with openai_upstream() as up:
        up_url = f"http://127.0.0.1:{up.port}"
        for name, factory in catalogue.items():
            log(f"  1 KB POST: {name}")
            try:
                with factory(up_url) as t:
                    url = t.url + PATH
                    r = closed_loop(url, t.headers, seconds, runs_c1, runs_c50)
                    if not name.startswith(open_loop_skip):
                        r.update(open_loop(url, t.headers, ol_seconds, rates or RATES, step_seconds or ol_seconds))
                    r["rss_mb"] = t.rss_mb()
                    out[name] = r
            except Exception as e:  # noqa: BLE001 - one target failing must not lose the others' figures
                out[name] = {"failed": f"{type(e).__name__}: {str(e)[:300]}"}
                log(f"  {name} failed: {e}")
    return out


def _f(x, fmt=".2f"):
    return "—" if x is None or x != x else format(x, fmt)


def table(res: dict) -> str:
    d = res.get("direct", {})
    b = res.get("bare mitmproxy", {})
    rows = ["| target | c50 req/s | vs bare (`-O` lines: vs bare `-O`) | vs direct | c50 p50 / p99 ms | c1 req/s | added c1 p50 / p99 ms "
            "| added p50 / p99 at 250 req/s (open loop) | sustained req/s at p99 < 20 ms | RSS MB | errors (wrk) |",
            "|---|---:|---:|---:|---|---:|---|---|---:|---:|---:|"]
    bo = res.get("bare mitmproxy, python -O", b)
    for name, r in res.items():
        if "failed" in r:
            rows.append(f"| {name} | failed: {r['failed']} |||||||||")
            continue
        floor = bo if "-O" in name else b                  # -O lines against the -O floor
        vs_b = f"{100 * r['c50_rps'] / floor['c50_rps']:.0f}%" if floor.get("c50_rps") else "—"
        vs_d = f"{100 * r['c50_rps'] / d['c50_rps']:.1f}%" if d.get("c50_rps") else "—"
        if name == "direct" or not d:
            added = ol = "—"
        else:
            added = f"{r['c1_p50_ms'] - d['c1_p50_ms']:+.2f} / {r['c1_p99_ms'] - d['c1_p99_ms']:+.2f}"
            ol = "—" if r.get("ol250_p50_ms") is None or d.get("ol250_p50_ms") is None else \
                f"{r['ol250_p50_ms'] - d['ol250_p50_ms']:+.2f} / {r['ol250_p99_ms'] - d['ol250_p99_ms']:+.2f}" + \
                (f" ({r['ol250_errors']} of {int(250 * r.get('ol_seconds', 0)) or '?'} unanswered/failed)"
                 if r.get("ol250_errors") else "")
        sus = "—" if "sustained_rps" not in r else f"< {RATES[0]}" if r["sustained_rps"] is None else \
            f"{'≥ ' if r['sustained_capped'] else ''}{r['sustained_rps']}"
        rows.append(f"| {name} | {r['c50_rps']:.0f} | {vs_b} | {vs_d} | {r['c50_p50_ms']:.2f} / {r['c50_p99_ms']:.2f} "
                    f"| {r['c1_rps']:.0f} | {added} | {ol} | {sus} | {_f(r['rss_mb'], '.0f')} | "
                    f"{r['errors']} |")
    return "\n".join(rows)
