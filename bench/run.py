"""``make bench`` / ``make bench-smoke``: every scenario side by side, written to bench/RESULTS.md.

    python -O -m bench.run [--smoke] [--only http_post,sse,...] [--output FILE] [--no-peers]

Each scenario's figures are saved as JSON under ``.bench/results/<mode>/`` as soon as it finishes, and
RESULTS.md is rendered from every saved scenario, so ``--only`` re-runs a part without losing the rest.
Smoke mode (CI) runs each scenario briefly to prove the harness works, asserts no speed, skips the peers
(LiteLLM is a ~770 MB install) and writes to a temporary file instead of RESULTS.md.
A hand-written block between ``<!-- analysis:start -->`` and ``<!-- analysis:end -->`` in RESULTS.md
is kept when the file is rewritten.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import report
from .common import LOAD_CPU, ROOT, loadavg

SCENARIOS = ["http_post", "audit_cost", "sse", "sse_metering", "mcp_calls", "policy_decide", "audit_ingest",
             "approvals_hold", "workers", "profile", "rss"]


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _peers(smoke: bool, enabled: bool) -> tuple[dict, dict]:
    if smoke or not enabled:
        return {}, {"all peers": "not run in smoke mode" if smoke else "--no-peers"}
    from . import peers
    return peers.catalogue(_log)


def _policy_decide(n: int) -> dict:
    """bench/policy_decide.py has no run(): run its CLI and read its table."""
    out = subprocess.run([sys.executable, "-m", "bench.policy_decide", "--n", str(n)], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip()[-500:])
    rows = {}
    for line in out.stdout.splitlines():
        m = re.match(r"^(.*?)\s+([\d.]+)\s+([\d.]+)\s+(\w+)$", line)
        if m and not line.startswith("scenario"):
            rows[m.group(1).strip()] = {"p50_us": float(m.group(2)), "p99_us": float(m.group(3)),
                                        "decision": m.group(4)}
    head = out.stdout.splitlines()[0] if out.stdout else ""
    if not rows:
        raise RuntimeError(f"no figures in policy_decide's output: {out.stdout[-300:]}")
    return {"policy": head, "scenarios": rows, "n": n}


def scenario(name: str, smoke: bool, peers: dict) -> dict:
    from . import targets
    if name == "http_post":
        from . import http_post
        if smoke:
            cat = targets.catalogue(optimize_too=False, groups=False)
            first = next(iter(targets.ADDON_GROUPS.items()))
            cat[f"airlock -O, addons: {first[0]}"] = lambda u: targets.gateway(u, True, addons=first[1])
            return http_post.run(cat, seconds=1, runs_c1=1, runs_c50=1, ol_seconds=1, rates=[100], log=_log)
        return http_post.run(targets.catalogue(peers=peers), seconds=4, runs_c1=2, runs_c50=3, ol_seconds=5,
                             step_seconds=3, log=_log)
    if name == "audit_cost":
        from . import audit_cost
        return audit_cost.run(1, 1, log=_log) if smoke else audit_cost.run(8, 5, log=_log)
    if name == "sse":
        from . import sse
        sse_peers = {k: v for k, v in peers.items() if not k.startswith("Portkey")}
        return sse.run(sse.QUICK if smoke else sse.FULL, optimize=True, peers=sse_peers)
    if name == "sse_metering":
        from . import sse_metering
        if smoke:
            return sse_metering.run(streams=8, events=100, lat_streams=2, lat_events=50, concurrent=32,
                                    conc_events=5)
        return sse_metering.run()
    if name == "mcp_calls":
        from . import mcp_calls
        return mcp_calls.run(1, 1, 1, optimize=True) if smoke else mcp_calls.run(4, 2, 3, optimize=True)
    if name == "policy_decide":
        return _policy_decide(2000 if smoke else 20000)
    if name == "audit_ingest":
        from . import audit_ingest
        return audit_ingest.run(5000 if smoke else 200_000)
    if name == "approvals_hold":
        from . import approvals_hold
        return approvals_hold.run(200, 1.0) if smoke else approvals_hold.run(10_000, 5.0)
    if name == "workers":
        from . import workers
        return workers.run(2, seconds=1, runs=1, log=_log) if smoke else workers.run(2, log=_log)
    if name == "rss":
        from . import rss
        # 1M requests take ~12-14 min at ~1.3k req/s; capped at 15 min of load so one run fits its slot
        return rss.run(10_000, slice_s=2, max_seconds=12) if smoke else rss.run(1_000_000, max_seconds=900)
    if name == "profile":
        from . import profile
        return profile.run(2 if smoke else 20, optimize=True)
    raise ValueError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")


def versions(peer_skips: dict) -> dict:
    from .common import machine
    m = machine()
    try:
        m["airlock_commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                             text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "proxy", "addons"], cwd=ROOT,
                               capture_output=True, text=True).stdout.split("\n")
        if any(line.strip() for line in dirty):
            n = sum(1 for x in dirty if x.strip())
            m["airlock_commit"] += f" + uncommitted changes in {n} files of proxy/, addons/"
    except OSError:
        m["airlock_commit"] = "?"
    m["peers_skipped"] = peer_skips
    return m


def _saved(store: Path) -> dict:
    return {p.stem: json.loads(p.read_text()) for p in store.glob("*.json") if not p.stem.startswith("_")}


def _write(out: Path, store: Path, meta: dict, meta_path: Path, failed: list, done: bool) -> None:
    meta["load_after"] = loadavg()
    meta["finished"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC") + \
        ("" if done else " (still running)")
    meta_path.write_text(json.dumps(meta, indent=1))
    keep = out.read_text() if out.exists() else ""
    out.write_text(report.render(meta, _saved(store), SCENARIOS, keep))
    (store / "_index.json").write_text(json.dumps({"output": str(out), "failed": failed}))


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.run")
    ap.add_argument("--smoke", action="store_true", help="short runs, no speed asserts, output to a temp file")
    ap.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(SCENARIOS)}")
    ap.add_argument("--output", default=None, help="where to write the Markdown (default: bench/RESULTS.md; "
                                                   "smoke: a temp file)")
    ap.add_argument("--no-peers", action="store_true", help="skip LiteLLM / Portkey")
    ap.add_argument("--store", default=None, help="directory for the per-scenario JSON (default: "
                                                  ".bench/results/full; smoke: a temp dir)")
    ap.add_argument("--render", action="store_true", help="only rewrite the Markdown from the saved figures")
    args = ap.parse_args()
    only = [] if args.render else [s for s in args.only.split(",") if s] or SCENARIOS
    unknown = set(only) - set(SCENARIOS)
    if unknown:
        print(f"unknown scenario(s) {sorted(unknown)}; known: {', '.join(SCENARIOS)}", file=sys.stderr)
        return 2
    if len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {int(LOAD_CPU)})     # our own clients run on the load core, never the proxy's
    mode = "smoke" if args.smoke else "full"
    store = Path(args.store) if args.store else Path(tempfile.mkdtemp(prefix="bench-smoke-")) if args.smoke \
        else ROOT / ".bench" / "results" / mode
    store.mkdir(parents=True, exist_ok=True)
    meta_path = store / "_meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    out = Path(args.output) if args.output else (store / "RESULTS.md" if args.smoke else ROOT / "bench" / "RESULTS.md")
    if args.render:
        if not meta:
            print(f"nothing saved in {store} to render", file=sys.stderr)
            return 2
        out.write_text(report.render(meta, _saved(store), SCENARIOS, out.read_text() if out.exists() else ""))
        print(out)
        return 0
    peers, peer_skips = _peers(args.smoke, not args.no_peers)
    command = ("make bench-smoke" if args.smoke else "make bench") + \
        f" (python{' -O' if sys.flags.optimize else ''} -m bench.run {' '.join(sys.argv[1:])}".rstrip() + ")"
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    if args.only and meta.get("started"):             # a partial re-run: keep the first run's facts, note this one
        meta.setdefault("reruns", []).append(f"{now}: `{command}` (load average before: {loadavg()})")
    else:
        meta.update({"mode": mode, "command": command, "machine": versions(peer_skips), "load_before": loadavg(),
                     "started": now, "reruns": []})
    failed: list[str] = []
    for name in only:
        _log(f"scenario {name} (load average {loadavg()})")
        t0 = time.monotonic()
        try:
            res = scenario(name, args.smoke, peers)
            doc = {"result": res, "seconds": round(time.monotonic() - t0, 1), "load_after": loadavg()}
        except Exception as e:  # noqa: BLE001 - recorded, the other scenarios still run
            _log(f"scenario {name} FAILED: {type(e).__name__}: {e}")
            doc = {"error": f"{type(e).__name__}: {str(e)[-800:]}", "seconds": round(time.monotonic() - t0, 1)}
            failed.append(name)
        (store / f"{name}.json").write_text(json.dumps(doc, indent=1, default=str))
        _log(f"scenario {name} done in {doc['seconds']} s")
        _write(out, store, meta, meta_path, failed, done=False)         # after each scenario: nothing is lost
    _write(out, store, meta, meta_path, failed, done=True)
    _log(f"written to {out}" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    print(out)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
