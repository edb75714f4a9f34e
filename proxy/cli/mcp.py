"""``airlock mcp``: wrap stdio MCP servers; list and accept remembered tool versions."""
from __future__ import annotations

import asyncio
import logging
import sys
from typing import List, Optional

import typer

from .common import AdminClient, emit_json, fail, load_config, print_table

mcp_app = typer.Typer(help="MCP firewall: stdio servers under policy, tool change records.", no_args_is_help=True)
tools_app = typer.Typer(help="Remembered MCP tool versions (tool poisoning / rug-pull detection).",
                        no_args_is_help=True)
mcp_app.add_typer(tools_app, name="tools")


def register(app: typer.Typer) -> None:
    app.add_typer(mcp_app, name="mcp")


def _admin_alive(client: AdminClient) -> bool:
    """True if an Airlock answers and takes our admin token; False if none answers."""
    import httpx
    try:
        r = client.http.get("/v1/mcp/tools", params={"server": "-"}, timeout=2)
    except httpx.HTTPError:
        return False
    if r.status_code == 401:
        fail(f"the Airlock at {client.base_url} refused the admin token: set AIRLOCK_ADMIN_TOKEN or pass "
             "--admin-token (or --offline to decide with the local policies)", 3)
    if r.status_code != 200:
        fail(f"the Airlock at {client.base_url} cannot decide MCP calls (HTTP {r.status_code} on "
             "/v1/mcp/tools); upgrade it or use --offline", 3)
    return True


@mcp_app.command("wrap")
def wrap(
    command: List[str] = typer.Argument(..., metavar="-- COMMAND [ARGS]...",
                                        help="The stdio MCP server to run, after '--'."),
    server: str = typer.Option(..., "--server", help="Server name the policy sees (tool.server)."),
    agent: Optional[str] = typer.Option(None, "--agent", envvar="AIRLOCK_AGENT", help="Agent name for policy/audit."),
    subject: Optional[str] = typer.Option(None, "--subject", envvar="AIRLOCK_SUBJECT", help="User on whose behalf."),
    account: Optional[str] = typer.Option(None, "--account", envvar="AIRLOCK_ACCOUNT", help="Account."),
    session: Optional[str] = typer.Option(None, "--session", envvar="AIRLOCK_SESSION", help="Session id."),
    offline: bool = typer.Option(False, "--offline",
                                 help="Do not ask a running Airlock; use the config's policies in process."),
) -> None:
    """Run a stdio MCP server as a child; every tools/call is decided by Airlock's policy."""
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="airlock mcp wrap: %(message)s")
    from ..mcp import stdio
    identity = {"agent": agent, "subject": subject, "account": account, "session": session}

    async def main() -> int:
        decider = None
        if not offline:
            client = AdminClient.for_agent()
            if _admin_alive(client):
                decider = stdio.RemoteDecider(client.base_url, client.token)
            client.http.close()
        if decider is None:
            cfg = load_config()
            try:
                decider = await stdio.LocalDecider.open(cfg)
            except Exception as e:            # policy errors name file and line
                fail(f"cannot load the policies of {cfg.source}: {e}", 2)
        typer.echo(f"airlock mcp wrap: server {server!r}, decisions by the {decider.kind}", err=True)
        try:
            return await stdio.wrap(command, server, identity, decider)
        except FileNotFoundError:
            fail(f"cannot run {command[0]!r}: command not found (give the full path after '--')", 127)
            return 127

    raise typer.Exit(asyncio.run(main()))


@tools_app.command("list")
def tools_list(
    server: Optional[str] = typer.Option(None, "--server", help="Only this MCP server."),
    changed: bool = typer.Option(False, "--changed", help="Only tools whose description or schema changed."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Tools Airlock has seen, with their hashes and whether they changed since first seen."""
    rows = AdminClient.from_ctx().get("/v1/mcp/tools", params={"server": server} if server else None)["tools"]
    if changed:
        rows = [r for r in rows if r.get("changed")]
    if as_json:
        emit_json(rows)
        return
    print_table([{**r, "hash": (r.get("hash") or "")[:12], "seen": (r.get("seen") or "")[:12]} for r in rows],
                ["server", "tool", "changed", "hash", "seen"])


@tools_app.command("accept")
def tools_accept(
    server: str = typer.Option(..., "--server", help="MCP server name."),
    tool: str = typer.Option(..., "--tool", help="Tool name."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Accept a changed tool: its current description and schema become the trusted baseline."""
    rec = AdminClient.from_ctx().post("/v1/mcp/tools/accept", json={"server": server, "tool": tool})
    if as_json:
        emit_json(rec)
    else:
        typer.echo(f"accepted {server}/{tool} (hash {rec.get('hash', '')[:12]})")
