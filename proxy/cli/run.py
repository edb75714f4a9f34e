"""``airlock run``: start Airlock."""
from __future__ import annotations

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
    ) -> None:
        """Start the proxy: gateway, explicit proxy and admin listeners."""
        try:
            cfg = load(config or state.config, {"gateway": gateway, "proxy": proxy, "admin": admin})
        except ConfigError as e:
            fail(str(e), 2)
        from ..server import serve
        raise typer.Exit(serve(cfg, sidecar=sidecar))
