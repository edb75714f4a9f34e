"""``airlock hook claude-code|gemini|cursor``: the native-tool hooks ``airlock agents onboard`` installs.

Each reads the agent's hook JSON on stdin, asks the running Airlock (``POST /v1/check``) and prints
the agent's decision JSON; when Airlock cannot answer, the call is denied (fail closed)."""
from __future__ import annotations

import json
import sys

import httpx
import typer

from ..discover.hooks import answer, check_request
from .common import AdminClient

hook_app = typer.Typer(help="Agent hooks that ask Airlock before native tools run.", no_args_is_help=True)


def _run(kind: str) -> None:
    try:
        body = check_request(kind, json.loads(sys.stdin.read() or "null"))
    except ValueError as e:
        typer.echo(json.dumps(answer(kind, None, str(e))))
        return
    if body is None:
        if kind == "gemini":
            typer.echo("{}")
        return
    decision, error = None, None
    try:
        r = AdminClient.for_agent().http.post("/v1/check", json=body)
        if r.status_code != 200:
            error = f"HTTP {r.status_code}"
        else:
            decision = r.json()
    except typer.Exit:
        error = "no admin API configured"
    except (httpx.HTTPError, ValueError) as e:
        error = type(e).__name__
    out = answer(kind, decision, error)
    if out is not None:
        typer.echo(json.dumps(out))


@hook_app.command("claude-code")
def claude_code() -> None:
    """Claude Code PreToolUse hook: stdin hook JSON -> stdout decision JSON."""
    _run("claude-code")


@hook_app.command("gemini")
def gemini() -> None:
    """Gemini CLI BeforeTool hook: stdin hook JSON -> stdout {"decision", "reason"}."""
    _run("gemini")


@hook_app.command("cursor")
def cursor() -> None:
    """Cursor beforeShellExecution / preToolUse hook: stdin hook JSON -> stdout {"permission", ...}."""
    _run("cursor")


def register(app: typer.Typer) -> None:
    app.add_typer(hook_app, name="hook")
