"""What audit costs the gateway: the addon chain without and with the audit addon, side by side, alternated.

    python -O -m bench.audit_cost [--rounds 8] [--seconds 5]

Both targets run at once, each pinned to the proxy core with its own audit ingester. wrk drives one at a time
at c50 (the 1 KB POST of bench/http_post.py), in the order A B, B A, A B, ... so that a slow or fast phase of
the host falls on both. The cost is 1 − the median of each round's ratio (with audit / without): one run of
each target, as the http_post group lines give, spreads by ±10% on a shared host.

It also splits the CPU per request (from /proc, user + system) of the proxy's event loop, its audit writer
thread, its other threads and its audit ingester process.

A third target, audit on with ``audit.group_commit_ms: 50`` (the writer's fsync every 50 ms instead of
10), runs in the same rotation: what that knob buys.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time

import httpx

from . import http_post, targets
from .common import openai_upstream, wrk

WITHOUT = targets.ADDON_GROUPS["+ gateway + metering + streaming"]
WITH = targets.ADDON_GROUPS["+ audit (no metrics)"]
GROUP_MS = 50
LONG = f"with, group_commit_ms {GROUP_MS}"
_TICK = os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as fh:
                    if int(fh.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    return out


def _ticks(path: str) -> tuple[str, int]:
    with open(path) as fh:
        raw = fh.read()
    f = raw.rsplit(")", 1)[1].split()
    return raw[raw.index("(") + 1:raw.rindex(")")], int(f[11]) + int(f[12])


def cpu(pid: int) -> dict[str, float]:
    """CPU seconds so far: the proxy's event loop (its main thread), audit writer thread, other threads, and
    its child processes (the audit ingester)."""
    out = {"event_loop": 0.0, "audit_writer": 0.0, "other_threads": 0.0, "ingester": 0.0}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            name, t = _ticks(f"/proc/{pid}/task/{tid}/stat")
        except OSError:
            continue
        key = "event_loop" if int(tid) == pid else "audit_writer" if name.startswith("airlock-audit") \
            else "other_threads"                    # the writer names itself in the OS (proxy.audit.writer)
        out[key] += t / _TICK
    for child in _children(pid):
        try:
            out["ingester"] += _ticks(f"/proc/{child}/stat")[1] / _TICK
        except OSError:
            pass
    return out


def drained(target, timeout: float = 60.0) -> bool:
    """Wait until the target's audit ingester has inserted every row written so far (no WAL segment left)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            st = httpx.get(target.proc.admin + "/v1/audit/status", headers=target.proc.admin_headers).json()
            if st.get("wal_segments") == 0 and not st.get("backlog"):
                return True
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.5)
    return False


def run(rounds: int = 8, seconds: float = 5, log=print) -> dict:
    runs: dict[str, list] = {"without": [], "with": [], LONG: []}
    whole: dict[str, dict] = {}
    with openai_upstream() as up, contextlib.ExitStack() as stack:
        url = f"http://127.0.0.1:{up.port}"
        t = {"without": stack.enter_context(targets.gateway(url, True, addons=WITHOUT)),
             "with": stack.enter_context(targets.gateway(url, True, addons=WITH)),
             LONG: stack.enter_context(targets.gateway(url, True, addons=WITH,
                                                       extra={"audit": {"group_commit_ms": GROUP_MS}}))}
        names = list(t)
        for target in t.values():
            wrk(target.url + http_post.PATH, 10, 2, http_post.BODY, headers=target.headers)      # warm-up
        for name, target in t.items():
            drained(target)
            whole[name] = {"start": cpu(target.pid)}
        for r in range(rounds):
            for name in (names if r % 2 == 0 else names[::-1]):
                target = t[name]
                before = cpu(target.pid)
                w = wrk(target.url + http_post.PATH, 50, seconds, http_post.BODY, headers=target.headers)
                after = cpu(target.pid)
                n = max(1, w.requests or int(w.rps * seconds))
                runs[name].append({"rps": w.rps, "errors": w.errors,
                                   **{f"{k}_us": round((after[k] - before[k]) / n * 1e6, 1) for k in after}})
            log(f"  audit cost round {r + 1}/{rounds}: " + ", ".join(f"{n} {runs[n][-1]['rps']:.0f}" for n in names)
                + " req/s")
        # the ingester inserts a segment once it is 5 s old: its work for the last rounds comes after them
        for name, target in t.items():
            whole[name]["drained"] = drained(target)
            whole[name]["end"] = cpu(target.pid)
    ratios = [w["rps"] / wo["rps"] for wo, w in zip(runs["without"], runs["with"])]
    long_ratios = [w["rps"] / wo["rps"] for wo, w in zip(runs["without"], runs[LONG])]
    out: dict = {"rounds": rounds, "seconds": seconds, "ratios": [round(x, 3) for x in ratios],
                 "cost": round(1 - statistics.median(ratios), 4),
                 "long_group": {"group_commit_ms": GROUP_MS, "ratios": [round(x, 3) for x in long_ratios],
                                "cost": round(1 - statistics.median(long_ratios), 4)},
                 "errors": sum(x["errors"] for v in runs.values() for x in v)}
    for name, rs in runs.items():
        n = sum(max(1, int(x["rps"] * seconds)) for x in rs)
        w = whole[name]
        out[name] = {"rps_median": round(statistics.median(x["rps"] for x in rs)),
                     "rps_min": round(min(x["rps"] for x in rs)), "rps_max": round(max(x["rps"] for x in rs)),
                     **{k: round(statistics.median(x[k] for x in rs), 1) for k in rs[0] if k.endswith("_us")},
                     # the whole run, drained: the ingester's work for every row it was given, wherever it fell
                     "whole": {f"{k}_us": round((w["end"][k] - w["start"][k]) / n * 1e6, 1) for k in w["end"]},
                     "drained": w["drained"]}
        out[name]["whole"]["total_us"] = round(sum(out[name]["whole"].values()), 1)
    out["cost_cpu"] = round(1 - out["without"]["whole"]["total_us"] / out["with"]["whole"]["total_us"], 4)
    out["long_group"]["cost_cpu"] = round(1 - out["without"]["whole"]["total_us"] / out[LONG]["whole"]["total_us"], 4)
    return out


def table(res: dict) -> str:
    keys = [k for k in res["with"] if k.endswith("_us")]
    lg = res.get("long_group")
    lw = res.get(LONG) if lg else None
    extra = f" with audit, `group_commit_ms: {lg['group_commit_ms']}` |" if lw else ""
    rows = ["| | without audit | with audit | difference |" + extra,
            "|---|---:|---:|---:|" + ("---:|" if lw else "")]
    wo, w = res["without"], res["with"]
    rows.append(f"| req/s, median of {res['rounds']} runs of {res['seconds']:g} s (min–max) | {wo['rps_median']:,} "
                f"({wo['rps_min']:,}–{wo['rps_max']:,}) | {w['rps_median']:,} ({w['rps_min']:,}–{w['rps_max']:,}) "
                "| |" + (f" {lw['rps_median']:,} ({lw['rps_min']:,}–{lw['rps_max']:,}) |" if lw else ""))
    for k in keys:
        rows.append(f"| CPU µs per request during its runs: {k[:-3].replace('_', ' ')} | {wo[k]} | {w[k]} | "
                    f"{w[k] - wo[k]:+.1f} |" + (f" {lw[k]} |" if lw else ""))
    for k in w["whole"]:
        a, b = wo["whole"][k], w["whole"][k]
        rows.append(f"| CPU µs per request over the whole run, drained: {k[:-3].replace('_', ' ')} | {a} | {b} | "
                    f"{b - a:+.1f} |" + (f" {lw['whole'][k]} |" if lw else ""))
    long = (f" With `audit.group_commit_ms: {lg['group_commit_ms']}` (fsync every {lg['group_commit_ms']} ms): "
            f"**{100 * lg['cost']:.1f}%** (ratios {lg['ratios']}), **{100 * lg['cost_cpu']:.1f}%** in CPU.") \
        if lw else ""
    return ("Goal: audit on costs ≤ 10% of gateway requests/s. **Cost: "
            f"{100 * res['cost']:.1f}%** (1 − the median of the rounds' ratios {res['ratios']}); in CPU per request "
            f"of the whole process tree over the whole run (the ingester's deferred inserts and merges included): "
            f"**{100 * res['cost_cpu']:.1f}%**; errors: {res['errors']}." + long + "\n\n" + "\n".join(rows) + "\n")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(prog="python -m bench.audit_cost")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=5)
    a = ap.parse_args()
    print(table(run(a.rounds, a.seconds)))
