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

from .common import PY, ROOT, Proc, free_port


@contextlib.contextmanager
def bare_mitmproxy(upstream_url: str, optimize: bool = False):
    port = free_port()
    cmd = [PY] + (["-O"] if optimize else []) + ["-m", "bench.bare_mitm", "--port", str(port), "--upstream",
                                                 upstream_url]
    with Proc(cmd, port, cwd=ROOT) as p:
        p.url = f"http://127.0.0.1:{port}"
        yield p


@contextlib.contextmanager
def airlock(upstream_url: str, optimize: bool = False, extra: dict | None = None, redis: str | None = None):
    """Airlock with a provider ``bench`` (OpenAI kind) in front of ``upstream_url``; yields (proc, token)."""
    work = Path(tempfile.mkdtemp(prefix="bench-airlock-"))
    gw, admin = free_port(), free_port()
    cfg = {"listen": {"gateway": f"127.0.0.1:{gw}", "proxy": f"127.0.0.1:{free_port()}",
                      "admin": f"127.0.0.1:{admin}"},
           "providers": {"bench": {"base_url": upstream_url + "/v1"}},
           "policies": [str(ROOT / "policies")] if (ROOT / "policies" / "default.yaml").exists() else []}
    if redis:
        cfg["store"] = {"redis": redis}
    cfg.update(extra or {})
    (work / "airlock.yaml").write_text(yaml.safe_dump(cfg))
    token = "adm_bench_" + secrets.token_hex(8)
    cmd = [PY] + (["-O"] if optimize else []) + ["-m", "proxy.cli.main", "run", "-c", str(work / "airlock.yaml")]
    try:
        with Proc(cmd, gw, cwd=work, env={"AIRLOCK_ADMIN_TOKEN": token}) as p:
            h = {"authorization": f"Bearer {token}"}
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"http://127.0.0.1:{admin}/readyz", headers=h).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
            r = httpx.post(f"http://127.0.0.1:{admin}/v1/keys", json={"account": "bench", "agent": "wrk"}, headers=h)
            r.raise_for_status()
            p.url = f"http://127.0.0.1:{gw}/bench"
            p.admin = f"http://127.0.0.1:{admin}"
            p.admin_headers = h
            yield p, r.json()["token"]
    finally:
        shutil.rmtree(work, ignore_errors=True)
