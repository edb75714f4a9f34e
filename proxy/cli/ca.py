"""``airlock ca path``: Airlock's CA certificate for explicit-proxy and sidecar mode."""
from __future__ import annotations

import typer

from .common import load_config

ca_app = typer.Typer(help="Airlock's certificate authority.", no_args_is_help=True)


@ca_app.command("path")
def path() -> None:
    """Print the CA certificate path (created on first use)."""
    from ..server import ensure_ca
    typer.echo(str(ensure_ca(load_config())))


def register(app: typer.Typer) -> None:
    try:
        from .. import ca_install
    except ModuleNotFoundError:
        ca_install = None
    if ca_install is not None and hasattr(ca_install, "register"):
        ca_install.register(ca_app)
    app.add_typer(ca_app, name="ca")
