"""``airlock run --workers N`` against one worker: requests/s of the 1 KB POST at 50 connections.

One worker is pinned to the proxy core as everywhere else; N workers get every core (on this 2-core
machine that includes the core wrk and the upstream use, so the ratio is a floor). The number of
Airlock processes actually running is reported (the option may exist before it forks workers).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from . import http_post, targets
from .common import CPUS, PY, ROOT, cpu_seconds, median, openai_upstream, redis_server, tree_pids, wrk


def _airlocks(pid: int) -> int:
    n = 0
    for p in tree_pids(pid):
        try:
            cmd = Path(f"/proc/{p}/cmdline").read_bytes()
        except OSError:
            continue
        n += b"run" in cmd and (b"proxy.cli.main" in cmd or b"airlock" in cmd)
    return n


def has_workers_option() -> bool:
    help_text = subprocess.run([PY, "-m", "proxy.cli.main", "run", "--help"], cwd=ROOT, capture_output=True,
                               text=True, timeout=60, env={**os.environ, "COLUMNS": "200"}).stdout
    return "--workers" in help_text


def run(workers: int = 2, seconds: float = 5, runs: int = 3, optimize: bool = True,
        log=lambda m: print(m, file=sys.stderr)) -> dict:
    out: dict = {"workers": workers, "cpus": CPUS}
    if not has_workers_option():
        out["skipped"] = "`airlock run` has no --workers option in this build"
        return out
    all_cpus = ",".join(str(i) for i in range(CPUS))
    with openai_upstream() as up, redis_server() as store:      # several workers share state through Redis
        up_url = f"http://127.0.0.1:{up.port}"
        for n, cpu in ((1, None), (workers, all_cpus)):
            log(f"  workers: {n}")
            kw = {"cpu": cpu} if cpu else {}
            with targets.gateway(up_url, optimize, workers=n, redis=store.url, **kw) as t:
                url = t.url + http_post.PATH
                wrk(url, 50, 2, http_post.BODY, headers=t.headers)
                cpu0 = _tree_cpu(t.pid)
                rs = [wrk(url, 50, seconds, http_post.BODY, headers=t.headers) for _ in range(runs)]
                cpu = _tree_cpu(t.pid) - cpu0
                out[f"w{n}_rps"] = median([r.rps for r in rs])
                out[f"w{n}_req_per_cpu_s"] = round(sum(r.requests for r in rs) / cpu) if cpu > 0 else None
                out[f"w{n}_errors"] = sum(r.errors for r in rs)
                out[f"w{n}_processes"] = _airlocks(t.pid)
    out["scaling"] = round(out[f"w{workers}_rps"] / out["w1_rps"], 2) if out.get("w1_rps") else None
    a, b = out.get("w1_req_per_cpu_s"), out.get(f"w{workers}_req_per_cpu_s")
    out["cpu_efficiency"] = round(b / a, 2) if a and b else None
    return out


def _tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and its descendants (supervisor, workers, audit ingester)."""
    return sum(c for c in (cpu_seconds(p) for p in tree_pids(pid)) if c == c)


def table(res: dict) -> str:
    if "skipped" in res:
        return f"Not measured: {res['skipped']}.\n"
    n = res["workers"]
    return (f"| workers | Airlock processes seen | c50 req/s | errors |\n|---:|---:|---:|---:|\n"
            f"| 1 (pinned to the proxy core) | {res['w1_processes']} | {res['w1_rps']:.0f} | {res['w1_errors']} |\n"
            f"| {n} (all {res['cpus']} cores, shared with wrk + upstream) | {res[f'w{n}_processes']} | "
            f"{res[f'w{n}_rps']:.0f} | {res[f'w{n}_errors']} |\n\nScaling {n} vs 1: **{res['scaling']}×** "
            f"(target ≥ {0.9 * n:.1f}×). Requests per CPU-second of the whole Airlock process tree: "
            f"{res.get('w1_req_per_cpu_s')} with 1 worker, {res.get(f'w{n}_req_per_cpu_s')} with {n} "
            f"(efficiency {res.get('cpu_efficiency')}: what {n} workers would scale to given {n} free cores).\n")
