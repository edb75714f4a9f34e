"""RSS of Airlock's gateway over many requests (1M in ``make bench``): it must stay flat.

wrk drives 50 keep-alive connections of the 1 KB POST in slices; after each slice the RSS of the proxy
process and of its whole process tree (the proxy plus its children, e.g. the audit ingester with chDB)
is sampled. The tree's figure is the lowest of a few samples over ~1.2 s: the audit ingester's
inserts and merges take ~20-50 MB for a second or two and give it back, and a sample that lands on one
is a transient, not growth (the highest sample is reported too). The first 10% is warm-up (allocator pools, caches, the audit queue reaching its steady size);
growth is measured from there to the end and reported per 100k requests, for the proxy and the tree.

    python -m bench.rss [--requests 1000000] [-O]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from . import http_post, targets
from .common import openai_upstream, rss_mb, tree_pids, wrk

FLAT_MB_PER_100K = 1.0          # what we call flat: a slope under 1 MB per 100k requests after warm-up


def tree_rss_mb(root: int) -> float:
    """Sum of VmRSS over the process tree (pages shared between processes are counted in each)."""
    return sum(mb for mb in map(rss_mb, tree_pids(root)) if mb == mb)     # a child that just exited: NaN


TREE_SAMPLES, TREE_GAP_S = 5, 0.3


def _sample(t, done: int, peaks: list[float] | None = None) -> tuple[int, float, float]:
    """(requests, proxy MB, the tree's lowest MB over ~1.2 s); the tree's highest goes to ``peaks``."""
    seen = []
    for i in range(TREE_SAMPLES):
        if i:
            time.sleep(TREE_GAP_S)
        seen.append(tree_rss_mb(t.pid))
    if peaks is not None:
        peaks.append(max(seen))
    return done, round(t.rss_mb(), 1), round(min(seen), 1)


def run(requests: int = 1_000_000, optimize: bool = True, slice_s: float = 10.0,
        max_seconds: float | None = None) -> dict:
    """Serve ``requests`` (or stop after ``max_seconds`` of load, whichever comes first)."""
    samples: list[tuple[int, float, float]] = []      # (requests served, proxy MB, process tree MB)
    peaks: list[float] = []                            # the tree's highest sample at each point
    errors = 0
    with openai_upstream() as up:
        with targets.gateway(f"http://127.0.0.1:{up.port}", optimize) as t:
            url = t.url + "/v1/chat/completions"
            samples.append(_sample(t, 0))
            done = 0
            stop = time.monotonic() + max_seconds if max_seconds else float("inf")
            while done < requests and time.monotonic() < stop:
                r = wrk(url, 50, slice_s, http_post.BODY, headers=t.headers)
                if r.requests == 0:
                    errors += 1
                    break
                done += r.requests
                errors += r.errors
                samples.append(_sample(t, done, peaks))
    return {"requests": samples[-1][0], "errors": errors, "samples": samples,
            "tree_transient_max_mb": round(max(peaks), 1) if peaks else None, **stats(samples)}


def _slope(points: list) -> float | None:
    """Least-squares MB per 100k requests (robust to the sawtooth of allocator pools, unlike end - start)."""
    if len(points) < 3:
        return None
    return round(statistics.linear_regression([p[0] for p in points], [p[1] for p in points]).slope * 1e5, 3)


def _stats(samples: list) -> dict:
    total = samples[-1][0]
    after = [s for s in samples if s[0] >= 0.1 * total] or samples[-1:]
    half = [s for s in samples if s[0] >= 0.5 * total]
    slope, slope_half = _slope(after), _slope(half)
    return {"rss_start_mb": samples[0][1], "rss_warm_mb": after[0][1], "rss_end_mb": samples[-1][1],
            "rss_max_mb": max(s[1] for s in samples), "growth_after_warmup_mb": round(samples[-1][1] - after[0][1], 1),
            "mb_per_100k": slope, "mb_per_100k_second_half": slope_half,
            "flat": slope is not None and slope < FLAT_MB_PER_100K}


def stats(samples: list) -> dict:
    """Figures of the proxy process; ``tree_*`` of its process tree when the samples have it
    (older results have (requests, MB) pairs only). Flat means both are flat."""
    out = _stats([s[:2] for s in samples])
    if all(len(s) > 2 for s in samples):
        tree = _stats([(s[0], s[2]) for s in samples])
        out.update({f"tree_{k}": v for k, v in tree.items()})
        out["flat"] = out["flat"] and tree["flat"]
    return out


def summary(res: dict) -> tuple[str, str]:
    """(the figure, how far from flat) for the targets table, from a result with ``stats`` applied."""
    proxy, tree = res.get("mb_per_100k"), res.get("tree_mb_per_100k")
    figure = f"{proxy} MB per 100k after warm-up" + (f" (process tree: {tree})" if tree is not None else "")
    worst = max((x for x in (proxy, tree) if x is not None), default=None)
    return figure, f"grows {worst} MB per 100k"


def table(res: dict) -> str:
    pts = res["samples"]
    res = {**res, **stats(pts)}
    step = max(1, len(pts) // 12)
    shown = pts[::step] + ([pts[-1]] if (len(pts) - 1) % step else [])
    tree = "tree_mb_per_100k" in res
    series = ", ".join(f"{s[0] // 1000}k: {s[1]:.0f}" + (f" ({s[2]:.0f})" if tree else "") for s in shown)
    rows = [("proxy process", "")] + ([("process tree", "tree_")] if tree else [])
    lines = [f"| {what} | {res['requests']} | {res['errors']} | {res[p + 'rss_start_mb']} / {res[p + 'rss_warm_mb']} / "
             f"{res[p + 'rss_end_mb']} / {res[p + 'rss_max_mb']} | {res[p + 'growth_after_warmup_mb']} MB | "
             f"{res[p + 'mb_per_100k']} / {res[p + 'mb_per_100k_second_half']} MB |" for what, p in rows]
    return (f"| RSS of | requests | errors | RSS start / after 10% / end / max MB | growth after warm-up | slope "
            f"per 100k (after 10% / second half) |\n|---|---:|---:|---|---:|---|\n" + "\n".join(lines) +
            f"\n\nFlat (< {FLAT_MB_PER_100K} MB/100k{' for both' if tree else ''}): "
            f"{'yes' if res['flat'] else '**no**'}. RSS (MB) by requests served"
            f"{' (process tree in brackets)' if tree else ''}: {series}. Slopes are least-squares fits over the "
            f"samples; the tree sums each process's RSS, lowest of {TREE_SAMPLES} samples {TREE_GAP_S} s apart at each "
            f"point" + (f" (highest single sample: {res['tree_transient_max_mb']} MB, an audit insert or merge in "
                        f"progress)" if res.get("tree_transient_max_mb") else "") + ".\n")


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
