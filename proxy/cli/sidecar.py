"""``airlock sidecar rules``: print or apply the iptables rules of the transparent sidecar."""
from __future__ import annotations

from typing import Optional

import typer

from .. import sidecar
from .common import emit_json, fail

sidecar_app = typer.Typer(help="Transparent sidecar: redirect an agent's outbound 80/443 to Airlock.",
                          no_args_is_help=True)


@sidecar_app.command("rules")
def rules(
    agent_uid: list[str] = typer.Option(..., "--agent-uid", help="uid (or user name) of the agent; repeatable"),
    proxy_port: int = typer.Option(sidecar.DEFAULT_PROXY_PORT, "--proxy-port",
                                   help="port of Airlock's transparent listener (listen.sidecar)"),
    proxy_uid: Optional[str] = typer.Option(None, "--proxy-uid",
                                            help="uid Airlock runs as; its traffic is always exempted"),
    port: list[int] = typer.Option(list(sidecar.DEFAULT_PORTS), "--port", help="destination port to redirect; "
                                   "repeatable (default 80 and 443)"),
    exempt: list[str] = typer.Option([], "--exempt", help="destination CIDR never redirected; repeatable"),
    chain: str = typer.Option(sidecar.DEFAULT_CHAIN, "--chain", help="name of the nat chain holding the rules"),
    ipv6: bool = typer.Option(True, "--ipv6/--no-ipv6", help="also write ip6tables rules"),
    apply: bool = typer.Option(False, "--apply", help="apply the rules now (root or CAP_NET_ADMIN)"),
    remove: bool = typer.Option(False, "--remove", help="print (or with --apply, run) the commands that undo them"),
    as_json: bool = typer.Option(False, "--json", help="print the commands as JSON"),
) -> None:
    """Print (or --apply) the iptables rules that send the agent's HTTP(S) through Airlock."""
    try:
        spec = sidecar.SidecarRules(
            agent_uids=[sidecar.resolve_uid(u, "--agent-uid") for u in agent_uid],
            proxy_port=proxy_port, ports=tuple(port),
            proxy_uid=sidecar.resolve_uid(proxy_uid, "--proxy-uid") if proxy_uid is not None else None,
            chain=chain, ipv6=ipv6, exempt_cidrs=list(exempt))
        if apply:
            cmds = sidecar.remove(spec) if remove else sidecar.apply(spec)
        else:
            cmds = spec.remove_commands() if remove else spec.commands()
    except sidecar.RulesError as e:
        fail(str(e), 2)
        return
    if as_json:
        emit_json({"applied": apply, "action": "remove" if remove else "install", "chain": spec.chain,
                   "agent_uids": spec.agent_uids, "proxy_port": spec.proxy_port, "commands": cmds})
    elif apply:
        what = "removed" if remove else f"installed (chain {spec.chain}; undo: airlock sidecar rules " \
            f"--agent-uid {spec.agent_uids[0]} --remove --apply)"
        typer.echo(f"sidecar rules {what}")
    else:
        typer.echo(spec.script(remove=remove), nl=False)


def register(app: typer.Typer) -> None:
    app.add_typer(sidecar_app, name="sidecar")
