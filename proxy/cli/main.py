"""The ``airlock`` command. Each command group lives in its own module of this
package and adds itself through ``register(app)``."""
from __future__ import annotations

import sys
from typing import Optional

import typer

from ..modules import optional
from .common import state

GROUPS = ["run", "keys", "ca", "policy", "mcp", "approvals", "budgets", "sessions", "audit", "db", "agents", "env",
          "sidecar", "hook"]

app = typer.Typer(name="airlock", no_args_is_help=True, add_completion=False,
                  help="Airlock: a control plane for AI agents (MCP firewall, model gateway, approvals, audit).")


@app.callback()
def _globals(
    admin: Optional[str] = typer.Option(None, "--admin", envvar="AIRLOCK_ADMIN_URL",
                                        help="Admin API URL of a running Airlock (default from airlock.yaml)."),
    admin_token: Optional[str] = typer.Option(None, "--admin-token", envvar="AIRLOCK_ADMIN_TOKEN",
                                              help="Admin token (default: env, then <data_dir>/admin-token)."),
    config: Optional[str] = typer.Option(None, "--config", "-c", envvar="AIRLOCK_CONFIG",
                                         help="airlock.yaml to read defaults from."),
    token: Optional[str] = typer.Option(None, "--token", envvar="AIRLOCK_TOKEN",
                                        help="An agent's gateway token, for 'hook' and 'mcp wrap' (instead of "
                                             "the admin token)."),
) -> None:
    state.admin, state.admin_token, state.config, state.token = admin, admin_token, config, token


for _name in GROUPS:
    _mod = optional(f"proxy.cli.{_name}")
    if _mod is not None:
        _mod.register(app)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
