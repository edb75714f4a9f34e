"""MCP ``tools/call`` through the firewall (audit on) vs bare mitmproxy vs direct, in one run.

    .venv/bin/python -m bench.mcp_calls [--seconds 5] [--rules 200]

Airlock runs with a policy of ``--rules`` tool rules (each with a CEL condition) and a
server ``bench`` in front of the JSON upstream. Scenarios: an allowed call carrying a
``justification`` (decided, stripped, re-serialised, audited, forwarded) and a denied call
(decided, audited, answered by Airlock: the upstream is not contacted). wrk drives
1 and 50 keep-alive connections; the proxy is pinned to its own core.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import orjson

from . import targets
from .common import median, upstream, wrk


def call(name: str, args: dict) -> bytes:
    return orjson.dumps({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": name,
                                                                                      "arguments": args}})


ALLOWED = call("echo", {"text": "x" * 200, "justification": "the user asked for an echo"})
DENIED = call("delete_repo", {"name": "prod"})


def policy(n_rules: int) -> str:
    lines = ["version: '1.0'", "defaults: {action: allow, justification: optional}", "tools:",
             "  - {id: no-delete, name: delete_repo, action: deny, description: 'agents may not delete repos'}",
             "  - name: echo", "    conditions:",
             "      - {expression: \"args.text.contains('forbidden')\", action: deny}",
             "      - {expression: 'tool.changed', action: require_approval}"]
    for i in range(max(0, n_rules - 2)):
        lines += [f"  - name: tool_{i}", "    conditions:",
                  f"      - {{expression: \"has(args.path) && args.path.startsWith('/etc/{i}')\", action: deny}}"]
    return "\n".join(lines) + "\n"


def measure(url: str, body: bytes, token: str | None, seconds: float, runs_c1: int, runs_c50: int) -> dict:
    wrk(url, 10, max(1, seconds / 2), body, token)                             # warm-up
    c1 = [wrk(url, 1, seconds, body, token) for _ in range(runs_c1)]
    c50 = [wrk(url, 50, seconds, body, token) for _ in range(runs_c50)]
    return {"c1_rps": median([r.rps for r in c1]), "c1_p50_ms": median([r.p50_ms for r in c1]),
            "c1_p99_ms": median([r.p99_ms for r in c1]), "c50_rps": median([r.rps for r in c50]),
            "c50_p50_ms": median([r.p50_ms for r in c50]), "c50_p99_ms": median([r.p99_ms for r in c50]),
            "errors": sum(r.errors for r in c1 + c50)}


def run(seconds: float = 5, runs_c1: int = 2, runs_c50: int = 3, rules: int = 200, optimize: bool = False) -> dict:
    out: dict = {}
    path = "/json/mcp"
    pol = Path(tempfile.mkdtemp(prefix="bench-mcp-")) / "policy.yaml"
    pol.write_text(policy(rules))
    with upstream() as up:
        up_url = f"http://127.0.0.1:{up.port}"
        out["direct"] = measure(up_url + path, ALLOWED, None, seconds, runs_c1, runs_c50)
        with targets.bare_mitmproxy(up_url, optimize) as bare:
            out["bare mitmproxy"] = measure(bare.url + path, ALLOWED, None, seconds, runs_c1, runs_c50)
        extra = {"mcp_servers": {"bench": {"url": up_url + path}}, "policies": [str(pol)]}
        with targets.airlock(up_url, optimize, extra=extra) as (al, token):
            gw = al.url.rsplit("/", 1)[0] + "/mcp/bench"
            out["airlock, allowed call"] = measure(gw, ALLOWED, token, seconds, runs_c1, runs_c50)
            out["airlock, denied call"] = measure(gw, DENIED, token, seconds, runs_c1, runs_c50)
            out["airlock, allowed call"]["rss_mb"] = al.rss_mb()
    return out


def table(res: dict) -> str:
    d, b = res["direct"], res["bare mitmproxy"]
    rows = ["| target | c50 calls/s | vs bare | c50 p50 / p99 ms | c1 calls/s | c1 p50 / p99 ms "
            "| added c1 p50 vs direct | errors |", "|---|---:|---:|---|---:|---|---|---:|"]
    for name, r in res.items():
        vs = f"{100 * r['c50_rps'] / b['c50_rps']:.0f}%" if b["c50_rps"] else "-"
        added = "—" if name == "direct" else f"+{r['c1_p50_ms'] - d['c1_p50_ms']:.2f} ms"
        rows.append(f"| {name} | {r['c50_rps']:.0f} | {vs} | {r['c50_p50_ms']:.2f} / {r['c50_p99_ms']:.2f} | "
                    f"{r['c1_rps']:.0f} | {r['c1_p50_ms']:.2f} / {r['c1_p99_ms']:.2f} | {added} | {r['errors']} |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.mcp_calls")
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--rules", type=int, default=200)
    ap.add_argument("--smoke", action="store_true", help="1 s runs, one of each")
    a = ap.parse_args()
    res = run(1 if a.smoke else a.seconds, 1 if a.smoke else 2, 1 if a.smoke else 3, a.rules)
    print(table(res))


if __name__ == "__main__":
    main()
