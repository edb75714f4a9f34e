"""SSE side by side: added time to first token, events/s, per-event latency and concurrent streams,
direct vs bare mitmproxy vs Airlock (and peers), all against bench/upstream.py.

Phases, per target:
  * ttft: sequential streams; time from sending the request to the first content event;
  * throughput: ``streams`` concurrent unpaced streams of ``events`` events; events/s (wall clock) and
    events per CPU-second of the target process (the per-core figure);
  * latency: paced streams; per-event (receive - upstream send time ``t``), compared with direct;
  * concurrency: ``concurrent`` paced streams at once (up to 512); how many finish with every event.

``python -m bench.sse [--quick]`` prints JSON; ``run()`` returns it; ``table()`` formats it.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import orjson

from . import targets
from .common import cpu_seconds, openai_upstream

_CHUNK = b"chat.completion.chunk"           # every event of an OpenAI Chat stream names its object


def _body(events: int, pace_ms: float) -> bytes:
    return orjson.dumps({"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "go"}],
                         "bench_events": events, "bench_pace_ms": pace_ms})


def _pick(xs: list[float], q: float) -> float | None:
    return round(xs[min(len(xs) - 1, int(q * len(xs)))], 3) if xs else None


async def _one(session, url: str, headers: dict, body: bytes, out: dict, parse: bool) -> None:
    t0 = time.perf_counter()
    try:
        async with session.post(url, data=body, headers=headers) as r:
            if r.status != 200:
                out["errors"] += 1
                return
            seen = 0
            done = False
            if parse:
                async for line in r.content:
                    if line.startswith(b"data: {"):
                        now = time.perf_counter()
                        if b'"content"' in line:
                            if seen == 0:
                                out["ttft"].append((now - t0) * 1000)
                            i = line.rfind(b'"t":')
                            if i >= 0:
                                try:
                                    t = int(line[i + 4:line.index(b"}", i)])
                                    out["lat"].append(now * 1000 - t / 1e6)
                                except ValueError:
                                    pass
                            seen += 1
                    elif line.startswith(b"data: [DONE]"):
                        done = True
            else:                                     # throughput: count events without parsing them
                tail = b""                            # shorter than the pattern: no match is counted twice
                async for chunk in r.content.iter_any():
                    buf = tail + chunk
                    seen += buf.count(_CHUNK)
                    done = done or b"[DONE]" in buf
                    tail = buf[-(len(_CHUNK) - 1):]
            out["events"] += seen
            if not done:
                out["errors"] += 1
            else:
                out["ok"] += 1
    except Exception:  # noqa: BLE001 - counted as an error of the run
        out["errors"] += 1


async def _streams(url: str, headers: dict, n: int, events: int, pace_ms: float, parse: bool,
                   sequential: bool = False) -> dict:
    import aiohttp
    out = {"ttft": [], "lat": [], "events": 0, "errors": 0, "ok": 0}
    h = {"content-type": "application/json", **headers}
    body = _body(events, pace_ms)
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=600)) as s:
        t0 = time.perf_counter()
        if sequential:
            for _ in range(n):
                await _one(s, url, h, body, out, parse)
        else:
            await asyncio.gather(*[_one(s, url, h, body, out, parse) for _ in range(n)])
        out["wall_s"] = time.perf_counter() - t0
    return out


def _arun(coro):
    import uvloop
    return uvloop.run(coro)


def measure(url: str, headers: dict, pid: int | None, sizes: dict) -> dict:
    _arun(_streams(url, headers, 4, 20, 0, True))                                         # warm-up
    tt = _arun(_streams(url, headers, sizes["ttft_n"], 5, 0, True, sequential=True))
    cpu0 = cpu_seconds(pid) if pid else None
    th = _arun(_streams(url, headers, sizes["streams"], sizes["events"], 0, False))
    cpu = (cpu_seconds(pid) - cpu0) if pid else None
    la = _arun(_streams(url, headers, sizes["lat_streams"], sizes["lat_events"], sizes["pace_ms"], True))
    co = _arun(_streams(url, headers, sizes["concurrent"], sizes["conc_events"], sizes["conc_pace_ms"], True))
    tt["ttft"].sort()
    la["lat"].sort()
    return {
        "ttft_p50_ms": _pick(tt["ttft"], 0.5), "ttft_p99_ms": _pick(tt["ttft"], 0.99),
        "events_per_s": round(th["events"] / th["wall_s"]) if th["wall_s"] else None,
        "events_per_cpu_s": round(th["events"] / cpu) if cpu else None,
        "throughput_events": th["events"], "throughput_expected": sizes["streams"] * sizes["events"],
        "event_p50_ms": _pick(la["lat"], 0.5), "event_p99_ms": _pick(la["lat"], 0.99),
        "concurrent": sizes["concurrent"], "concurrent_ok": co["ok"],
        "errors": tt["errors"] + th["errors"] + la["errors"] + co["errors"]}


FULL = {"ttft_n": 200, "streams": 64, "events": 500, "lat_streams": 8, "lat_events": 300, "pace_ms": 5.0,
        "concurrent": 512, "conc_events": 30, "conc_pace_ms": 100.0}
QUICK = {"ttft_n": 20, "streams": 8, "events": 100, "lat_streams": 2, "lat_events": 50, "pace_ms": 5.0,
         "concurrent": 32, "conc_events": 5, "conc_pace_ms": 50.0}


def run(sizes: dict | None = None, optimize: bool = False, peers: dict | None = None) -> dict:
    """``peers``: {name: context manager factory(upstream_url) -> (proc, headers)} measured too."""
    sizes = sizes or FULL
    out: dict = {}
    path = "/v1/chat/completions"
    with openai_upstream() as up:
        up_url = f"http://127.0.0.1:{up.port}"
        out["direct"] = measure(up_url + path, {}, None, sizes)
        with targets.bare_mitmproxy(up_url, optimize) as bare:
            out["bare mitmproxy"] = measure(bare.url + path, {}, bare.proc.pid, sizes)
        with targets.airlock(up_url, optimize) as (al, token):
            out["airlock gateway"] = measure(al.url + path, {"authorization": f"Bearer {token}"}, al.proc.pid,
                                             sizes)
        for name, factory in (peers or {}).items():
            with factory(up_url) as t:
                out[name] = measure(t.url + path, t.headers, t.pid, sizes)
    return out


def table(res: dict) -> str:
    d = res["direct"]

    def add(r, k):
        return "—" if r is d or r[k] is None or d[k] is None else f"{r[k] - d[k]:+.2f}"

    bare = (res.get("bare mitmproxy") or {}).get("events_per_cpu_s")
    rows = ["| target | TTFT p50 / p99 ms | added TTFT p50 / p99 | events/s (wall) | events per proxy CPU-s "
            "| vs bare | per-event p50 / p99 ms | added per-event p99 | concurrent streams ok | errors |",
            "|---|---|---|---:|---:|---:|---|---|---|---:|"]
    for name, r in res.items():
        vs = f"{100 * r['events_per_cpu_s'] / bare:.0f}%" if bare and r["events_per_cpu_s"] else "—"
        rows.append(f"| {name} | {r['ttft_p50_ms']} / {r['ttft_p99_ms']} | {add(r, 'ttft_p50_ms')} / "
                    f"{add(r, 'ttft_p99_ms')} | {r['events_per_s']} | {r['events_per_cpu_s'] or '—'} | {vs} | "
                    f"{r['event_p50_ms']} / {r['event_p99_ms']} | {add(r, 'event_p99_ms')} | "
                    f"{r['concurrent_ok']}/{r['concurrent']} | {r['errors']} |")
    return "\n".join(rows)


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.sse")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("-O", dest="optimize", action="store_true", help="run the proxies with python -O")
    a = ap.parse_args()
    res = run(QUICK if a.quick else FULL, a.optimize)
    print(json.dumps(res, indent=2))
    print(table(res))
    return 0 if all(r["errors"] == 0 for r in res.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
