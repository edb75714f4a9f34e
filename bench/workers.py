"""``airlock run --workers N`` against one worker: requests/s of the 1 KB POST at 50 connections.

One worker is pinned to the proxy core as everywhere else; N workers get every core (on this 2-core
machine that includes the core wrk, the upstream and redis-server use, so the wall ratio is a floor).
Both targets run side by side and their wrk runs alternate, so a change in the host's load weighs on both.

The wall ratio mixes two things: how much CPU the N workers got (what wrk, the upstream, Redis and any
other work on the host left them) and how much CPU they need per request. So the CPU of every process is
read from /proc over the measured runs and the ratio is split into ``cores_ratio`` x ``cpu_efficiency``:

- ``cpu_efficiency``: requests per CPU-second of the Airlock process tree, N vs 1. The scaling N workers
  would reach with N cores of their own is ``N x cpu_efficiency`` (ideal: N).
- ``cores_ratio``: CPU-seconds per wall second the Airlock tree used, N vs 1; ``cores_left``: the cores
  not used by wrk + upstream + redis-server; ``foreign_cores``: CPU of other processes on the host.
- the split of the 50 connections between the workers (SO_REUSEPORT hashes them), each worker's requests
  and CPU per request, its waits (idle event loop) and preemptions per request, and Redis commands per
  request (INFO commandstats).

``python -O -m bench.workers [--workers N --seconds S --runs R]`` prints the JSON and the table.
"""
from __future__ import annotations

import contextlib
import os
import resource
import subprocess
import sys
import threading
import time

from . import http_post, targets
from .common import CPUS, LOAD_CPU, PY, ROOT, cpu_seconds, median, openai_upstream, redis_server, wrk
from .workers_probe import Roles, connections_by_pid, context_switches, machine_cpu, redis_calls, requests_by_worker


def has_workers_option() -> bool:
    help_text = subprocess.run([PY, "-m", "proxy.cli.main", "run", "--help"], cwd=ROOT, capture_output=True,
                               text=True, timeout=60, env={**os.environ, "COLUMNS": "200"}).stdout
    return "--workers" in help_text


def _children_cpu() -> float:
    """CPU seconds of this process's finished children: wrk runs in the foreground, so a delta is wrk's."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _counters(t, roles: Roles, pids: dict[str, int], store) -> dict:
    """Every cumulative counter a ``Probe`` takes the difference of, flat: {name: number}."""
    busy, steal = machine_cpu()
    vol, inv = (sum(x) for x in zip(*(context_switches(p) for p in roles.workers)))
    return {**{f"cpu:{k}": cpu_seconds(p) for k, p in pids.items()}, "cpu:wrk": _children_cpu(),
            **{f"redis:{k}": v for k, v in redis_calls(store.url).items()},
            **{f"req:{i}": v for i, v in requests_by_worker(t, roles).items()},
            "waits": vol, "preemptions": inv, "busy": busy, "steal": steal, "time": time.monotonic()}


class Probe:
    """wrk runs against target ``t``, with every process's CPU over them (summed over the runs).

    The workers, wrk, the upstream and redis-server are counted during the runs only. The supervisor and the
    audit ingester are counted from the first run to the end: the ingester inserts a run's rows seconds later
    (possibly while the other target is being measured), and that CPU belongs to this target's requests."""

    def __init__(self, t, store, up, connections: int = 50):
        self.t, self.store, self.connections = t, store, connections
        self.url = t.url + http_post.PATH
        self.roles = Roles.of(t.pid)
        self.pids = {**self.roles.pids(), "upstream": up.proc.pid, "redis-server": store.proc.pid}
        self.deferred = [k for k in self.roles.pids() if not k.startswith("worker-")]
        self.sums: dict[str, float] = {}
        self.runs: list = []
        self.split: dict[int, int] = {}     # connections per worker pid, sampled once wrk has opened them all
        self.first: dict | None = None

    def warm_up(self) -> None:
        wrk(self.url, self.connections, 2, http_post.BODY, headers=self.t.headers)

    def run(self, seconds: float) -> None:
        sampler = threading.Thread(target=lambda: (time.sleep(min(1.0, seconds / 2)), self.split.update(
            connections_by_pid(self.t.url, self.roles.workers))))
        sample = not self.split
        before = _counters(self.t, self.roles, self.pids, self.store)
        self.first = self.first or before
        if sample:
            sampler.start()
        self.runs.append(wrk(self.url, self.connections, seconds, http_post.BODY, headers=self.t.headers))
        if sample:
            sampler.join()
        after = _counters(self.t, self.roles, self.pids, self.store)
        for k, v in after.items():
            self.sums[k] = self.sums.get(k, 0) + v - before.get(k, 0)

    def result(self) -> dict:
        d, rs = dict(self.sums), self.runs
        end = {f"cpu:{k}": cpu_seconds(self.pids[k]) for k in self.deferred}
        d.update({k: v - self.first[k] for k, v in end.items()})
        total, wall = sum(r.requests for r in rs), d["time"]
        cpu = {k[4:]: v for k, v in d.items() if k.startswith("cpu:")}
        airlock = sum(cpu[k] for k in self.roles.pids())
        load = cpu["wrk"] + cpu["upstream"] + cpu["redis-server"]
        # the machine's busy CPU during the runs, plus the deferred CPU counted outside them
        busy = d["busy"] + sum(d[f"cpu:{k}"] - self.sums[f"cpu:{k}"] for k in self.deferred)
        per_req = (lambda x, n=total: round(x / n, 3) if n else None)
        workers = range(len(self.roles.workers))
        return {
            "rps": median([r.rps for r in rs]), "requests": total, "errors": sum(r.errors for r in rs),
            "wall_s": round(wall, 2), "processes": len(self.roles.workers) + (self.roles.supervisor is not None),
            "req_per_cpu_s": round(total / airlock) if airlock > 0 else None,
            "airlock_cores": round(airlock / wall, 2), "load_cores": round(load / wall, 2),
            "cores_left": round(CPUS - load / wall, 2),
            # other work on a shared host: CPU of processes that are neither this target nor the load side
            "foreign_cores": round((busy - airlock - load) / wall, 2), "steal_cores": round(d["steal"] / wall, 2),
            "worker_waits_per_req": per_req(d["waits"]), "worker_preemptions_per_req": per_req(d["preemptions"]),
            "cpu_us_per_req": {k: per_req(1e6 * v) for k, v in cpu.items()},
            "redis_cmds_per_req": {k[6:]: per_req(v) for k, v in sorted(d.items()) if k.startswith("redis:") and v},
            "connections": [self.split.get(p, 0) for p in self.roles.workers],
            "requests_by_worker": [int(d[f"req:{i}"]) for i in workers],
            "worker_cpu_us_per_req": [per_req(1e6 * cpu[f"worker-{i}"], d[f"req:{i}"]) for i in workers],
        }


def run(workers: int = 2, seconds: float = 5, runs: int = 3, optimize: bool = True,
        log=lambda m: print(m, file=sys.stderr)) -> dict:
    """Both targets run side by side and their wrk runs alternate (1, N, 1, N, ...): a change in the load of
    a shared host then weighs on both alike."""
    out: dict = {"workers": workers, "cpus": CPUS, "runs": runs, "seconds": seconds}
    if not has_workers_option():
        out["skipped"] = "`airlock run` has no --workers option in this build"
        return out
    all_cpus = ",".join(str(i) for i in range(CPUS))
    with openai_upstream() as up, redis_server() as store, contextlib.ExitStack() as stack:
        up_url = f"http://127.0.0.1:{up.port}"             # several workers share state through Redis
        probes = {}
        for n, kw in ((1, {}), (workers, {"cpu": all_cpus})):
            t = stack.enter_context(targets.gateway(up_url, optimize, workers=n, redis=store.url, **kw))
            probes[n] = Probe(t, store, up)
            probes[n].warm_up()
        for i in range(runs):
            for n, p in probes.items():
                log(f"  workers: {n}, run {i + 1}/{runs}")
                p.run(seconds)
        for n, p in probes.items():
            out[f"w{n}"] = m = p.result()
            for k in ("rps", "req_per_cpu_s", "errors", "processes"):     # the flat keys report.py reads
                out[f"w{n}_{k}"] = m[k]
    a, b = out["w1"], out[f"w{workers}"]
    out["scaling"] = round(b["rps"] / a["rps"], 2) if a["rps"] else None
    out["cpu_efficiency"] = round(b["req_per_cpu_s"] / a["req_per_cpu_s"], 2) \
        if a["req_per_cpu_s"] and b["req_per_cpu_s"] else None
    out["cores_ratio"] = round(b["airlock_cores"] / a["airlock_cores"], 2) if a["airlock_cores"] else None
    out["scaling_own_cores"] = round(workers * out["cpu_efficiency"], 2) if out["cpu_efficiency"] else None
    return out


def _row(name: str, m: dict) -> str:
    us = m["cpu_us_per_req"]
    f = (lambda v: "–" if v is None else f"{v:.0f}")
    return (f"| {name} | {m['processes']} | {m['rps']:.0f} | {m['errors']} | {m['req_per_cpu_s']} | "
            f"{f(1e6 / m['req_per_cpu_s'] if m['req_per_cpu_s'] else None)} | "
            f"{' / '.join(f(v) for v in m['worker_cpu_us_per_req'])} | {f(us.get('ingester'))} | "
            f"{f(us.get('supervisor'))} | {m['airlock_cores']} | {f(us['wrk'])} / {f(us['upstream'])} / "
            f"{f(us['redis-server'])} | {m['load_cores']} | {m['foreign_cores']} | "
            f"{' / '.join(map(str, m['connections']))} | {' / '.join(map(str, m['requests_by_worker']))} | "
            f"{m['worker_waits_per_req']} / {m['worker_preemptions_per_req']} |")


def table(res: dict) -> str:
    if "skipped" in res:
        return f"Not measured: {res['skipped']}.\n"
    n = res["workers"]
    a, b = res["w1"], res[f"w{n}"]
    redis = "; ".join(f"{k} {v}" for k, v in b["redis_cmds_per_req"].items()) or "none"
    return ("| workers | Airlock processes | c50 req/s | errors | req per Airlock CPU-s | Airlock µs/req | "
            "µs per own req, each worker | ingester µs/req | supervisor µs/req | Airlock cores used | "
            "wrk / upstream / redis µs/req | their cores | other work's cores | connections per worker | "
            "requests per worker | worker waits / preemptions per req |\n"
            "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---|---:|---:|---|---|---|\n"
            + _row("1 (pinned to the proxy core)", a) + "\n"
            + _row(f"{n} (all {res['cpus']} cores, shared with wrk + upstream + redis)", b) + "\n\n"
            f"Wall ratio {n} vs 1: **{res['scaling']}×** (target ≥ {0.9 * n:.1f}×) ≈ Airlock cores used, {n} vs 1 "
            f"({res['cores_ratio']}×) × requests per Airlock CPU-second, {n} vs 1 ({res['cpu_efficiency']}×). "
            f"With a core each and the load side elsewhere, {n} workers would do {res['scaling_own_cores']}× "
            f"({n} × that CPU efficiency). wrk, the upstream and redis-server are pinned to CPU {LOAD_CPU}: they left "
            f"{b['cores_left']} of {res['cpus']} cores ({1 - b['load_cores']:.2f} of the shared core); other work on "
            f"the host took {b['foreign_cores']} cores during the {n}-worker runs ({a['foreign_cores']} during the "
            f"1-worker runs). Redis commands per request with {n} workers: {redis}.\n")


if __name__ == "__main__":
    import argparse
    import json
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--debug-checks", action="store_true", help="workers without python -O")
    args = ap.parse_args()
    res = run(args.workers, args.seconds, args.runs, optimize=not args.debug_checks)
    print(json.dumps(res, indent=2))
    print(table(res))
