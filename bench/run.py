"""``make bench`` / ``make bench-smoke``: run the scenarios side by side and write bench/RESULTS.md.

Smoke mode (CI) runs each scenario briefly to prove the harness works, asserts no speed,
and writes to a temporary file instead of RESULTS.md.
"""
from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
from pathlib import Path

from . import http_post
from .common import ROOT, machine


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.run")
    ap.add_argument("--smoke", action="store_true", help="short runs, no RESULTS.md")
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--output", default=None)
    args = ap.parse_args()
    seconds = 1 if args.smoke else args.seconds
    runs = (1, 1) if args.smoke else (2, 3)
    optimize = bool(sys.flags.optimize)
    m = machine()
    cmd = "make bench-smoke" if args.smoke else "make bench"
    parts = [f"# Benchmark results\n\nWritten by `{cmd}` (`python{' -O' if optimize else ''} -m bench.run"
             f"{' --smoke' if args.smoke else ''}`) on {datetime.date.today()}.\n",
             f"Machine: {m['cpus']} CPUs ({m['cpu']}), kernel {m['kernel']}, Python {m['python']} "
             f"(optimize={m['optimize']}), mitmproxy {m['mitmproxy']}, {m['wrk']}. The proxy under test is pinned "
             f"to CPU 1; wrk and the upstream share CPU 0, so proxy figures are per core and direct figures are a "
             f"lower bound for the upstream. Medians of {runs[0]} runs at 1 connection and {runs[1]} at 50, "
             f"{seconds:g} s each, after a warm-up.\n"]
    print("scenario: 1 KB JSON POST", file=sys.stderr)
    res = http_post.run(seconds, *runs, optimize=optimize)
    parts.append("## Non-streaming 1 KB JSON POST (gateway)\n\n" + http_post.table(res) + "\n")
    ratio = res["airlock gateway"]["c50_rps"] / res["bare mitmproxy"]["c50_rps"]
    parts.append(f"Airlock's gateway reaches **{100 * ratio:.0f}%** of bare mitmproxy's requests/s "
                 f"(target ≥ 85%).\n")
    text = "\n".join(parts)
    out = Path(args.output) if args.output else (Path(tempfile.mkdtemp()) / "RESULTS.md" if args.smoke
                                                 else ROOT / "bench" / "RESULTS.md")
    out.write_text(text)
    print(text)
    print(f"written to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
