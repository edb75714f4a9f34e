"""Non-streaming 1 KB JSON POST: requests/s and added latency at 1 and 50 connections,
direct vs bare mitmproxy vs Airlock's gateway, in one run."""
from __future__ import annotations

import orjson

from . import targets
from .common import median, upstream, wrk

BODY = orjson.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x" * 900}]})


def measure(url: str, token: str | None, seconds: float, runs_c1: int, runs_c50: int) -> dict:
    wrk(url, 10, max(1, seconds / 2), BODY, token)                       # warm-up
    c1 = [wrk(url, 1, seconds, BODY, token) for _ in range(runs_c1)]
    c50 = [wrk(url, 50, seconds, BODY, token) for _ in range(runs_c50)]
    return {"c1_rps": median([r.rps for r in c1]), "c1_p50_ms": median([r.p50_ms for r in c1]),
            "c1_p99_ms": median([r.p99_ms for r in c1]), "c50_rps": median([r.rps for r in c50]),
            "c50_p50_ms": median([r.p50_ms for r in c50]), "c50_p99_ms": median([r.p99_ms for r in c50]),
            "errors": sum(r.errors for r in c1 + c50)}


def run(seconds: float = 5, runs_c1: int = 2, runs_c50: int = 3, optimize: bool = False) -> dict:
    out: dict = {}
    path = "/v1/json/chat/completions"
    with upstream() as up:
        up_url = f"http://127.0.0.1:{up.port}"
        out["direct"] = measure(up_url + path, None, seconds, runs_c1, runs_c50)
        with targets.bare_mitmproxy(up_url, optimize) as bare:
            out["bare mitmproxy"] = measure(bare.url + path, None, seconds, runs_c1, runs_c50)
            out["bare mitmproxy"]["rss_mb"] = bare.rss_mb()
        with targets.airlock(up_url, optimize) as (al, token):
            out["airlock gateway"] = measure(al.url + path, token, seconds, runs_c1, runs_c50)
            out["airlock gateway"]["rss_mb"] = al.rss_mb()
    return out


def table(res: dict) -> str:
    d = res["direct"]
    b = res["bare mitmproxy"]
    rows = ["| target | c50 req/s | vs bare | c50 p50 / p99 ms | c1 req/s | c1 p50 / p99 ms | added c1 p50 / p99 ms "
            "| errors |", "|---|---:|---:|---|---:|---|---|---:|"]
    for name, r in res.items():
        vs = f"{100 * r['c50_rps'] / b['c50_rps']:.0f}%" if b["c50_rps"] else "-"
        added = "—" if name == "direct" else \
            f"+{r['c1_p50_ms'] - d['c1_p50_ms']:.2f} / +{r['c1_p99_ms'] - d['c1_p99_ms']:.2f}"
        rows.append(f"| {name} | {r['c50_rps']:.0f} | {vs} | {r['c50_p50_ms']:.2f} / {r['c50_p99_ms']:.2f} | "
                    f"{r['c1_rps']:.0f} | {r['c1_p50_ms']:.2f} / {r['c1_p99_ms']:.2f} | {added} | {r['errors']} |")
    return "\n".join(rows)
