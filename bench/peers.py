"""Peer gateways measured side by side with Airlock, each installed by the bench itself into a throwaway
directory under ``.bench/`` (gitignored), pinned, and configured against the same upstream.

* LiteLLM proxy (``litellm[proxy]``, PyPI) in its own venv made with the same Python (>= 3.12);
* Portkey's AI gateway (``@portkey-ai/gateway``, npm), run with the Node on PATH.

``python -m bench.peers --install`` installs both (LiteLLM is ~770 MB and takes minutes);
``ensure_litellm()`` / ``ensure_portkey()`` return None plus a reason when a peer cannot be installed here,
so the harness reports it as skipped instead of failing.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

from .common import ROOT, Proc, free_port
from .targets import Target

LITELLM_VERSION = "1.108.7"          # the version the notes tried here (llm-wire.md §4)
PORTKEY_VERSION = "1.15.2"
BENCH_DIR = ROOT / ".bench"
LITELLM_VENV = BENCH_DIR / f"litellm-{LITELLM_VERSION}"
PORTKEY_DIR = BENCH_DIR / f"portkey-{PORTKEY_VERSION}"
MODEL = "gpt-4o-mini"


def _base_python() -> str:
    """The interpreter the project venv was made from (same version as Airlock's)."""
    return getattr(sys, "_base_executable", None) or sys.executable


def ensure_litellm(log=print) -> tuple[Path | None, str]:
    exe = LITELLM_VENV / "bin" / "litellm"
    if exe.exists():
        return exe, f"litellm[proxy]=={LITELLM_VERSION}"
    BENCH_DIR.mkdir(exist_ok=True)
    log(f"installing litellm[proxy]=={LITELLM_VERSION} into {LITELLM_VENV} (once; ~770 MB)")
    try:
        subprocess.run([_base_python(), "-m", "venv", str(LITELLM_VENV)], check=True, capture_output=True)
        r = subprocess.run([str(LITELLM_VENV / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
                            f"litellm[proxy]=={LITELLM_VERSION}"], capture_output=True, text=True, timeout=1800)
    except (OSError, subprocess.SubprocessError) as e:
        shutil.rmtree(LITELLM_VENV, ignore_errors=True)
        return None, f"could not install LiteLLM: {e}"
    if r.returncode != 0 or not exe.exists():
        shutil.rmtree(LITELLM_VENV, ignore_errors=True)
        return None, f"could not install LiteLLM: {r.stderr.strip()[-400:]}"
    return exe, f"litellm[proxy]=={LITELLM_VERSION}"


def ensure_portkey(log=print) -> tuple[Path | None, str]:
    entry = PORTKEY_DIR / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"
    if entry.exists():
        return entry, f"@portkey-ai/gateway@{PORTKEY_VERSION}"
    if not shutil.which("node") or not shutil.which("npm"):
        return None, "node/npm not on PATH"
    PORTKEY_DIR.mkdir(parents=True, exist_ok=True)
    log(f"installing @portkey-ai/gateway@{PORTKEY_VERSION} into {PORTKEY_DIR} (once)")
    (PORTKEY_DIR / "package.json").write_text('{"private": true}\n')
    try:
        r = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error",
                            f"@portkey-ai/gateway@{PORTKEY_VERSION}"], cwd=PORTKEY_DIR, capture_output=True,
                           text=True, timeout=900)
    except (OSError, subprocess.SubprocessError) as e:
        return None, f"could not install Portkey's gateway: {e}"
    if r.returncode != 0 or not entry.exists():
        return None, f"could not install Portkey's gateway: {r.stderr.strip()[-400:] or 'no build/start-server.js'}"
    return entry, f"@portkey-ai/gateway@{PORTKEY_VERSION}"


@contextlib.contextmanager
def litellm(upstream_url: str, exe: Path, cpu: str | None = None):
    """The LiteLLM proxy with one OpenAI-compatible model in front of ``upstream_url``; yields a Target
    (``url + "/v1/chat/completions"`` is the OpenAI route, its master key in ``headers``)."""
    port = free_port()
    work = Path(BENCH_DIR / f"litellm-run-{port}")
    work.mkdir(parents=True, exist_ok=True)
    (work / "config.yaml").write_text(
        "model_list:\n"
        f"  - model_name: {MODEL}\n"
        "    litellm_params:\n"
        f"      model: openai/{MODEL}\n"
        f"      api_base: {upstream_url}/v1\n"
        "      api_key: sk-bench-upstream\n"
        "litellm_settings:\n"
        "  telemetry: false\n"
        "  turn_off_message_logging: true\n")
    key = "sk-" + secrets.token_hex(16)
    env = {"LITELLM_MASTER_KEY": key, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR",
           "LITELLM_TELEMETRY": "False", "NO_DOCS": "True", "DISABLE_ADMIN_UI": "True",
           "PATH": f"{exe.parent}:{os.environ.get('PATH', '')}"}
    cmd = [str(exe), "--config", str(work / "config.yaml"), "--host", "127.0.0.1", "--port", str(port),
           "--num_workers", "1"]
    kw = {"cpu": cpu} if cpu else {}
    try:
        with Proc(cmd, port, env=env, cwd=work, start_timeout=180, **kw) as p:
            yield Target(f"http://127.0.0.1:{port}", {"authorization": f"Bearer {key}"}, p)
    finally:
        shutil.rmtree(work, ignore_errors=True)


@contextlib.contextmanager
def portkey(upstream_url: str, entry: Path, cpu: str | None = None):
    """Portkey's gateway (Node); yields a Target whose headers route to ``upstream_url`` as OpenAI."""
    port = free_port()
    cmd = [shutil.which("node") or "node", str(entry), f"--port={port}"]
    kw = {"cpu": cpu} if cpu else {}
    with Proc(cmd, port, cwd=PORTKEY_DIR, env={"NODE_ENV": "production"}, start_timeout=60, **kw) as p:
        yield Target(f"http://127.0.0.1:{port}", {"x-portkey-provider": "openai",
                                                  "x-portkey-custom-host": f"{upstream_url}/v1",
                                                  "authorization": "Bearer sk-bench-upstream"}, p)


def catalogue(log=print) -> tuple[dict, dict]:
    """({name: factory(upstream_url)}, {name: why skipped}) for every peer that installs and runs here."""
    found, skipped = {}, {}
    exe, what = ensure_litellm(log)
    if exe:
        found[f"LiteLLM proxy {LITELLM_VERSION}"] = lambda u: litellm(u, exe)
    else:
        skipped["LiteLLM proxy"] = what
    entry, what = ensure_portkey(log)
    if entry:
        found[f"Portkey gateway {PORTKEY_VERSION}"] = lambda u: portkey(u, entry)
    else:
        skipped["Portkey gateway"] = what
    skipped["TensorZero"] = ("not measured: its PyPI wheel embeds the gateway in the client process (no HTTP "
                             "proxy to put in front of the upstream); its standalone gateway is a Docker image / "
                             "Rust build, neither of which installs from a registry here")
    return found, skipped


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.peers")
    ap.add_argument("--install", action="store_true", help="install every peer into .bench/")
    a = ap.parse_args()
    if not a.install:
        ap.print_help()
        return 0
    ok = True
    for fn in (ensure_litellm, ensure_portkey):
        where, what = fn(lambda m: print(m, file=sys.stderr))
        print(f"{what}: {where or 'NOT INSTALLED'}")
        ok &= where is not None
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
