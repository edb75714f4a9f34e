"""RSS of Airlock's gateway over many requests (1M in ``make bench``): it must stay flat.

wrk drives 50 keep-alive connections of the 1 KB POST in slices; after each slice the process's RSS is
sampled. The first 10% is warm-up (allocator pools, caches, the audit queue reaching its steady size);
growth is measured from there to the end and reported per 100k requests.

    python -m bench.rss [--requests 1000000] [-O]
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from . import http_post, targets
from .common import openai_upstream, wrk

FLAT_MB_PER_100K = 1.0          # what we call flat: under 1 MB per 100k requests after warm-up


def run(requests: int = 1_000_000, optimize: bool = True, slice_s: float = 10.0,
        max_seconds: float | None = None) -> dict:
    """Serve ``requests`` (or stop after ``max_seconds`` of load, whichever comes first)."""
    samples: list[tuple[int, float]] = []
    errors = 0
    with openai_upstream() as up:
        with targets.gateway(f"http://127.0.0.1:{up.port}", optimize) as t:
            url = t.url + "/v1/chat/completions"
            samples.append((0, round(t.rss_mb(), 1)))
            done = 0
            stop = time.monotonic() + max_seconds if max_seconds else float("inf")
            while done < requests and time.monotonic() < stop:
                r = wrk(url, 50, slice_s, http_post.BODY, headers=t.headers)
                if r.requests == 0:
                    errors += 1
                    break
                done += r.requests
                errors += r.errors
                samples.append((done, round(t.rss_mb(), 1)))
    warm = next((s for s in samples if s[0] >= 0.1 * requests), samples[min(1, len(samples) - 1)])
    end = samples[-1]
    span = end[0] - warm[0]
    growth = end[1] - warm[1]
    per_100k = round(growth / span * 100_000, 3) if span > 0 else None
    return {"requests": end[0], "errors": errors, "rss_start_mb": samples[0][1], "rss_warm_mb": warm[1],
            "rss_end_mb": end[1], "rss_max_mb": max(s[1] for s in samples), "growth_after_warmup_mb":
            round(growth, 1), "mb_per_100k": per_100k,
            "flat": per_100k is not None and per_100k < FLAT_MB_PER_100K, "samples": samples}


def table(res: dict) -> str:
    pts = res["samples"]
    step = max(1, len(pts) // 12)
    series = ", ".join(f"{n // 1000}k: {mb:.0f}" for n, mb in pts[::step] + ([pts[-1]] if (len(pts) - 1) % step
                                                                            else []))
    return (f"| requests | errors | RSS start / after 10% / end / max MB | growth after warm-up | per 100k "
            f"| flat (< {FLAT_MB_PER_100K} MB/100k) |\n|---:|---:|---|---:|---:|---|\n"
            f"| {res['requests']} | {res['errors']} | {res['rss_start_mb']} / {res['rss_warm_mb']} / "
            f"{res['rss_end_mb']} / {res['rss_max_mb']} | {res['growth_after_warmup_mb']} MB | "
            f"{res['mb_per_100k']} MB | {'yes' if res['flat'] else '**no**'} |\n\nRSS (MB) by requests served: "
            f"{series}.\n")


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.rss")
    ap.add_argument("--requests", type=int, default=1_000_000)
    ap.add_argument("-O", dest="optimize", action="store_true")
    ap.add_argument("--slice", type=float, default=10.0, help="seconds of load between RSS samples")
    a = ap.parse_args()
    res = run(a.requests, a.optimize, a.slice)
    print(json.dumps({k: v for k, v in res.items() if k != "samples"}, indent=2))
    print(table(res))
    return 0 if res["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
