"""``airlock agents discover|onboard|restore``: find local coding agents and route them through Airlock."""
from __future__ import annotations

import getpass
import shutil
import sys
from pathlib import Path
from typing import List, Optional

import typer

from ..discover.discover import discover as do_discover
from ..discover.docs import DocError
from ..discover.onboard import OnboardError, onboard as do_onboard
from ..discover.registry import AGENTS
from ..discover.restore import restore as do_restore
from .common import AdminClient, emit_json, fail, print_table, state

agents_app = typer.Typer(help="Find local coding agents and route them through Airlock.", no_args_is_help=True)

HOME = typer.Option(None, "--home", help="Home directory to scan (default: yours).")
PROJECT = typer.Option(None, "--project", help="Project directory for project-level files (.mcp.json, ...).")


def _home(home: Optional[Path]) -> Path:
    h = (home or Path.home()).expanduser().absolute()
    if not h.is_dir():
        fail(f"--home {h} is not a directory")
    return h


def _project(project: Optional[Path]) -> Optional[Path]:
    if project is None:
        return None
    p = project.expanduser().absolute()
    if not p.is_dir():
        fail(f"--project {p} is not a directory")
    return p


def _check_agents(names: list[str]) -> list[str] | None:
    bad = [n for n in names if n not in AGENTS]
    if bad:
        fail(f"unknown agent {', '.join(bad)}; known agents: {', '.join(AGENTS)}")
    return names or None


def _airlock_bin() -> str:
    argv0 = Path(sys.argv[0])
    if argv0.name == "airlock" and argv0.exists():
        return str(argv0.absolute())
    found = shutil.which("airlock")
    if found:
        return str(Path(found).absolute())
    venv = Path(sys.executable).parent / "airlock"
    return str(venv) if venv.exists() else "airlock"


@agents_app.command("discover")
def discover(home: Optional[Path] = HOME, project: Optional[Path] = PROJECT,
             agent: List[str] = typer.Option([], "--agent", help="Only this agent (repeatable)."),
             as_json: bool = typer.Option(False, "--json", help="Print JSON (a stable contract).")) -> None:
    """List agents, their config files, MCP servers and model base URL (read-only; never prints secrets)."""
    reports = do_discover(_home(home), _project(project), _check_agents(agent))
    if as_json:
        emit_json([r.public() for r in reports])
        return
    if not reports:
        typer.echo("no agents found")
        return
    for r in reports:
        typer.echo(f"{r.agent}: model {r.model.get('provider') or '-'} {r.model.get('base_url') or '(not file-configurable)'}")
        for f in r.config_files:
            typer.echo(f"  file {f}")
        rows = [{"server": s.name, "transport": s.transport,
                 "target": s.url or " ".join([s.command or "", *s.args]).strip(),
                 "disabled": "yes" if s.disabled else "", "scope": s.scope} for s in r.mcp_servers]
        if rows:
            print_table(rows, ["server", "transport", "target", "disabled", "scope"])
        for w in r.warnings:
            typer.echo(f"  warning: {w}", err=True)


@agents_app.command("onboard")
def onboard(home: Optional[Path] = HOME, project: Optional[Path] = PROJECT,
            agent: List[str] = typer.Option([], "--agent", help="Only this agent (repeatable)."),
            dry_run: bool = typer.Option(False, "--dry-run", help="Print unified diffs; mint and write nothing."),
            yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
            account: Optional[str] = typer.Option(None, "--account", help="Account for minted tokens "
                                                  "(default: your user name)."),
            gateway_url: Optional[str] = typer.Option(None, "--gateway-url", help="Gateway URL agents will use "
                                                      "(default: listen.gateway of airlock.yaml)."),
            config: Optional[Path] = typer.Option(None, "--config", "-c", help="airlock.yaml where remote MCP "
                                                  "servers get registered (default: ./airlock.yaml)."),
            move_secrets: bool = typer.Option(False, "--move-secrets", help="Copy literal secret MCP headers into "
                                              "airlock.yaml (otherwise they are left out, with a warning)."),
            ttl: str = typer.Option("30d", "--ttl", help="Lifetime of minted tokens."),
            as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Rewrite agent configs so MCP servers and model traffic go through Airlock (backed up first)."""
    h, p, only = _home(home), _project(project), _check_agents(agent)
    if gateway_url is not None and not gateway_url.startswith(("http://", "https://")):
        fail(f"--gateway-url {gateway_url!r} must be an http(s) URL, e.g. http://127.0.0.1:8787")
    cfg_path = (config or Path(state.config or "airlock.yaml")).expanduser().absolute()
    if not cfg_path.is_file():
        fail(f"no Airlock config at {cfg_path}: onboard registers remote MCP servers there, and wrapped servers "
             "and hooks find the admin API through it. Pass -c with the airlock.yaml that 'airlock run' uses "
             "(an empty file means all defaults)", 2)
    global_args = ["-c", str(cfg_path)]       # wrap/hook find the admin API (URL + token file) through it
    acct = account or getpass.getuser()

    def mint(agent_name: str) -> str:
        if state.config is None and cfg_path.exists():
            state.config = str(cfg_path)
        out = AdminClient.from_ctx().post("/v1/keys", {"account": acct, "flow": None, "subject": None,
                                                       "agent": agent_name, "ttl": ttl})
        return out["token"]

    def run(dry: bool):
        try:
            return do_onboard(h, p, cfg_path, agents=only, gateway=gateway_url, airlock=_airlock_bin(),
                              global_args=global_args, mint=mint, dry_run=dry, move_secrets=move_secrets,
                              account=acct)
        except (OnboardError, DocError, ValueError) as e:
            fail(str(e))

    plan, cfg_diffs = run(True)
    if dry_run:
        if as_json:
            emit_json({"dry_run": True, "airlock_config": str(cfg_path), "agents": [r.public() for r in plan],
                       "diffs": [d for r in plan for d in r.diffs] + cfg_diffs})
        else:
            for d in [d for r in plan for d in r.diffs] + cfg_diffs:
                typer.echo(d, nl=False)
            _summary(plan, cfg_diffs, cfg_path, dry=True)
        return
    if not any(r.changed_files for r in plan) and not cfg_diffs:
        if as_json:
            emit_json({"dry_run": False, "airlock_config": str(cfg_path), "agents": [r.public() for r in plan]})
        else:
            _summary(plan, cfg_diffs, cfg_path, dry=False)
        return
    if not yes:
        _summary(plan, cfg_diffs, cfg_path, dry=True)
        if not sys.stdin.isatty():
            fail("not a terminal: rerun with --yes to apply, or --dry-run to see the diffs")
        if not typer.confirm("Apply these changes?", default=False):
            fail("nothing changed", 1)
    results, cfg_diffs = run(False)
    if as_json:
        emit_json({"dry_run": False, "airlock_config": str(cfg_path), "agents": [r.public() for r in results],
                   "backups": str(h / ".airlock" / "backups")})
    else:
        _summary(results, cfg_diffs, cfg_path, dry=False)
        typer.echo(f"backups: {h / '.airlock' / 'backups'} (undo with 'airlock agents restore --home {h}')")


def _summary(results, cfg_diffs, cfg_path: Path, dry: bool) -> None:
    verb = "would change" if dry else "changed"
    for r in results:
        typer.echo(f"{r.agent}: {verb} {len(r.changed_files)} file(s); token {r.token}")
        for a in r.actions:
            typer.echo(f"  {a}")
        for w in r.warnings:
            typer.echo(f"  warning: {w}", err=True)
    if cfg_diffs:
        typer.echo(f"airlock config: {verb} {cfg_path}")
    if not results:
        typer.echo("no agents found")


@agents_app.command("restore")
def restore(home: Optional[Path] = HOME, project: Optional[Path] = PROJECT,
            agent: List[str] = typer.Option([], "--agent", help="Only this agent's files (repeatable; "
                                            "'airlock' = Airlock's own config)."),
            keep_tokens: bool = typer.Option(False, "--keep-tokens",
                                             help="Do not revoke the gateway tokens the restored files dropped."),
            as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Put every onboarded file back byte for byte from its first backup, and revoke the gateway tokens
    onboard wrote into them (no agent holds them any more)."""
    try:
        done, dropped = do_restore(_home(home), _project(project), agent or None)
    except (OSError, ValueError) as e:
        fail(f"restore failed: {e}")
    tokens = [] if keep_tokens else [_revoke(t) for t in sorted(dropped)]
    if as_json:
        emit_json(done + tokens)
        return
    if not done:
        typer.echo("nothing to restore")
    else:
        print_table(done, ["agent", "action", "file"])
    for t in tokens:
        typer.echo(f"token {t['token_id']}: {t['action']}")


def _revoke(token_id: str) -> dict:
    """Revoke one token through the running Airlock; never fails the restore (it is already done)."""
    import httpx
    try:
        client = AdminClient.from_ctx()
        r = client.http.post(f"/v1/keys/{token_id}/revoke")
        action = "revoked" if r.status_code == 200 else \
            "not known to this Airlock" if r.status_code == 404 else f"not revoked (HTTP {r.status_code})"
    except (httpx.HTTPError, typer.Exit) as e:
        action = f"not revoked (admin API unreachable: {type(e).__name__})"
    if action != "revoked" and "not known" not in action:
        action += f"; still valid: run 'airlock keys revoke {token_id}'"
    return {"token_id": token_id, "action": action}


def register(app: typer.Typer) -> None:
    app.add_typer(agents_app, name="agents")
