"""``airlock env``: the environment an agent needs to go through Airlock's explicit proxy.

    eval "$(airlock env --mint --account acme --agent claude-code)"

HTTPS_PROXY carries the gateway token as the proxy password, so the agent needs
no other change. Node reads NODE_EXTRA_CA_CERTS (added to its built-in CAs);
Python, curl and Codex read a bundle that *replaces* the system store, so they
get ``ca-bundle.pem`` = system CAs + Airlock's CA: hosts Airlock does not
govern are passed through untouched and must keep verifying.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional
from urllib.parse import quote, urlsplit

import typer

from .. import ca_install
from .common import AdminClient, emit_json, fail, load_config

PROXY_USER = "airlock"
NO_PROXY = "localhost,127.0.0.1,::1"
BUNDLE_VARS = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "CODEX_CA_CERTIFICATE")
SHELLS = ("sh", "fish", "powershell")


def proxy_url(listen: str | None, token: str | None, override: str | None = None) -> str:
    """``http://airlock:<token>@host:port`` for the explicit proxy listener."""
    if override:
        u = urlsplit(override if "://" in override else "http://" + override)
        if not u.hostname or u.scheme not in ("http", "https"):
            raise ValueError(f"--proxy-url {override!r} is not http://HOST:PORT")
        host = f"[{u.hostname}]" if ":" in u.hostname else u.hostname
        hostport = f"{host}:{u.port}" if u.port else host
        scheme = u.scheme
    else:
        if not listen:
            raise ValueError("listen.proxy is disabled in airlock.yaml: enable it or pass --proxy-url")
        host, _, port = listen.rpartition(":")
        host = host.strip("[]")
        if host in ("", "0.0.0.0", "::"):
            host = "127.0.0.1"
        hostport = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        scheme = "http"
    cred = f"{PROXY_USER}:{quote(token, safe='')}@" if token else ""
    return f"{scheme}://{cred}{hostport}"


def variables(proxy: str, ca_cert: Path, bundle: Path, no_proxy: str = NO_PROXY) -> dict[str, str]:
    env = {}
    for name in ("HTTPS_PROXY", "HTTP_PROXY"):
        env[name] = env[name.lower()] = proxy
    env["NO_PROXY"] = env["no_proxy"] = no_proxy
    env["NODE_EXTRA_CA_CERTS"] = str(ca_cert)
    for name in BUNDLE_VARS:
        env[name] = str(bundle)
    return env


def _quote(shell: str, value: str) -> str:
    if shell == "powershell":
        return "'" + value.replace("'", "''") + "'"
    if shell == "fish":
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return "'" + value.replace("'", "'\\''") + "'"


def render(env: dict[str, str], shell: str, unset: bool = False) -> str:
    lines = []
    for k, v in env.items():
        if shell == "powershell":
            lines.append(f"Remove-Item Env:{k} -ErrorAction SilentlyContinue" if unset
                         else f"$env:{k} = {_quote(shell, v)}")
        elif shell == "fish":
            lines.append(f"set -e {k}" if unset else f"set -gx {k} {_quote(shell, v)}")
        else:
            lines.append(f"unset {k}" if unset else f"export {k}={_quote(shell, v)}")
    return "\n".join(lines) + "\n"


def register(app: typer.Typer) -> None:
    @app.command("env")
    def env_cmd(
        token: Optional[str] = typer.Option(None, "--token", envvar="AIRLOCK_TOKEN",
                                            help="Gateway token to put in the proxy credentials."),
        mint: bool = typer.Option(False, "--mint", help="Mint a new token through the admin API (needs --account)."),
        account: Optional[str] = typer.Option(None, "--account", help="With --mint: account of the token."),
        agent: Optional[str] = typer.Option(None, "--agent", help="With --mint: agent name."),
        subject: Optional[str] = typer.Option(None, "--subject", help="With --mint: the human behind the agent."),
        flow: Optional[str] = typer.Option(None, "--flow", help="With --mint: flow name."),
        ttl: str = typer.Option("30d", "--ttl", help="With --mint: lifetime (90s, 30m, 2h, 7d)."),
        shell: str = typer.Option("sh", "--shell", help="Output syntax: sh (bash/zsh), fish or powershell."),
        proxy: Optional[str] = typer.Option(None, "--proxy-url", help="Proxy address agents reach "
                                            "(default: listen.proxy, 0.0.0.0 shown as 127.0.0.1)."),
        ca: Optional[str] = typer.Option(None, "--ca", help="Airlock CA certificate (default: 'airlock ca path')."),
        no_proxy: str = typer.Option(NO_PROXY, "--no-proxy", help="Hosts that bypass the proxy (NO_PROXY)."),
        unset: bool = typer.Option(False, "--unset", help="Print the commands that remove these variables."),
        as_json: bool = typer.Option(False, "--json", help="Print {\"env\": {...}} as JSON "
                                     "({\"unset\": [names]} with --unset)."),
    ) -> None:
        """Print the exports that send an agent through Airlock's explicit proxy."""
        if shell not in SHELLS:
            fail(f"--shell {shell!r}: use one of {', '.join(SHELLS)}", 2)
        if unset:                       # only the names matter: no config, CA or token needed
            names = list(variables("", Path("."), Path("."), ""))
            if as_json:
                emit_json({"unset": names})
            else:
                typer.echo(render(dict.fromkeys(names, ""), shell, unset=True), nl=False)
            return
        if mint and token:
            fail("pass either --token or --mint, not both", 2)
        if mint and not account:
            fail("--mint needs --account (the account the new token bills to)", 2)
        cfg = load_config()
        key_id = None
        if mint:
            out = AdminClient.from_ctx().post("/v1/keys", {"account": account, "flow": flow, "subject": subject,
                                                           "agent": agent, "ttl": ttl})
            token, key_id = out["token"], out.get("id")
        elif not token:
            typer.echo("airlock: no gateway token (pass --token, set AIRLOCK_TOKEN or use --mint --account A): "
                       "governed calls will be refused with 401", err=True)
        try:
            url = proxy_url(cfg.listen.get("proxy"), token, proxy)
            if ca is None:
                from ..server import ensure_ca
                ca_cert = ensure_ca(cfg)
            else:
                ca_cert = Path(ca).resolve()
            bundle = ca_cert.parent / "ca-bundle.pem"
            ca_install.write_bundle(ca_cert, bundle)
        except ValueError as e:
            fail(str(e), 2)
            return
        except ca_install.CaInstallError as e:
            fail(str(e), 1)
            return
        except OSError as e:
            fail(f"cannot write the CA bundle next to the CA ({e.strerror}: {e.filename}); "
                 "pass --ca with a copy of the CA in a writable folder", 1)
            return
        env = variables(url, ca_cert, bundle, no_proxy)
        if as_json:
            emit_json({"env": env, "token_id": key_id, "ca": str(ca_cert), "ca_bundle": str(bundle)})
        else:
            typer.echo(render(env, shell), nl=False)
            if os.isatty(1):
                typer.echo("# undo: eval \"$(airlock env --unset)\"", err=True)
