"""``airlock keys mint|list|revoke``: gateway tokens, through the admin API."""
from __future__ import annotations

from typing import Optional

import typer

from .common import AdminClient, emit_json, print_table

keys_app = typer.Typer(help="Gateway tokens for agents.", no_args_is_help=True)


@keys_app.command("mint")
def mint(
    account: str = typer.Option(..., "--account", help="Account the token bills to."),
    flow: Optional[str] = typer.Option(None, "--flow", help="Flow (workflow/pipeline) name."),
    subject: Optional[str] = typer.Option(None, "--subject", help="The human or service behind the agent."),
    agent: Optional[str] = typer.Option(None, "--agent", help="Agent name (claude-code, codex, ...)."),
    ttl: str = typer.Option("30d", "--ttl", help="Lifetime: 90s, 30m, 2h, 7d, 4w."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Mint a gateway token (shown once; stored hashed)."""
    out = AdminClient.from_ctx().post("/v1/keys", {"account": account, "flow": flow, "subject": subject,
                                                   "agent": agent, "ttl": ttl})
    if as_json:
        emit_json({k: out.get(k) for k in ("token", "account", "flow", "subject", "agent", "expires_at", "id")})
    else:
        typer.echo(out["token"])
        typer.echo(f"id {out['id']} · account {out['account']} · expires {out['expires_at']}", err=True)


@keys_app.command("list")
def list_keys(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List tokens (never their values)."""
    rows = AdminClient.from_ctx().get("/v1/keys")
    if as_json:
        emit_json(rows)
    else:
        print_table(rows, ["id", "account", "flow", "subject", "agent", "expires_at", "revoked"])


@keys_app.command("revoke")
def revoke(key_id: str = typer.Argument(..., help="Key id from 'airlock keys list'."),
           as_json: bool = typer.Option(False, "--json")) -> None:
    """Revoke a token at once on every replica."""
    out = AdminClient.from_ctx().post(f"/v1/keys/{key_id}/revoke")
    emit_json(out) if as_json else typer.echo(f"revoked {key_id}")


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")
