"""``airlock hook claude-code``: the PreToolUse hook ``airlock agents onboard`` installs.

Reads Claude Code's hook JSON on stdin, asks the running Airlock (``POST /v1/check``) and
prints Claude Code's decision JSON; when Airlock cannot answer, the call is denied."""
from __future__ import annotations

import json
import sys

import httpx
import typer

from ..discover.hooks import claude_code_answer, claude_code_request
from .common import AdminClient

hook_app = typer.Typer(help="Agent hooks that ask Airlock before native tools run.", no_args_is_help=True)


@hook_app.command("claude-code")
def claude_code() -> None:
    """Claude Code PreToolUse hook: stdin hook JSON -> stdout decision JSON."""
    try:
        body = claude_code_request(json.loads(sys.stdin.read() or "null"))
    except ValueError as e:
        typer.echo(json.dumps(claude_code_answer(None, str(e))))
        return
    if body["tool"].startswith("mcp__"):
        return                       # MCP tools already pass Airlock's firewall on the wire
    decision, error = None, None
    try:
        client = AdminClient.from_ctx()
        r = client.http.post("/v1/check", json=body)
        if r.status_code != 200:
            error = f"HTTP {r.status_code}"
        else:
            decision = r.json()
    except typer.Exit:
        error = "no admin API configured"
    except (httpx.HTTPError, ValueError) as e:
        error = type(e).__name__
    out = claude_code_answer(decision, error)
    if out is not None:
        typer.echo(json.dumps(out))


def register(app: typer.Typer) -> None:
    app.add_typer(hook_app, name="hook")
