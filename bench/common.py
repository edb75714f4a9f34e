"""Shared pieces of the benchmarks: pinned processes on loopback, wrk, medians, machine facts."""
from __future__ import annotations

import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
CPUS = os.cpu_count() or 1
# the proxy gets its own core; load generator and upstream share the other one
PROXY_CPU = "1" if CPUS > 1 else "0"
LOAD_CPU = "0"


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    import socket
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


def rss_mb(pid: int) -> float:
    """VmRSS of process ``pid`` in MB (NaN once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def pinned(cmd: list[str], cpu: str) -> list[str]:
    return (["taskset", "-c", cpu] if shutil.which("taskset") and CPUS > 1 else []) + cmd


@dataclass
class Proc:
    cmd: list[str]
    port: int
    cpu: str = PROXY_CPU
    env: dict = field(default_factory=dict)
    cwd: Path | None = None
    proc: subprocess.Popen | None = None
    log: Path | None = None
    start_timeout: float = 60.0

    def __enter__(self) -> "Proc":
        self.log = Path(tempfile.mkstemp(prefix="bench-", suffix=".log")[1])
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(pinned(self.cmd, self.cpu), env={**os.environ, **self.env}, cwd=self.cwd,
                                         stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_port(self.port, timeout=self.start_timeout, proc=self.proc)
        except Exception:
            tail = self.log.read_text(errors="replace")[-3000:]
            self.__exit__()
            raise RuntimeError(f"{self.cmd[:3]} did not start:\n{tail}") from None
        return self

    def rss_mb(self) -> float:
        return rss_mb(self.proc.pid)

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.log and not (exc and exc[0]):        # keep the log only when something went wrong
            self.log.unlink(missing_ok=True)


_WRK_LUA = """
wrk.method = "POST"
wrk.body = io.open("{body}"):read("*a")
wrk.headers["content-type"] = "application/json"
{headers}
"""


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int = 0


def _ms(value: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", value)
    if not m:
        return float("nan")
    n, unit = float(m.group(1)), m.group(2)
    return n / 1000 if unit == "us" else n * 1000 if unit == "s" else n


def wrk(url: str, connections: int, seconds: float, body: bytes, token: str | None = None,
        headers: dict | None = None) -> WrkResult:
    """wrk -t1 on the load core: a keep-alive POST of ``body`` with a bearer ``token`` and extra ``headers``."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-wrk-"))
    (tmp / "body.json").write_bytes(body)
    h = dict(headers or {})
    if token:
        h["authorization"] = f"Bearer {token}"
    lines = "\n".join(f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in h.items())
    (tmp / "post.lua").write_text(_WRK_LUA.format(body=tmp / "body.json", headers=lines))
    # --timeout 30s: a slow target's latencies are measured, not counted as socket timeouts (wrk's default: 2 s)
    out = subprocess.run(pinned(["wrk", "-t1", f"-c{connections}", f"-d{max(1, int(seconds))}s", "--latency",
                                 "--timeout", "30s",
                                 "-s", str(tmp / "post.lua"), url], LOAD_CPU),
                         capture_output=True, text=True, timeout=seconds + 90).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    errs = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errs += int(non2xx.group(1)) if non2xx else 0
    done = re.search(r"(\d+) requests in", out)
    shutil.rmtree(tmp, ignore_errors=True)
    return WrkResult(rps, _ms(lat.get("50", "nan")), _ms(lat.get("99", "nan")), errs,
                     int(done.group(1)) if done else 0)


def median(values):
    values = [v for v in values if v == v]
    return statistics.median(values) if values else float("nan")


def machine() -> dict:
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    from importlib.metadata import version
    return {"cpus": CPUS, "cpu": cpu, "python": platform.python_version(), "kernel": platform.release(),
            "mitmproxy": version("mitmproxy"), "optimize": sys.flags.optimize,
            "wrk": subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.split("[")[0].strip()}


def upstream() -> Proc:
    """The JSON upstream (tests/upstreams.py on uvloop), on the load generator's core."""
    port = free_port()
    return Proc([PY, "-m", "tests.upstreams", "--port", str(port)], port, cpu=LOAD_CPU, cwd=ROOT)


def openai_upstream(events: int = 20, pace_ms: float = 0.0) -> Proc:
    """bench/upstream.py: OpenAI-compatible JSON + SSE upstream on the load generator's core."""
    port = free_port()
    return Proc([PY, "-m", "bench.upstream", "--port", str(port), "--events", str(events), "--pace-ms",
                 str(pace_ms)], port, cpu=LOAD_CPU, cwd=ROOT)


_TICK = os.sysconf("SC_CLK_TCK")


def redis_server() -> Proc:
    """A throwaway ``redis-server`` (no persistence) on the load generator's core; ``.url`` is its URL."""
    port = free_port()
    p = Proc(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
             port, cpu=LOAD_CPU)
    p.url = f"redis://127.0.0.1:{port}/0"
    return p


def tree_pids(root: int) -> list[int]:
    """``root`` and every descendant (children of any of its threads: the audit ingester is spawned from
    one), from /proc/PID/task/TID/children."""
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        try:
            for t in Path(f"/proc/{pid}/task").iterdir():
                todo += [int(c) for c in (t / "children").read_text().split()]
        except OSError:                       # it just exited
            pass
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by process ``pid`` (its threads included)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / _TICK


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def dump(obj) -> str:
    return json.dumps(obj, indent=2)
