"""``airlock sessions list|show|end``: runtime sessions (agent runs), through the admin API."""
from __future__ import annotations

from typing import Optional

import typer

from .common import AdminClient, emit_json, print_table

sessions_app = typer.Typer(help="Runtime sessions: one per agent run.", no_args_is_help=True)


@sessions_app.command("list")
def list_sessions(
    since: Optional[str] = typer.Option(None, "--since", help="Active since (ISO 8601 or an age: 2h, 7d)."),
    account: Optional[str] = typer.Option(None, "--account", help="Only this account."),
    limit: int = typer.Option(100, "--limit", help="Most sessions shown (latest first)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List sessions, most recently active first."""
    params = {"limit": limit, **({"since": since} if since else {}), **({"account": account} if account else {})}
    rows = AdminClient.from_ctx().get("/v1/sessions", params)
    if as_json:
        emit_json(rows)
    else:
        print_table(rows, ["session", "account", "agent", "first_ts", "last_ts", "tool_calls", "model_calls",
                           "denied", "tokens", "cost", "ended"])


@sessions_app.command("show")
def show(session_id: str = typer.Argument(..., help="Session id from 'airlock sessions list'."),
         as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """A session's timeline: tool calls, model calls, decisions, approvals and spend."""
    out = AdminClient.from_ctx().get(f"/v1/sessions/{session_id}")
    if as_json:
        emit_json(out)
        return
    s = out["summary"]
    typer.echo(f"session {s['session']}  {s['first_ts']} .. {s['last_ts']}  events {s['events']}  "
               f"tool calls {s['tool_calls']}  model calls {s['model_calls']}  denied {s['denied']}  "
               f"tokens {s['tokens']}  cost ${s['cost']}{'  ENDED' if s['ended'] else ''}")
    rows = [{**r, "what": r["tool"] or r["model"] or r["path"], "result": r["action"] or r["outcome"]}
            for r in out["timeline"]]
    print_table(rows, ["ts", "kind", "what", "status", "result", "rule", "tokens", "cost", "reason"])


@sessions_app.command("end")
def end(session_id: str = typer.Argument(..., help="Session id to end."),
        reason: str = typer.Option("", "--reason", help="Why (recorded in the audit trail)."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """End a session: every later call carrying its id is refused (audited)."""
    out = AdminClient.from_ctx().post(f"/v1/sessions/{session_id}/end", {"reason": reason})
    if as_json:
        emit_json(out)
    else:
        typer.echo(f"session {session_id} {'was already ended' if out.get('already_ended') else 'ended'}: "
                   "its later calls are refused")


def register(app: typer.Typer) -> None:
    app.add_typer(sessions_app, name="sessions")
