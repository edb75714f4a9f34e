"""Where Airlock's gateway spends its CPU under load: py-spy samples ``airlock run`` while wrk drives
50 connections of the 1 KB POST, then sums inclusive time per frame for Airlock's own code
(``addons/`` and ``proxy/``) and the share of each non-main thread (the audit writer, the store).

    python -m bench.profile [--seconds 15] [-O] [--raw out.txt]

Needs ``py-spy`` (in the test extra) and ptrace rights over the child (root, or ptrace_scope 0).
"""
from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from . import http_post, targets
from .common import LOAD_CPU, ROOT, openai_upstream, pinned, wrk

_FRAME = re.compile(r"^(?P<fn>.*?) \((?P<file>[^:()]+)(?::\d+)?\)$")


def py_spy() -> str | None:
    here = Path(sys.executable).with_name("py-spy")
    return str(here) if here.exists() else shutil.which("py-spy")


_ENTRY = {"serve", "Airlock.run", "<module>"}          # start-up frames under which everything runs
_THREAD = re.compile(r"^thread \((?:0x)?[0-9a-fA-F]+\)(?::\s*(?P<name>.*))?$")


def _short(file: str) -> str:
    """py-spy prints files relative to their sys.path entry; make absolute ones relative too."""
    root = str(ROOT) + "/"
    if file.startswith(root):
        return file[len(root):]
    i = file.rfind("/site-packages/")
    return file[i + 15:] if i >= 0 else file


def summarise(raw: str, top: int = 25) -> dict:
    """Inclusive sample counts from py-spy's raw (collapsed) output recorded with ``--threads``."""
    total = any_ours = 0
    ours: collections.Counter = collections.Counter()
    files: collections.Counter = collections.Counter()
    threads: collections.Counter = collections.Counter()
    for line in raw.splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        n = int(n)
        total += n
        frames = stack.split(";")
        t = _THREAD.match(frames[0])
        threads[(t.group("name") or frames[0]) if t else "?"] += n
        parsed = [m.groupdict() for m in (_FRAME.match(f) for f in frames[1 if t else 0:]) if m]
        seen, seen_files = set(), set()
        for p in parsed:
            f = _short(p["file"])
            if not (f.startswith("addons/") or f.startswith("proxy/")) or f.startswith("proxy/cli/") \
                    or (f == "proxy/server.py" and p["fn"] in _ENTRY):
                continue
            key = f"{p['fn']} ({f})"
            if not seen:
                any_ours += n
            if key not in seen:
                seen.add(key)
                ours[key] += n
            if f not in seen_files:
                seen_files.add(f)
                files[f] += n

    def pct(c):
        return [(k, round(100 * v / total, 1)) for k, v in c.most_common(top)] if total else []

    return {"samples": total, "airlock_pct": round(100 * any_ours / total, 1) if total else 0,
            "frames": pct(ours), "files": pct(files), "threads": pct(threads)}


def run(seconds: float = 15, optimize: bool = True, raw_out: Path | None = None) -> dict:
    spy = py_spy()
    if not spy:
        return {"skipped": "py-spy is not installed (.venv/bin/pip install py-spy)"}
    out = Path(tempfile.mkdtemp(prefix="bench-prof-")) / "raw.txt"
    with openai_upstream() as up:
        up_url = f"http://127.0.0.1:{up.port}"
        with targets.gateway(up_url, optimize) as t:
            url = t.url + "/v1/chat/completions"
            wrk(url, 50, 2, http_post.BODY, headers=t.headers)                       # warm-up
            load = threading.Thread(target=wrk, args=(url, 50, seconds + 2, http_post.BODY),
                                    kwargs={"headers": t.headers})
            load.start()
            r = subprocess.run(pinned([spy, "record", "--pid", str(t.pid), "--duration", str(int(seconds)),
                                       "--rate", "200", "--format", "raw", "--threads", "--nonblocking",
                                       "--output", str(out)], LOAD_CPU), capture_output=True, text=True,
                               timeout=seconds + 120)
            load.join()
    if r.returncode != 0 or not out.exists():
        return {"skipped": f"py-spy failed: {(r.stderr or r.stdout).strip()[-300:]}"}
    raw = out.read_text()
    if raw_out:
        raw_out.write_text(raw)
    res = summarise(raw)
    res["optimize"] = optimize
    res["seconds"] = seconds
    return res


def table(res: dict, top: int = 15) -> str:
    if "skipped" in res:
        return f"Profile skipped: {res['skipped']}\n"
    lines = [f"py-spy, {res['samples']} samples over {res['seconds']:g} s of c50 load (python "
             f"{'-O' if res['optimize'] else 'without -O'}); inclusive % of all samples. "
             f"Samples with any Airlock frame (addons/, proxy/; start-up "
             f"frames excluded): **{res['airlock_pct']}%**.\n",
             "| Airlock frame (inclusive) | % |", "|---|---:|"]
    lines += [f"| `{k}` | {v} |" for k, v in res["frames"][:top]]
    lines += ["", "| Airlock file (inclusive) | % |", "|---|---:|"]
    lines += [f"| `{k}` | {v} |" for k, v in res["files"][:10]]
    lines += ["", "| thread (MainThread = the event loop) | % of samples |", "|---|---:|"]
    lines += [f"| `{k}` | {v} |" for k, v in res["threads"][:6]]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.profile")
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("-O", dest="optimize", action="store_true")
    ap.add_argument("--raw", type=Path, help="also keep py-spy's raw collapsed stacks here")
    a = ap.parse_args()
    res = run(a.seconds, a.optimize, a.raw)
    print(table(res))
    return 0 if "skipped" not in res else 1


if __name__ == "__main__":
    sys.exit(main())
