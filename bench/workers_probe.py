"""What bench/workers.py reads about a running ``airlock run [--workers N]``: which process is which, how
the kernel split the connections, each worker's request count, and Redis's command counters."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import redis
from prometheus_client.parser import text_string_to_metric_families

from .common import tree_pids


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError:
        return b""


@dataclass
class Roles:
    """The Airlock process tree by role. A single process (no ``--workers``) is its own worker 0."""
    root: int
    workers: list[int] = field(default_factory=list)
    supervisor: int | None = None
    others: dict[str, int] = field(default_factory=dict)       # the audit ingester and anything else

    @classmethod
    def of(cls, root: int) -> "Roles":
        r = cls(root)
        indexed: dict[int, int] = {}
        for pid in tree_pids(root):
            env = dict(kv.split(b"=", 1) for kv in _read(f"/proc/{pid}/environ").split(b"\0") if b"=" in kv)
            tag = env.get(b"AIRLOCK_WORKER", b"").split(b"/")[0]
            if tag.isdigit():
                indexed[int(tag)] = pid
            elif pid != root:
                cmd = _read(f"/proc/{pid}/cmdline")
                r.others["ingester" if b"proxy.audit.ingester" in cmd else f"pid-{pid}"] = pid
        if indexed:
            r.supervisor, r.workers = root, [indexed[i] for i in sorted(indexed)]
        else:
            r.workers = [root]
        return r

    def pids(self) -> dict[str, int]:
        out = {f"worker-{i}": p for i, p in enumerate(self.workers)}
        if self.supervisor is not None:
            out["supervisor"] = self.supervisor
        return {**out, **self.others}


def connections_by_pid(url: str, pids: list[int]) -> dict[int, int]:
    """Established connections on ``url``'s port held by each of ``pids`` (from /proc/net/tcp*)."""
    port = f"{urlsplit(url).port:04X}"
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in _read(table).decode().splitlines()[1:]:
            f = line.split()
            if f[1].rsplit(":", 1)[1] == port and f[3] == "01":
                inodes.add(f"socket:[{f[9]}]")
    out = {}
    for pid in pids:
        fds = Path(f"/proc/{pid}/fd")
        n = 0
        try:
            for fd in fds.iterdir():
                try:
                    n += str(fd.readlink()) in inodes
                except OSError:
                    pass
        except OSError:
            pass
        out[pid] = n
    return out


def _requests_total(text: str) -> float:
    return sum(s.value for fam in text_string_to_metric_families(text) for s in fam.samples
               if s.name == "airlock_requests_total")


def requests_by_worker(t, roles: Roles) -> dict[int, float]:
    """airlock_requests_total of each worker: from its private admin socket, or the admin listener when
    there is no supervisor."""
    out = {}
    h = t.proc.admin_headers
    if roles.supervisor is None:
        out[0] = _requests_total(httpx.get(t.proc.admin + "/metrics", headers=h).text)
        return out
    run = Path(f"/proc/{roles.root}/cwd").resolve() / "var" / "run"
    for i in range(len(roles.workers)):
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(run / f"worker-{i}.sock"))) as c:
            out[i] = _requests_total(c.get("http://worker/metrics", headers=h).text)
    return out


def redis_calls(url: str) -> dict[str, int]:
    """Calls per command since redis-server started (INFO commandstats)."""
    with redis.Redis.from_url(url) as r:
        return {k.removeprefix("cmdstat_"): v["calls"] for k, v in r.info("commandstats").items()}


def context_switches(pid: int) -> tuple[int, int]:
    """(voluntary, involuntary) context switches of ``pid`` so far, its threads included: voluntary ones are
    waits for work (an idle event loop), involuntary ones are preemptions by other processes."""
    vol = inv = 0
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        for line in _read(str(status)).decode().splitlines():
            if line.startswith("voluntary_ctxt_switches"):
                vol += int(line.split()[1])
            elif line.startswith("nonvoluntary_ctxt_switches"):
                inv += int(line.split()[1])
    return vol, inv


def machine_cpu() -> tuple[float, float]:
    """(busy, steal) CPU-seconds of the whole machine so far, from /proc/stat: busy counts every process,
    also those of other work on the host (steal: time the hypervisor gave our vCPUs to someone else)."""
    import os
    f = [int(x) for x in _read("/proc/stat").split(b"\n", 1)[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    user, nice, system, idle, iowait, irq, softirq, steal = (f + [0] * 8)[:8]
    return (user + nice + system + irq + softirq) / tick, steal / tick
