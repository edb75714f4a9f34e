"""Audit ingest: sustained rows/s from the first ``emit`` until every row is in chDB (``flush``), the
proxy process's CPU per row (build + redact + chain + WAL fsync; ClickHouse runs in the ingester
process), the ingester's CPU per row, and the event-loop cost of the audit addon per request.

    .venv/bin/python -O -m bench.audit_ingest [--events 200000]

``run()`` returns a dict (bench.run can add it to RESULTS.md); ``table()`` formats it.
Targets (issue 6): >= 50k events/s; audit costs <= 10% of gateway requests/s. On a shared machine the
wall-clock rate depends on what else runs; the CPU figures do not.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import resource
import tempfile
import time
from pathlib import Path


def _fields(i: int) -> dict:
    return {"account": "acme", "flow": "ci", "subject": "alice", "agent": "claude-code", "session": f"s{i % 500}",
            "token_id": "0123456789abcdef", "listener": "gateway", "route_kind": "openai", "route_name": "openai",
            "method": "POST", "path": "/v1/chat/completions", "status": 200, "latency_ms": 12.5 + i % 7,
            "bytes_in": 1024, "bytes_out": 2048, "outcome": "forwarded", "provider": "openai",
            "model": "gpt-4o-mini", "tokens_in": 120, "tokens_out": 40, "cost": 0.00012}


def _pid_cpu(pid: int) -> float:
    """CPU seconds used so far by process ``pid`` (Linux /proc; 0 if it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def _self_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


async def _ingest(events: int, tmp: Path) -> dict:
    from proxy.audit import AuditSink
    sink = AuditSink(f"chdb://{tmp / 'ch'}", tmp / "wal", queue_size=max(events, 100_000))
    await sink.start()
    flushed = await asyncio.to_thread(sink.flush, 60)
    if not flushed:
        raise RuntimeError("audit: the first flush did not complete")
    ing_pid = sink.ingester.handle.pid
    ing0, cpu0, t0 = _pid_cpu(ing_pid), _self_cpu(), time.perf_counter()
    emit = sink.emit_fields                      # as the audit addon queues its request rows
    depth = sink.writer.depth
    t_emit = 0.0
    for start in range(0, events, 1000):         # sustained: the producer never runs far ahead of the writer
        while depth() > 20_000:
            time.sleep(0.0005)
        t = time.perf_counter()
        for i in range(start, min(start + 1000, events)):
            emit("request", _fields(i))
        t_emit += time.perf_counter() - t
    flushed = await asyncio.to_thread(sink.flush, 300)    # never inside an assert: -O would drop the call
    elapsed = time.perf_counter() - t0
    proc_cpu, ing_cpu = _self_cpu() - cpu0, _pid_cpu(ing_pid) - ing0
    n = sink.query("SELECT count() AS n FROM events WHERE kind = 'request'")[0]["n"]
    from proxy.audit import metrics as m
    dropped = sum(s.value for fam in m.ROWS_DROPPED.collect() for s in fam.samples if s.name.endswith("_total"))
    await sink.close()
    if not flushed or n != events:
        raise RuntimeError(f"audit: flush returned {flushed} with {n} of {events} rows in ClickHouse")
    return {"events": events, "rows_in_clickhouse": n, "seconds": round(elapsed, 3),
            "rows_per_s": round(events / elapsed), "proxy_cpu_us_per_row": round(proc_cpu / events * 1e6, 2),
            "ingester_cpu_us_per_row": round(ing_cpu / events * 1e6, 2),
            "rows_per_cpu_s": round(events / (proc_cpu + ing_cpu)), "emit_us": round(t_emit / events * 1e6, 2),
            "dropped": dropped}


def _addon_cost(n: int = 20000) -> dict:
    """The audit addon's row on the event loop for one governed model call: ``request_row`` (what the addon
    builds and hands to ``write_now_row``), beside the reference path it replaces (``request_fields`` +
    ``build_row``)."""
    from mitmproxy.test import tflow
    from proxy import flowmeta
    from proxy.audit.events import Redactor, build_row
    from proxy.audit.flows import request_fields, request_row
    f = tflow.tflow(resp=True)
    f.request.path = "/openai/v1/chat/completions?api-version=1"
    f.request.content = b'{"model": "gpt-4o-mini", "messages": []}'
    f.metadata[flowmeta.IDENTITY] = flowmeta.Identity("0123456789abcdef", "acme", "ci", "alice", "claude", "s1")
    f.metadata[flowmeta.ROUTE] = flowmeta.Route("gateway", "openai", "openai", "/v1/chat/completions")
    f.metadata[flowmeta.USAGE] = {"provider": "openai", "api": "chat", "model": "gpt-4o-mini", "stream": False,
                                  "input_tokens": 120, "output_tokens": 40, "cached_tokens": 0,
                                  "cache_write_tokens": 0, "reasoning_tokens": 0, "usage_source": "provider",
                                  "cost_estimated_usd": None, "cost_usd": 0.00012, "reserved_usd": 0.0,
                                  "ttft_ms": None, "duration_ms": 2.1, "status": "ok", "http_status": 200,
                                  "cut_reason": None, "reason": None, "price_source": "genai-prices"}
    red = Redactor(["sk-bench-upstream-0123456789"])
    out = {}
    for name, build in (("addon_row_us", lambda: request_row(f, red)),
                        ("reference_row_us", lambda: build_row("request", request_fields(f), red))):
        for _ in range(500):
            build()
        t = time.perf_counter()
        for _ in range(n):
            build()
        out[name] = round((time.perf_counter() - t) / n * 1e6, 2)
    return out


def run(events: int = 200_000) -> dict:
    with tempfile.TemporaryDirectory(prefix="airlock-bench-audit-") as d:
        res = asyncio.run(_ingest(events, Path(d)))
    res.update(_addon_cost())
    # in process, not in situ: inside the proxy the same work costs 2-3x this (bench/audit_cost.py measures
    # audit's share of a gateway request there; an estimate from these figures would be far too low)
    res["audit_us_per_request"] = round(res["addon_row_us"] + res["proxy_cpu_us_per_row"], 1)
    return res


def table(res: dict) -> str:
    return ("| figure | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in res.items()) + "\n")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(prog="python -m bench.audit_ingest")
    ap.add_argument("--events", type=int, default=200_000)
    a = ap.parse_args()
    r = run(a.events)
    print(table(r))
    print(f"max RSS of the proxy process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MB")
