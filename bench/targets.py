"""Targets the scenarios drive: direct upstream, bare mitmproxy, Airlock (with chosen addons)."""
from __future__ import annotations

import contextlib
import secrets
import shutil
import tempfile
import time
from pathlib import Path

import httpx
import yaml

from .common import PROXY_CPU, PY, ROOT, Proc, free_port

# Addon groups priced one by one (cumulative, in chain order); "all" is what ``airlock run`` loads.
ADDON_GROUPS = {
    "routing + identity": ["routing", "identity"],
    "+ mcp + approvals": ["routing", "identity", "mcp", "approvals"],
    "+ gateway + metering + streaming": ["routing", "identity", "mcp", "approvals", "gateway", "metering",
                                         "streaming"],
    "+ audit (no metrics)": ["routing", "identity", "mcp", "approvals", "gateway", "metering", "streaming",
                             "audit"],
}


@contextlib.contextmanager
def bare_mitmproxy(upstream_url: str, optimize: bool = False, patched: bool = False):
    """Stock mitmproxy (the floor); ``patched``: with Airlock's patches to mitmproxy (bench/bare_mitm.py)."""
    port = free_port()
    cmd = [PY] + (["-O"] if optimize else []) + ["-m", "bench.bare_mitm", "--port", str(port), "--upstream",
                                                 upstream_url] + (["--patched"] if patched else [])
    with Proc(cmd, port, cwd=ROOT) as p:
        p.url = f"http://127.0.0.1:{port}"
        yield p


@contextlib.contextmanager
def airlock(upstream_url: str, optimize: bool | None = False, extra: dict | None = None, redis: str | None = None,
            addons: list[str] | None = None, workers: int = 1, cpu: str = PROXY_CPU):
    """Airlock with a provider ``bench`` (OpenAI kind) in front of ``upstream_url``; yields (proc, token).

    ``addons``: only these addons (bench/airlock_addons.py), else the whole chain as ``airlock run``.
    ``optimize``: True = ``python -O``; False = ``--debug-checks`` (no ``-O``); None = as ``airlock run``
    starts by default (it re-executes itself under ``-O``).
    ``workers``: ``airlock run --workers N``. ``cpu``: the taskset CPU list for the process(es)."""
    work = Path(tempfile.mkdtemp(prefix="bench-airlock-"))
    gw, admin = free_port(), free_port()
    cfg = {"listen": {"gateway": f"127.0.0.1:{gw}", "proxy": f"127.0.0.1:{free_port()}",
                      "admin": f"127.0.0.1:{admin}"},
           "providers": {"bench": {"base_url": upstream_url + "/v1", "api_key_env": "BENCH_UPSTREAM_KEY"}},
           # what the default airlock.yaml loads; NOT the whole folder: its examples rate-limit agents to 60/min
           "policies": [str(ROOT / "policies" / "default.yaml")]}
    if redis:
        cfg["store"] = {"redis": redis}
    cfg.update(extra or {})
    (work / "airlock.yaml").write_text(yaml.safe_dump(cfg))
    token = "adm_bench_" + secrets.token_hex(8)
    entry = ["-m", "bench.airlock_addons", "--addons", ",".join(addons), "--"] if addons is not None \
        else ["-m", "proxy.cli.main"]
    cmd = [PY] + (["-O"] if optimize else []) + entry + ["run", "-c", str(work / "airlock.yaml")] + \
        (["--workers", str(workers)] if workers > 1 else []) + (["--debug-checks"] if optimize is False else [])
    try:
        with Proc(cmd, gw, cwd=work, cpu=cpu, env={"AIRLOCK_ADMIN_TOKEN": token, "PYTHONPATH": str(ROOT),
                                                     "BENCH_UPSTREAM_KEY": "sk-bench-upstream"}) as p:
            h = {"authorization": f"Bearer {token}"}
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{admin}/readyz", headers=h).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or p.proc.poll() is not None:
                    raise RuntimeError(f"Airlock did not get ready:\n{p.log.read_text()[-2000:]}")
                time.sleep(0.1)
            r = httpx.post(f"http://127.0.0.1:{admin}/v1/keys", json={"account": "bench", "agent": "wrk"}, headers=h)
            r.raise_for_status()
            p.url = f"http://127.0.0.1:{gw}/bench"
            p.admin = f"http://127.0.0.1:{admin}"
            p.admin_headers = h
            yield p, r.json()["token"]
    finally:
        shutil.rmtree(work, ignore_errors=True)


class Target:
    """What a scenario drives: ``url`` (base, no path), ``headers`` (auth), ``pid`` (None for direct)."""

    def __init__(self, url: str, headers: dict | None = None, proc: Proc | None = None):
        self.url, self.headers, self.proc = url, headers or {}, proc
        self.pid = proc.proc.pid if proc else None

    def rss_mb(self) -> float | None:
        return self.proc.rss_mb() if self.proc else None


@contextlib.contextmanager
def direct(upstream_url: str):
    yield Target(upstream_url)


@contextlib.contextmanager
def bare(upstream_url: str, optimize: bool = False, patched: bool = False):
    with bare_mitmproxy(upstream_url, optimize, patched) as p:
        yield Target(p.url, {}, p)


@contextlib.contextmanager
def gateway(upstream_url: str, optimize: bool | None = False, addons: list[str] | None = None, **kw):
    """Airlock's gateway; ``url`` is the provider prefix, so ``url + "/v1/chat/completions"`` works."""
    with airlock(upstream_url, optimize, addons=addons, **kw) as (p, token):
        yield Target(p.url, {"authorization": f"Bearer {token}"}, p)


DEFAULT = "airlock run (defaults: re-runs itself with -O)"
PATCHED = "bare mitmproxy, python -O, with Airlock's mitmproxy patches"


def catalogue(optimize_too: bool = True, groups: bool = True, peers: dict | None = None) -> dict:
    """{name: factory(upstream_url) -> context manager yielding a Target}, in the order to run them."""
    out = {"direct": direct,
           "bare mitmproxy": lambda u: bare(u),
           "airlock run --debug-checks": lambda u: gateway(u, False)}
    if optimize_too:
        out["bare mitmproxy, python -O"] = lambda u: bare(u, True)
        out[PATCHED] = lambda u: bare(u, True, True)
    out[DEFAULT] = lambda u: gateway(u, None)
    if groups:
        for name, addons in ADDON_GROUPS.items():
            out[f"airlock -O, addons: {name}"] = (lambda a: lambda u: gateway(u, True, addons=a))(addons)
    out.update(peers or {})
    return out
