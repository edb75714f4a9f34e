"""Approvals bench: many MCP calls held at once by a real ``airlock run`` process.

Measures, against a local JSON-RPC upstream:
  * RSS of the Airlock process with N calls held at once (goal: 10,000 in <= 200 MB);
  * decision-to-release latency: admin ``approve`` sent -> the held client has its answer
    (sequential samples, p50/p99; goal p99 <= 20 ms);
  * requests/s of unheld calls (keep-alive clients) without holds and with N holds
    (goal: within 10%).

Usage: .venv/bin/python -m bench.approvals_hold [--holds 10000] [--seconds 5] [--redis URL] [--write]
       [--trace FRAMES] [--bare]
``run()`` returns the figures as a dict; ``--write`` records them in bench/RESULTS.md.
The RSS is the proxy process's only (the clients live in this process). A probe loaded into the
proxy (``PROBE``) reports its GC pauses while holding and while releasing; ``--trace`` also reports
tracemalloc's top allocators per held call (tracing inflates RSS and latency: a diagnostic run).
``--bare`` measures the floor: a bare mitmproxy in its own process holding requests in an await, stock
and with Airlock's patches to mitmproxy (``proxy.mitm_patches``: per-connection state created on first use).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.harness import Airlock, free_port  # noqa: E402

POLICY = """version: "1.0"
defaults: {action: allow}
approval_workflows:
  - {name: bench, timeout_seconds: 1800}
tools:
  - {id: hold-me, name: hold_me, action: require_approval, approval_workflow: bench}
"""


# Loaded into the `airlock run` process (as sitecustomize, via PYTHONPATH). SIGUSR1: reset the GC pause
# counters (and start tracemalloc if AIRLOCK_BENCH_TRACE is set); SIGUSR2: write the pauses since then
# and, if tracing, the top allocators still alive, to AIRLOCK_BENCH_OUT.
PROBE = """
import gc, json, os, signal, time, tracemalloc
_t0 = [0.0, 0.0]
_gc = {}
def _cb(phase, info):
    if phase == "start":
        _t0[:] = time.perf_counter(), time.thread_time()
        return
    ms = (time.perf_counter() - _t0[0]) * 1000
    cpu = (time.thread_time() - _t0[1]) * 1000           # the wall time includes waits for a shared core
    n, total, worst, worst_cpu = _gc.get(info["generation"], (0, 0.0, 0.0, 0.0))
    _gc[info["generation"]] = (n + 1, total + ms, max(worst, ms), max(worst_cpu, cpu))
gc.callbacks.append(_cb)
def _reset(signum, frame):
    _gc.clear()
    if os.environ.get("AIRLOCK_BENCH_TRACE") and not tracemalloc.is_tracing():
        gc.collect()
        tracemalloc.start(int(os.environ["AIRLOCK_BENCH_TRACE"]))
def _dump(signum, frame):
    out = {"gc": {f"gen{g}": {"collections": n, "total_ms": round(t, 1), "max_ms": round(w, 2),
                             "max_cpu_ms": round(c, 2)} for g, (n, t, w, c) in sorted(_gc.items())}}
    if tracemalloc.is_tracing():
        gc.collect()
        snap = tracemalloc.take_snapshot()
        stats = snap.statistics("traceback")
        out["alloc"] = [[" <- ".join(f"{'/'.join(f.filename.rsplit('/', 2)[-2:])}:{f.lineno}" for f in s.traceback),
                         s.size, s.count] for s in stats[:40]]
        out["alloc_total"] = [sum(s.size for s in stats), sum(s.count for s in stats)]
        out["alloc_by_file"] = [[str(s.traceback[0].filename).split("site-packages/")[-1], s.size, s.count]
                                for s in snap.statistics("filename")[:15]]
        snap.dump(os.environ["AIRLOCK_BENCH_OUT"] + ".snapshot")   # for other groupings (tracemalloc.Snapshot.load)
    path = os.environ["AIRLOCK_BENCH_OUT"]
    with open(path + ".tmp", "w") as f:
        json.dump(out, f)
    os.replace(path + ".tmp", path)
signal.signal(signal.SIGUSR1, _reset)
signal.signal(signal.SIGUSR2, _dump)
"""


async def upstream(port: int) -> web.AppRunner:
    async def mcp(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"jsonrpc": "2.0", "id": body.get("id"),
                                  "result": {"content": [{"type": "text", "text": "ok"}], "isError": False}})
    app = web.Application()
    app.router.add_post("/mcp", mcp)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
    return runner


def request_bytes(port: int, token: str, rpc_id: int, tool: str, args: dict) -> bytes:
    body = json.dumps({"jsonrpc": "2.0", "id": rpc_id, "method": "tools/call",
                       "params": {"name": tool, "arguments": args}}).encode()
    head = (f"POST /mcp/up HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    return head + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    m = re.search(rb"(?i)content-length:\s*(\d+)", head)
    if m:
        return status, await reader.readexactly(int(m.group(1)))
    body = b""
    while True:                                        # chunked
        size = int((await reader.readuntil(b"\r\n")).strip(), 16)
        chunk = await reader.readexactly(size + 2)
        if size == 0:
            return status, body
        body += chunk[:-2]


async def throughput(port: int, token: str, seconds: float, conns: int = 16) -> float:
    count = 0
    stop = time.perf_counter() + seconds

    async def worker(w: int) -> None:
        nonlocal count
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        i = 0
        try:
            while time.perf_counter() < stop:
                i += 1
                writer.write(request_bytes(port, token, i, "echo", {"w": w, "i": i}))
                status, _ = await read_response(reader)
                if status == 200:
                    count += 1
        finally:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(conns)))
    return count / (time.perf_counter() - t0)


def cpu_ms(pid: int, tid: int | None = None) -> float:
    """CPU time (user + system) of a process, or of one of its threads."""
    path = f"/proc/{pid}/task/{tid}/stat" if tid else f"/proc/{pid}/stat"
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> tuple[float, float]:
    text = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+)", text).group(1)) / 1024
    hwm = int(re.search(r"VmHWM:\s+(\d+)", text).group(1)) / 1024
    return rss, hwm


async def held_gauge(admin: httpx.AsyncClient) -> float:
    text = (await admin.get("/metrics")).text
    m = re.search(r"^airlock_approvals_held (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


async def _probe(a: Airlock, path: Path) -> dict:
    """Ask the proxy's probe (PROBE) for its figures: SIGUSR2, then read what it wrote."""
    import signal
    path.unlink(missing_ok=True)
    a.proc.send_signal(signal.SIGUSR2)
    deadline = time.monotonic() + 300
    while not path.exists() and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    return json.loads(path.read_text())


def _per_call(probe: dict, holds: int) -> dict:
    """tracemalloc figures per held call, by source line."""
    size, count = probe["alloc_total"]
    return {"tracemalloc_snapshot": probe["snapshot"],
            "tracemalloc_bytes_per_held_call": round(size / holds),
            "tracemalloc_blocks_per_held_call": round(count / holds, 1),
            "tracemalloc_top_per_held_call": [f"{b / holds:.0f} B {c / holds:.1f} blocks {where}"
                                              for where, b, c in probe["alloc"][:25]],
            "tracemalloc_by_file_per_held_call": [f"{b / holds:.0f} B {c / holds:.1f} blocks {where}"
                                                  for where, b, c in probe["alloc_by_file"]]}


async def _run(holds: int, seconds: float, redis: str | None, trace: int = 0) -> dict:
    up_port = free_port()
    runner = await upstream(up_port)
    tmp = Path(tempfile.mkdtemp(prefix="airlock-bench-approvals-"))
    (tmp / "policy.yaml").write_text(POLICY)
    cfg = {"policies": [str(tmp / "policy.yaml")], "limits": {"drain_seconds": 1},
           "mcp_servers": {"up": {"url": f"http://127.0.0.1:{up_port}/mcp"}},
           "approvals": {"max_hold_seconds": 1800}}
    if redis:
        cfg["store"] = {"redis": redis}
    (tmp / "probe").mkdir()
    (tmp / "probe" / "sitecustomize.py").write_text(PROBE)
    probe_out = tmp / "probe.json"
    env = {"PYTHONPATH": os.pathsep.join([str(tmp / "probe"), str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "AIRLOCK_BENCH_OUT": str(probe_out)}
    if trace:                                         # tracemalloc in the proxy: its RSS and latency then include tracing
        env["AIRLOCK_BENCH_TRACE"] = str(trace)       # frames per traceback
    a = Airlock(cfg, workdir=tmp / "airlock", env=env)
    await asyncio.to_thread(a.start)
    out: dict = {"holds": holds, "store": "redis" if redis else "memory"}
    try:
        port = int(a.gateway_url.rsplit(":", 1)[1])
        admin = httpx.AsyncClient(base_url=a.admin_url, headers=a.admin_headers, timeout=120,
                                  limits=httpx.Limits(max_connections=64))
        token = (await admin.post("/v1/keys", json={"account": "bench", "subject": "bench-agent"})).json()["token"]
        await throughput(port, token, 1.0)                                        # warm up
        out["rps_no_holds"] = round(await throughput(port, token, seconds), 1)
        out["rss_mb_before"] = round(rss_mb(a.proc.pid)[0], 1)
        import signal
        a.proc.send_signal(signal.SIGUSR1)            # probe: count GC pauses from here (and trace, if asked)

        answers: dict[int, asyncio.Future] = {}
        loop = asyncio.get_running_loop()

        async def held(n: int) -> None:
            fut = answers[n]
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(request_bytes(port, token, n, "hold_me", {"n": n}))
                status, body = await read_response(reader)
                fut.set_result((time.perf_counter(), status, body))
                writer.close()
            except Exception as e:                                              # counted, never silent
                if not fut.done():
                    fut.set_result((time.perf_counter(), 0, repr(e).encode()))

        t_open = time.perf_counter()
        tasks = []
        for n in range(holds):
            answers[n] = loop.create_future()
            tasks.append(loop.create_task(held(n)))
            if n % 100 == 99:                      # ramp: let the proxy accept and hold what is open so far
                while n + 1 - (await held_gauge(admin)) - sum(f.done() for f in answers.values()) > 300:
                    await asyncio.sleep(0.05)
        deadline = time.monotonic() + 600
        early: list[int] = []
        while time.monotonic() < deadline:
            early = [n for n, f in answers.items() if f.done()]
            if await held_gauge(admin) + len(early) >= holds:
                break
            await asyncio.sleep(0.5)
        out["seconds_to_hold_all"] = round(time.perf_counter() - t_open, 1)
        out["held"] = await held_gauge(admin)
        if early:                                  # answered before any decision: must not happen; show why
            kinds: dict[str, int] = {}
            for n in early:
                _, status, body = answers[n].result()
                key = f"{status}: {body[:120].decode(errors='replace')}"
                kinds[key] = kinds.get(key, 0) + 1
            out["answered_early"] = len(early)
            out["answered_early_kinds"] = dict(sorted(kinds.items(), key=lambda kv: -kv[1])[:5])
        rss, hwm = rss_mb(a.proc.pid)
        out["rss_mb_held"] = round(rss, 1)
        out["rss_mb_peak"] = round(hwm, 1)
        out["rss_kb_per_held_call"] = round((rss - out["rss_mb_before"]) * 1024 / max(1, holds), 1)
        probe = await _probe(a, probe_out)
        out["gc_while_holding"] = probe["gc"]
        if trace:
            out.update(_per_call({**probe, "snapshot": f"{probe_out}.snapshot"}, holds))
        out["rps_with_holds"] = round(await throughput(port, token, seconds), 1)
        out["rps_ratio"] = round(out["rps_with_holds"] / out["rps_no_holds"], 3)

        pending = (await admin.get("/v1/approvals", params={"limit": holds})).json()["approvals"]
        ids = {p["arguments"]["n"]: p["id"] for p in pending if not answers[p["arguments"]["n"]].done()}
        out["pending_listed"] = len(ids)
        lat = []
        a.proc.send_signal(signal.SIGUSR1)            # probe: GC pauses during the release samples
        cpu0 = cpu_ms(a.proc.pid), cpu_ms(a.proc.pid, a.proc.pid)
        sample = [n for n in range(0, holds, max(1, holds // 300)) if n in ids][:300]
        for n in sample:
            t0 = time.perf_counter()
            r = await admin.post(f"/v1/approvals/{ids[n]}/approve", json={"approver": "bench-human"})
            assert r.status_code == 200, r.text
            t_end, status, _ = await asyncio.wait_for(answers[n], 30)
            assert status == 200
            lat.append((t_end - t0) * 1000)
        # CPU the proxy spent per sequential release (whole process / its event-loop thread): unlike the
        # wall-clock latency, it does not depend on how busy the shared machine is
        out["release_cpu_ms_per_call"] = round((cpu_ms(a.proc.pid) - cpu0[0]) / max(1, len(lat)), 2)
        out["release_loop_cpu_ms_per_call"] = round((cpu_ms(a.proc.pid, a.proc.pid) - cpu0[1]) / max(1, len(lat)), 2)
        out["gc_while_releasing"] = (await _probe(a, probe_out))["gc"]
        lat.sort()
        out["release_ms_p50"] = round(statistics.median(lat), 2)
        out["release_ms_p99"] = round(lat[int(len(lat) * 0.99) - 1], 2)
        out["release_ms_max"] = round(lat[-1], 2)

        sem = asyncio.Semaphore(32)

        async def deny(n: int) -> None:
            async with sem:
                await admin.post(f"/v1/approvals/{ids[n]}/deny", json={"approver": "bench-human"})
        rest = [n for n in ids if n not in set(sample)]
        t0 = time.perf_counter()
        await asyncio.gather(*(deny(n) for n in rest))
        results = await asyncio.wait_for(asyncio.gather(*(answers[n] for n in rest)), 300)
        out["deny_all_seconds"] = round(time.perf_counter() - t0, 1)
        out["denied_answers_ok"] = sum(1 for _, st, body in results if st == 200 and b"denied" in body)
        out["client_errors"] = sum(1 for _, st, _ in results if st == 0)
        await asyncio.gather(*tasks, return_exceptions=True)
        out["rps_after_release"] = round(await throughput(port, token, seconds), 1)
        base = (out["rps_no_holds"] + out["rps_after_release"]) / 2        # the box is shared: average both sides
        out["rps_ratio_vs_mean_of_unheld_runs"] = round(out["rps_with_holds"] / base, 3)
        await admin.aclose()
    finally:
        await asyncio.to_thread(a.stop)
        await runner.cleanup()
    return out


async def _bare_serve(holds: int, patched: bool) -> None:
    """The floor, server side (its own process): a bare mitmproxy (no Airlock addons, no store, no
    audit) holding requests in an await; with ``patched``, Airlock's changes to mitmproxy
    (``proxy.mitm_patches``) applied. Talks to the parent over stdin/stdout, one line each."""
    import gc

    from mitmproxy import http, options
    from mitmproxy.addons import core, next_layer, proxyserver
    from mitmproxy.master import Master

    class Hold:
        def __init__(self):
            self.futs: list[asyncio.Future] = []
            self.armed = False                         # until then, answer at once (warm-up)

        async def request(self, flow):
            if not self.armed:
                flow.response = http.Response.make(200, b"ok")
                return
            fut = asyncio.get_running_loop().create_future()
            self.futs.append(fut)
            await fut
            flow.response = http.Response.make(200, b"ok")

    if patched:
        from proxy import mitm_patches
        mitm_patches.apply()
    loop = asyncio.get_running_loop()
    port = free_port()
    m = Master(options.Options())
    hold = Hold()
    m.addons.add(core.Core(), proxyserver.Proxyserver(), next_layer.NextLayer(), hold)
    m.options.update(mode=[f"reverse:http://127.0.0.1:9@127.0.0.1:{port}"], connection_strategy="lazy")
    task = loop.create_task(m.run())
    while not await _port_open(port):
        await asyncio.sleep(0.05)
    gc.collect()
    gc.freeze()                                        # as `airlock run` does after start-up
    print(json.dumps({"port": port}), flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)   # the parent has warmed us up
    gc.collect()
    hold.armed = True
    print(json.dumps({"armed": True}), flush=True)
    while len(hold.futs) < holds:
        await asyncio.sleep(0.1)
    gc.collect()
    print(json.dumps({"held": len(hold.futs)}), flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)   # the parent has read our RSS
    for f in hold.futs:
        f.set_result(None)
    m.shutdown()
    await asyncio.gather(task, return_exceptions=True)


async def _port_open(port: int) -> bool:
    try:
        _, w = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    w.close()
    return True


async def _bare(holds: int, patched: bool) -> float:
    """The floor, client side: the held connections live in this process, the RSS is the server's only.
    KB of server RSS per held request, from after a warm-up (requests answered at once) to all held."""
    import subprocess
    # under -O, as `airlock run` re-executes itself
    cmd = [sys.executable, "-O", "-m", "bench.approvals_hold", "--bare-serve", "--holds", str(holds)]
    proc = subprocess.Popen(cmd + (["--patched"] if patched else []),
                            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    async def line() -> dict:
        return json.loads(await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 600))

    async def say(text: str) -> None:
        proc.stdin.write(text + "\n")
        proc.stdin.flush()
    try:
        port = (await line())["port"]
        for i in range(200):                           # warm-up: mitmproxy's lazy imports and caches
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request_bytes(port, "x", i, "warm_up", {}))
            await read_response(reader)
            writer.close()
        await say("armed?")
        await line()
        await asyncio.sleep(0.5)
        before = rss_mb(proc.pid)[0]
        conns = []
        for i in range(holds):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request_bytes(port, "x", i, "hold_me", {"n": i}))
            conns.append(writer)
            if i % 200 == 199:
                await asyncio.sleep(0.05)
        await line()
        after = rss_mb(proc.pid)[0]
        await say("release")
        await asyncio.to_thread(proc.wait, 60)
        for w in conns:
            w.close()
    finally:
        if proc.poll() is None:
            proc.kill()
    return round((after - before) * 1024 / holds, 1)


def bare_floor(holds: int) -> dict:
    """Bare mitmproxy's KB per held request, stock and with Airlock's patches to it (``proxy.mitm_patches``)."""
    import uvloop
    out = {}
    for key, patched in (("bare_mitmproxy_kb_per_held_call", False), ("bare_patched_kb_per_held_call", True)):
        try:
            out[key] = uvloop.run(_bare(holds, patched))
        except Exception as e:                          # the floor is context; the main figures still count
            out[key.replace("kb_per_held_call", "error")] = f"{type(e).__name__}: {e}"[:300]
    out["bare_note"] = "server process RSS only (client in another process), from after a warm-up"
    return out


def run(holds: int = 10_000, seconds: float = 5.0, redis: str | None = None, floor: bool = True,
        trace: int = 0) -> dict:
    import uvloop
    res = uvloop.run(_run(holds, seconds, redis, trace))
    if floor:
        res.update(bare_floor(min(holds, 5000)))
    return res


def _reading(res: dict) -> str:
    """How to read the figures (written next to them)."""
    held_mb = res.get("rss_mb_held", 0) - res.get("rss_mb_before", 0)
    bare = res.get("bare_mitmproxy_kb_per_held_call")
    lines = [
        f"Reading: {res.get('held', 0):.0f} calls were held at once and every one got its answer "
        f"({res.get('denied_answers_ok', 0)} denials + the approved samples, {res.get('client_errors', 0)} client errors).",
        f"Holding them added {held_mb:.0f} MB ({res.get('rss_kb_per_held_call')} KB per held call) to a process that "
        f"started at {res.get('rss_mb_before')} MB (chDB audit engine, policy, mitmproxy, Redis client).",
    ]
    if bare:
        lines.append(f"A bare mitmproxy holding requests in an await costs {bare} KB per held request, "
                     f"{res.get('bare_patched_kb_per_held_call')} KB with Airlock's patches to it (`--bare`: the "
                     "server process alone, its clients in another process, from after a warm-up); what is left "
                     "is mitmproxy's connection, layers, paused generators, streams and three tasks with their "
                     "coroutines. `--trace 5` splits Airlock's figure by source line.")
    gc_rel = res.get("gc_while_releasing") or {}
    worst = max((g.get("max_cpu_ms", 0) for g in gc_rel.values()), default=0)
    lines.append(f"GC while releasing: worst pause {worst} ms of CPU ({', '.join(gc_rel) or 'none'}); the wall-clock "
                 "pauses next to it include waiting for a core.")
    lines.append("Release latency and requests/s are wall-clock: on a shared 2-vCPU box they follow the load "
                 "average more than the code; compare runs made in the same conditions.")
    return "\n".join(lines) + "\n"


def write_results(res: dict) -> None:
    path = ROOT / "bench" / "RESULTS.md"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    start, end = "<!-- approvals_hold:start -->", "<!-- approvals_hold:end -->"
    rows = "\n".join(f"| {k} | {v} |" for k, v in res.items())
    cpus = os.cpu_count()
    block = (f"{start}\n## Approvals: held calls (`bench/approvals_hold.py`)\n\n"
             f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {cpus} shared vCPUs (other work running), "
             f"Airlock `airlock run` as a subprocess, bench client + upstream in one other process.\n"
             "Goals: 10,000 held in <= 200 MB RSS; release p99 <= 20 ms; rps_ratio >= 0.9.\n\n"
             f"| metric | value |\n|---|---|\n{rows}\n\n{_reading(res)}\n{end}")
    if start in text:
        text = text[:text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--holds", type=int, default=10_000)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--redis", default=None, help="redis://... to use a Redis store (default: in-process)")
    p.add_argument("--write", action="store_true", help="record the figures in bench/RESULTS.md")
    p.add_argument("--bare", action="store_true", help="only measure a bare mitmproxy holding requests")
    p.add_argument("--trace", type=int, default=0, metavar="FRAMES",
                   help="tracemalloc in the proxy (FRAMES per traceback): top allocators per held call "
                        "(RSS and latency then include tracing)")
    p.add_argument("--bare-serve", action="store_true", help=argparse.SUPPRESS)   # --bare's server process
    p.add_argument("--patched", action="store_true", help=argparse.SUPPRESS)      # ... with proxy.mitm_patches
    args = p.parse_args()
    if args.bare_serve:
        import logging

        import uvloop
        logging.disable(logging.CRITICAL)
        uvloop.run(_bare_serve(args.holds, args.patched))
        sys.exit(0)
    if args.bare:
        print(json.dumps(bare_floor(args.holds), indent=2))
        sys.exit(0)
    result = run(args.holds, args.seconds, args.redis, floor=not args.trace, trace=args.trace)
    print(json.dumps(result, indent=2))
    if args.write:
        write_results(result)
