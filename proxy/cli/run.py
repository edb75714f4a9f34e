"""``airlock run``: start Airlock."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer

from ..config import ConfigError, load
from .common import fail, state


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run(
        config: Optional[str] = typer.Option(None, "--config", "-c", help="airlock.yaml (default: ./airlock.yaml "
                                             "if present, else built-in defaults)."),
        gateway: Optional[str] = typer.Option(None, "--gateway", help="Gateway listener HOST:PORT."),
        proxy: Optional[str] = typer.Option(None, "--proxy", help="Explicit HTTPS proxy listener HOST:PORT."),
        admin: Optional[str] = typer.Option(None, "--admin",
                                            help="Admin listener HOST:PORT."),
        sidecar: bool = typer.Option(False, "--sidecar", help="Also run the transparent listener (listen.sidecar)."),
        workers: int = typer.Option(1, "--workers", "-w", envvar="AIRLOCK_WORKERS", min=1,
                                    help="Proxy processes sharing the listeners (SO_REUSEPORT); more than 1 "
                                         "needs store.redis."),
        debug_checks: bool = typer.Option(False, "--debug-checks", envvar="AIRLOCK_DEBUG_CHECKS",
                                          help="Keep Python's assert checks (run without -O; slower)."),
    ) -> None:
        """Start the proxy: gateway, explicit proxy and admin listeners."""
        try:
            cfg = load(config or state.config, {"gateway": gateway, "proxy": proxy, "admin": admin})
        except ConfigError as e:
            fail(str(e), 2)
        if not debug_checks:
            _reexec_optimized()
        from ..server import serve
        raise typer.Exit(serve(cfg, sidecar=sidecar, workers=workers))


def _reexec_optimized() -> None:
    """Run the proxy under ``python -O``: mitmproxy's per-event ``__debug__`` type checks cost about a
    fifth of its throughput (bench/RESULTS.md). Replaces this process (same pid) with the same command
    line plus ``-O``; only when started as the ``airlock`` command or ``python -m proxy.cli.main``."""
    if sys.flags.optimize or Path(sys.argv[0]).name not in {"airlock", "main.py"}:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-O", *sys.orig_argv[1:]])
