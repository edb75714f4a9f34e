"""Renders bench/RESULTS.md from the saved scenario results (bench/run.py) and checks the issue's targets."""
from __future__ import annotations

from .targets import DEFAULT, PATCHED

_KEEP_START, _KEEP_END = "<!-- analysis:start -->", "<!-- analysis:end -->"

TITLES = {
    "http_post": "Non-streaming 1 KB POST through the gateway (closed loop: wrk; open loop: bench/openloop.py)",
    "audit_cost": "What audit costs the gateway: with and without the audit addon, alternated (bench/audit_cost.py)",
    "sse": "SSE through the gateway: time to first token, events/s, per-event latency, concurrent streams",
    "sse_metering": "SSE with metering on (bench/sse_metering.py)",
    "mcp_calls": "MCP tools/call through the firewall, policy (200 rules) + audit on (bench/mcp_calls.py)",
    "policy_decide": "Policy decision time, 200 rules (bench/policy_decide.py)",
    "audit_ingest": "Audit ingest into chDB (bench/audit_ingest.py)",
    "approvals_hold": "Approvals: calls held at once (bench/approvals_hold.py)",
    "workers": "airlock run --workers N (bench/workers.py)",
    "rss": "RSS over many requests (bench/rss.py)",
    "profile": "Where Airlock's gateway spends CPU under c50 load (bench/profile.py, py-spy)",
}


def _kv(res: dict) -> str:
    return "| figure | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in res.items()) + "\n"


def section(name: str, res: dict) -> str:
    if name == "http_post":
        from . import http_post
        return http_post.table(res) + "\n"
    if name == "audit_cost":
        from . import audit_cost
        return audit_cost.table(res)
    if name == "sse":
        from . import sse
        return sse.table(res) + "\n"
    if name == "mcp_calls":
        from . import mcp_calls
        return mcp_calls.table(res) + "\n"
    if name == "workers":
        from . import workers
        return workers.table(res)
    if name == "rss":
        from . import rss
        return rss.table(res)
    if name == "profile":
        from . import profile
        return profile.table(res)
    if name == "policy_decide":
        rows = ["| call | p50 µs | p99 µs | decision |", "|---|---:|---:|---|"]
        rows += [f"| {k} | {v['p50_us']} | {v['p99_us']} | {v['decision']} |" for k, v in res["scenarios"].items()]
        return f"{res['policy']}\n\n" + "\n".join(rows) + "\n"
    if name == "sse_metering":
        t, u, lat, c = res["throughput"], res["throughput_unmetered"], res["latency"], res["concurrency"]
        return ("| figure | metered | unmetered path |\n|---|---:|---:|\n"
                f"| events per proxy CPU-second | {t.get('events_per_proxy_cpu_s')} | "
                f"{u.get('events_per_proxy_cpu_s')} |\n"
                f"| events/s (wall clock, {t['streams']} streams) | {t['events_per_s']} | {u['events_per_s']} |\n"
                f"| added CPU per event (metered − unmetered) | {t.get('added_cpu_us_per_event')} µs | |\n"
                f"| per-event latency p50 / p99, direct | {lat['direct']['p50_ms']} / "
                f"{lat['direct']['p99_ms']} ms | |\n"
                f"| per-event latency p50 / p99, via Airlock | {lat['via_airlock']['p50_ms']} / "
                f"{lat['via_airlock']['p99_ms']} ms | |\n"
                f"| added per-event p50 / p99 | {lat['added_ms'].get('p50_ms')} / "
                f"{lat['added_ms'].get('p99_ms')} ms | |\n"
                f"| concurrent streams | {c['streams']} streams, {c['errors']} errors | |\n"
                f"| errors (throughput) | {t['errors']} | {u['errors']} |\n"
                f"| tokens metered | {res.get('metered_tokens')} | |\n")
    if name == "approvals_hold":
        return "Goals: 10,000 held in ≤ 200 MB RSS; release p99 ≤ 20 ms; unheld throughput ratio ≥ 0.9.\n\n" + _kv(res)
    return _kv(res)


def _g(d: dict, *keys):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def targets_table(results: dict) -> str:
    """One row per target of issue 7: figure, target, met?, by how much."""
    R = {k: v.get("result") for k, v in results.items() if isinstance(v, dict)}
    rows = []

    def add(what, value, target, ok, gap=""):
        if value is None:
            rows.append(f"| {what} | not measured | {target} | — | |")
        else:
            rows.append(f"| {what} | {value} | {target} | {'✅ met' if ok else '❌ missed'} | {gap if not ok else ''} |")

    hp = R.get("http_post") or {}
    peers = [k for k in hp if k.startswith("LiteLLM")]
    for al, bare in ((DEFAULT, "bare mitmproxy, python -O"), (DEFAULT, PATCHED),
                     ("airlock run --debug-checks", "bare mitmproxy")):
        a, b = _g(hp, al, "c50_rps"), _g(hp, bare, "c50_rps")
        if a is not None and b:
            r = a / b
            add(f"{al}: req/s vs {bare} (c50, per core)", f"{100 * r:.0f}%", "≥ 85%", r >= 0.85,
                f"{100 * (0.85 - r):.0f} points short")
        else:
            add(f"{al}: req/s vs {bare}", None, "≥ 85%", False)
        for q, lim in (("p50", 1.0), ("p99", 3.0)) if bare != PATCHED else ():     # latency: once per target
            v, d = _g(hp, al, f"ol250_{q}_ms"), _g(hp, "direct", f"ol250_{q}_ms")
            add(f"{al}: added {q} at 250 req/s (open loop)", None if v is None or d is None else f"{v - d:+.2f} ms",
                f"≤ {lim:g} ms", v is not None and d is not None and v - d <= lim,
                "" if v is None or d is None else f"{v - d - lim:.2f} ms over")
    for p in peers or ["LiteLLM proxy"]:
        for al in (DEFAULT, "airlock run --debug-checks"):
            a, l = _g(hp, al, "c50_rps"), _g(hp, p, "c50_rps")
            add(f"{al} vs {p} (c50 req/s)", f"{a / l:.1f}×" if a and l else None, "≥ 10×",
                bool(a and l and a / l >= 10), f"{10 - a / l:.1f}× short" if a and l else "")
    w = R.get("workers") or {}
    n = w.get("workers", 2)
    sc = w.get("scaling")
    add(f"{n} workers vs 1 (c50 req/s)" + (f" ({w['skipped']})" if "skipped" in w else ""),
        f"{sc}× ({w.get(f'w{n}_processes')} process(es) seen)" if sc else None,
        f"≥ {0.9 * n:.1f}×", bool(sc and sc >= 0.9 * n), f"{0.9 * n - sc:.2f}× short" if sc else "")
    s = _g(R, "sse", "airlock gateway") or {}
    epc = s.get("events_per_cpu_s")
    add("SSE events per proxy CPU-second (airlock -O, unmetered default config)", epc, "≥ 40,000",
        bool(epc and epc >= 40000), f"{100 * (1 - epc / 40000):.0f}% short" if epc else "")
    ev, dv = s.get("event_p99_ms"), _g(R, "sse", "direct", "event_p99_ms")
    add("SSE added per-event p99 (airlock -O)", None if ev is None or dv is None else f"{ev - dv:+.2f} ms", "≤ 2 ms",
        ev is not None and dv is not None and ev - dv <= 2,
        "" if ev is None or dv is None else f"{ev - dv - 2:.2f} ms over")
    sm = _g(R, "sse_metering", "throughput", "events_per_proxy_cpu_s")
    add("SSE events per proxy CPU-second with metering (sse_metering)", sm, "≥ 40,000", bool(sm and sm >= 40000),
        f"{100 * (1 - sm / 40000):.0f}% short" if sm else "")
    mc = _g(R, "mcp_calls", "airlock, allowed call", "c50_rps")
    add("MCP tools/call through the firewall (allowed, audited; c50, per core)", f"{mc:.0f}/s" if mc else None,
        "≥ 800/s", bool(mc and mc >= 800), f"{100 * (1 - mc / 800):.0f}% short" if mc else "")
    rs = R.get("rss") or {}
    if rs.get("samples"):
        from .rss import stats
        rs = {**rs, **stats(rs["samples"])}
    from .rss import summary
    figure, short = summary(rs) if rs else (None, "")
    add(f"RSS over {rs.get('requests', '?')} requests", figure, "flat (< 1 MB/100k)", bool(rs.get("flat")), short)
    ah = R.get("approvals_hold") or {}
    if ah:
        grown = round((ah.get("rss_mb_held") or 0) - (ah.get("rss_mb_before") or 0), 1)
        add(f"approvals: RSS added by {ah.get('holds')} held calls", f"{grown} MB ({ah.get('rss_kb_per_held_call')} "
            f"KB each; process {ah.get('rss_mb_held')} MB)", "≤ 200 MB for 10,000",
            grown * 10_000 / max(1, ah.get("holds") or 1) <= 200,
            f"{grown * 10_000 / max(1, ah.get('holds') or 1) - 200:.0f} MB over (for 10,000)")
        rel = ah.get("release_ms_p99")
        add("approvals: decision-to-release p99", f"{rel} ms", "≤ 20 ms", (rel or 1e9) <= 20,
            f"{rel - 20:.2f} ms over" if rel else "")
    ac = R.get("audit_cost") or {}
    if ac:
        worst = max(ac["cost"], ac.get("cost_cpu", 0))
        add("audit on: cost to gateway req/s (audit_cost: median of alternated rounds; CPU of the whole tree)",
            f"{100 * ac['cost']:.1f}%; {100 * ac.get('cost_cpu', 0):.1f}%", "≤ 10% (both)", worst <= 0.10,
            f"{100 * (worst - 0.10):.1f} points over")
    au = R.get("audit_ingest") or {}
    if au:
        add("audit ingest rows/s (wall clock)", au.get("rows_per_s"), "≥ 50,000", (au.get("rows_per_s") or 0) >= 50000,
            f"{100 * (1 - au['rows_per_s'] / 50000):.0f}% short" if au.get("rows_per_s") else "")
    return "| target (issue 7) | measured | goal | | by how much |\n|---|---|---|---|---|\n" + "\n".join(rows) + "\n"


def render(meta: dict, results: dict, order: list[str], previous: str = "") -> str:
    m = meta["machine"]
    out = [f"# Benchmark results\n\nWritten by `{meta['command']}`, started {meta['started']}, finished "
           f"{meta.get('finished', '?')}, Airlock commit `{m.get('airlock_commit')}`.\n",
           f"**Machine**: {m['cpus']} vCPUs ({m['cpu']}), kernel {m['kernel']}, Python {m['python']}, mitmproxy "
           f"{m['mitmproxy']}, {m['wrk']}. The process under test is pinned to CPU 1 (`taskset`); wrk, the Python "
           f"load generators and the upstream (bench/upstream.py, aiohttp on uvloop) share CPU 0, so proxy figures "
           f"are per core and direct figures are a lower bound for the upstream. Load average (1/5/15 min) before: "
           f"{meta.get('load_before')}, after: {meta.get('load_after')}.\n",
           "`airlock run` re-runs itself under `python -O` by default (drops mitmproxy's `__debug__` type checks "
           "*and its `assert`s*); `--debug-checks` lines run without it, as do the bare mitmproxy lines not named "
           "`python -O`. Child processes (the audit ingester, workers) inherit the proxy's CPU pinning unless "
           "a line says otherwise. Airlock's config: "
           "`policies/default.yaml`, audit on (chDB in the audit ingester, a child process), in-process store, provider `bench` (OpenAI kind) "
           "in front of the upstream with a key injected from the environment.\n"]
    if meta.get("reruns"):
        out.append("Scenarios re-run later: " + "; ".join(meta["reruns"]) + ".\n")
    skips = m.get("peers_skipped") or {}
    if skips:
        out.append("Peers not measured: " + "; ".join(f"**{k}**: {v}" for k, v in skips.items()) + ".\n")
    if previous and _KEEP_START in previous and _KEEP_END in previous:
        out.append(previous[previous.index(_KEEP_START):previous.index(_KEEP_END) + len(_KEEP_END)] + "\n")
    out.append("## Targets\n\n" + targets_table(results))
    for name in order:
        if name not in results:
            continue
        doc = results[name]
        head = f"## {TITLES.get(name, name)}\n\n"
        if "error" in doc:
            out.append(head + f"**Failed**: `{doc['error']}`\n")
            continue
        try:
            body = section(name, doc["result"])
        except Exception as e:  # noqa: BLE001 - a renderer bug must not hide the raw figures
            body = f"(could not render: {e})\n\n```\n{doc['result']}\n```\n"
        out.append(head + body + f"\n_{doc['seconds']} s; load average after: {doc.get('load_after')}_\n")
    others = _owner_blocks(previous)
    if others:
        out.append("## Earlier notes from scenario owners (kept as they wrote them; their own run, their "
                   "conditions)\n\n" + "\n\n".join(others) + "\n")
    return "\n".join(out)


def _owner_blocks(previous: str) -> list[str]:
    """``<!-- name:start -->`` ... ``<!-- name:end -->`` blocks other tools wrote (e.g. approvals_hold --write)."""
    import re
    return [m.group(0) for m in re.finditer(r"<!-- (\w+):start -->.*?<!-- \1:end -->", previous or "", re.S)
            if m.group(1) != "analysis"]
