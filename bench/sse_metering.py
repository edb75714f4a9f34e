"""SSE through the gateway with metering on: events/s per proxy core, added per-event latency,
many concurrent streams.

Setup: a synthetic OpenAI Chat stream upstream (aiohttp on uvloop, on the load core) sending
``chat.completion.chunk`` events that carry their send time; Airlock (``airlock run``, pinned to
its own core) with a policy whose soft budget makes every call metered (parsed, counted, settled);
an aiohttp client reading the streams. Three phases:

* throughput: ``streams`` x ``events`` unpaced; events per second of proxy CPU (``/proc`` times);
* latency: paced streams; per-event (receive - send) through Airlock minus the same direct;
* concurrency: ``concurrent`` paced streams at once; all must finish with every event.

``python -m bench.sse_metering [--quick]`` prints the result as JSON; ``run(...)`` returns it.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

import orjson
import yaml

from bench.common import LOAD_CPU, PY, ROOT, Proc, dump, free_port, machine

_TICK = os.sysconf("SC_CLK_TCK")


# -- upstream ---------------------------------------------------------------------------------------
async def _serve(port: int) -> None:
    from aiohttp import web

    async def chat(request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        n, pace = int(body.get("bench_events", 100)), float(body.get("bench_pace_ms", 0)) / 1000
        usage = bool((body.get("stream_options") or {}).get("include_usage"))
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        head = b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini",' \
               b'"choices":[{"index":0,"delta":{"content":" tok"},"finish_reason":null}],"t":'
        for i in range(n):
            await resp.write(head + str(time.perf_counter_ns()).encode() + b"}\n\n")
            if pace:
                await asyncio.sleep(pace)
        tail = [b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini",'
                b'"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n']
        if usage:
            tail.append(b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1,'
                        b'"model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":8,"completion_tokens":'
                        + str(n).encode() + b',"total_tokens":' + str(n + 8).encode() + b'}}\n\n')
        tail.append(b"data: [DONE]\n\n")
        await resp.write(b"".join(tail))
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/unmetered/chat/completions", chat)     # same stream on a path Airlock does not meter
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
    await asyncio.Event().wait()


# -- client -------------------------------------------------------------------------------------------
async def _streams(url: str, token: str, n_streams: int, events: int, pace_ms: float) -> dict:
    import aiohttp
    lat: list[float] = []
    got = errors = 0
    body = orjson.dumps({"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "go"}],
                         "bench_events": events, "bench_pace_ms": pace_ms})
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}

    async def one(session):
        nonlocal got, errors
        try:
            async with session.post(url, data=body, headers=headers) as r:
                if r.status != 200:
                    errors += 1
                    return
                seen = 0
                async for line in r.content:
                    if line.startswith(b"data: {") and b'"t":' in line:
                        now = time.perf_counter_ns()
                        t = int(line[line.rindex(b'"t":') + 4:line.rindex(b"}")])
                        if pace_ms:
                            lat.append((now - t) / 1e6)
                        seen += 1
                got += seen
                if seen != events:
                    errors += 1
        except Exception:  # noqa: BLE001 - counted
            errors += 1

    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=600)) as s:
        t0 = time.perf_counter()
        await asyncio.gather(*[one(s) for _ in range(n_streams)])
        wall = time.perf_counter() - t0
    lat.sort()
    pick = (lambda q: round(lat[min(len(lat) - 1, int(q * len(lat)))], 3)) if lat else (lambda q: None)
    return {"streams": n_streams, "events": got, "errors": errors, "wall_s": round(wall, 3),
            "events_per_s": round(got / wall) if wall else None, "p50_ms": pick(0.5), "p99_ms": pick(0.99)}


def _throughput(gw: Proc, url: str, token: str, streams: int, events: int) -> dict:
    cpu0 = _cpu_seconds(gw.proc.pid)
    out = asyncio.run(_streams(url, token, streams, events, 0))
    cpu = _cpu_seconds(gw.proc.pid) - cpu0
    out["proxy_cpu_s"] = round(cpu, 3)
    out["events_per_proxy_cpu_s"] = round(out["events"] / cpu) if cpu else None
    return out


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


# -- driver -----------------------------------------------------------------------------------------
def run(streams: int = 64, events: int = 500, lat_streams: int = 8, lat_events: int = 300, pace_ms: float = 5.0,
        concurrent: int = 512, conc_events: int = 30, conc_pace_ms: float = 100.0) -> dict:
    import httpx
    up_port, gw_port, admin_port = free_port(), free_port(), free_port()
    work = Path(tempfile.mkdtemp(prefix="bench-sse-"))
    (work / "policy.yaml").write_text(yaml.safe_dump({"version": "1.0", "budgets": [
        {"name": "metered", "scope": "account", "period": "day", "limit_tokens": 10**12, "hard": False}]}))
    (work / "airlock.yaml").write_text(yaml.safe_dump({
        "listen": {"gateway": f"127.0.0.1:{gw_port}", "proxy": None, "admin": f"127.0.0.1:{admin_port}"},
        "policies": [str(work / "policy.yaml")],
        "providers": {"openai": {"base_url": f"http://127.0.0.1:{up_port}/v1", "api_key_env": "BENCH_KEY"}}}))
    admin_token = "adm_" + secrets.token_hex(8)
    env = {"BENCH_KEY": "sk-bench", "AIRLOCK_ADMIN_TOKEN": admin_token, "PYTHONOPTIMIZE": "1"}
    up = Proc([PY, "-m", "bench.sse_metering", "--serve-upstream", str(up_port)], up_port, cpu=LOAD_CPU, cwd=ROOT)
    gw = Proc([PY, "-m", "proxy.cli.main", "run", "-c", str(work / "airlock.yaml")], gw_port, env=env, cwd=work)
    with up, gw:
        r = httpx.post(f"http://127.0.0.1:{admin_port}/v1/keys", json={"account": "bench"},
                       headers={"authorization": f"Bearer {admin_token}"}, timeout=30)
        r.raise_for_status()
        token = r.json()["token"]
        via = f"http://127.0.0.1:{gw_port}/openai/v1/chat/completions"
        direct = f"http://127.0.0.1:{up_port}/v1/chat/completions"
        asyncio.run(_streams(via, token, 4, 50, 0))                       # warm up
        thr = _throughput(gw, via, token, streams, events)
        bare = _throughput(gw, via.replace("/v1/chat/", "/v1/unmetered/chat/"), token, streams, events)
        if thr["proxy_cpu_s"] and bare["proxy_cpu_s"]:
            thr["added_cpu_us_per_event"] = round((thr["proxy_cpu_s"] - bare["proxy_cpu_s"]) / thr["events"] * 1e6, 2)
        lat_direct = asyncio.run(_streams(direct, token, lat_streams, lat_events, pace_ms))
        lat_via = asyncio.run(_streams(via, token, lat_streams, lat_events, pace_ms))
        conc = asyncio.run(_streams(via, token, concurrent, conc_events, conc_pace_ms))
        spent = httpx.get(f"http://127.0.0.1:{admin_port}/v1/budgets",
                          headers={"authorization": f"Bearer {admin_token}"}, timeout=30).json()["budgets"]
    added = {k: round(lat_via[k] - lat_direct[k], 3) for k in ("p50_ms", "p99_ms")
             if lat_via[k] is not None and lat_direct[k] is not None}
    return {"bench": "sse_metering", "machine": machine(), "throughput": thr, "throughput_unmetered": bare,
            "latency": {"direct": lat_direct, "via_airlock": lat_via, "added_ms": added, "pace_ms": pace_ms},
            "concurrency": conc, "metered_tokens": sum(b["spent"] for b in spent if b["unit"] == "tokens")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--serve-upstream", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    ap.add_argument("--streams", type=int, default=64)
    ap.add_argument("--events", type=int, default=500)
    ap.add_argument("--concurrent", type=int, default=512)
    args = ap.parse_args()
    if args.serve_upstream:
        import uvloop
        uvloop.run(_serve(args.serve_upstream))
        return
    if args.quick:
        out = run(streams=8, events=100, lat_streams=2, lat_events=50, concurrent=32, conc_events=5)
    else:
        out = run(streams=args.streams, events=args.events, concurrent=args.concurrent)
    print(dump(out))
    sys.exit(0 if out["throughput"]["errors"] == 0 and out["concurrency"]["errors"] == 0 else 1)


if __name__ == "__main__":
    main()
