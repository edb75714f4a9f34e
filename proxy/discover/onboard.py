"""Rewrite every discovered agent so its MCP and model traffic goes through Airlock.

Per agent: reuse the token an earlier onboarding left in its files, else (only when
something would change) mint one; rewrite with the agent module; register remote MCP
servers in Airlock's own config; back up every file before writing it. ``dry_run``
mints and writes nothing and returns unified diffs with a placeholder token.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .backup import Backups
from .base import Agent, Ctx
from .discover import found, load_files
from .docs import Doc, write_atomic
from .model import PLACEHOLDER_TOKEN, Server, classify_header, safe_name, to_airlock_ref
from .registry import AGENTS


class OnboardError(Exception):
    """Onboarding cannot proceed; ``str()`` says what to do."""


@dataclass
class AgentResult:
    agent: str
    token: str = "none"                     # "minted" | "reused" | "placeholder" | "none" (never the value)
    changed_files: list[str] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    diffs: list[str] = field(default_factory=list)

    def public(self) -> dict:
        return {"agent": self.agent, "token": self.token, "changed_files": self.changed_files,
                "actions": self.actions, "warnings": self.warnings}


class AirlockConfig:
    """Airlock's airlock.yaml, edited losslessly: remote MCP servers land under ``mcp_servers``."""

    def __init__(self, path: Path, move_secrets: bool = False):
        self.path = path
        self.doc = Doc.load(path, "yaml")
        self.move_secrets = move_secrets

    def gateway_url(self) -> str:
        listen = self.doc.get(["listen", "gateway"]) or "127.0.0.1:8787"
        host, _, port = str(listen).rpartition(":")
        host = host.strip("[]")
        if host in ("", "0.0.0.0", "::"):
            host = "127.0.0.1"
        return f"http://{host}:{port}"

    def register(self, agent: str, srv: Server, headers: dict[str, str], warnings: list[str]) -> str | None:
        url, _ = to_airlock_ref(srv.url or "")
        if not url.startswith(("http://", "https://", "${")):
            warnings.append(f"{agent}: {srv.name} has URL {srv.url!r}, not http(s); left unchanged")
            return None
        existing = self.doc.get(["mcp_servers"]) or {}
        same_url = [n for n, spec in existing.items() if isinstance(spec, dict) and spec.get("url") == url]
        if same_url:                        # one Airlock entry per upstream, whoever registered it first
            return same_url[0]
        base = safe_name(srv.name)
        candidates = [base, f"{safe_name(agent)}-{base}"] + [f"{safe_name(agent)}-{base}-{i}" for i in range(2, 50)]
        for name in candidates:
            cur = existing.get(name)
            if cur is None:
                break
            if isinstance(cur, dict) and cur.get("url") == url:
                return name                 # already registered (another agent, or an earlier run)
        kept: dict[str, str] = {}
        for h, v in headers.items():
            kind = classify_header(h, v)
            if kind == "ref":
                kept[h] = to_airlock_ref(v)[0]
            elif kind == "plain":
                kept[h] = v
            elif kind == "unportable":
                warnings.append(f"{agent}: {srv.name}: header {h} uses an editor-only variable; not copied to "
                                f"{self.path} - add it under mcp_servers.{name}.headers as ${{ENV}}")
            elif self.move_secrets:
                kept[h] = v
                warnings.append(f"{agent}: {srv.name}: moved the literal {h} header value into {self.path} "
                                "(--move-secrets)")
            else:
                warnings.append(f"{agent}: {srv.name}: header {h} holds a literal secret; not copied. Put it in an "
                                f"env var and add it under mcp_servers.{name}.headers in {self.path} as "
                                "\"${VAR}\", or rerun with --move-secrets")
        spec: dict = {"url": url}
        if kept:
            spec["headers"] = kept
        if srv.transport == "sse":
            warnings.append(f"{agent}: {srv.name} is a legacy SSE server; the agent now talks Streamable HTTP "
                            "to Airlock's /mcp/" + name)
        self.doc.set(["mcp_servers", name], spec)
        return name


_SECRET_KV = re.compile(r"""(?P<k>["']?[\w.-]*(?:auth|token|key|secret|passw|credential)[\w.-]*["']?\s*[:=]\s*)"""
                        r"""(?P<q>["']?)(?P<v>[^"'\s,}]+)""", re.I)
_BEARER = re.compile(r"(Bearer\s+)([^\s\"',}]+)")


def _redact_line(line: str) -> str:
    """Mask literal secret values in a diff line; env references and the placeholder stay readable."""
    def keep(v: str) -> bool:
        return ("${" in v or "{env:" in v or v == PLACEHOLDER_TOKEN or v.startswith("$")
                or v in ("Bearer", "Basic") or re.fullmatch(r"[A-Z_][A-Z0-9_]*", v) is not None)

    line = _SECRET_KV.sub(lambda m: m.group(0) if keep(m.group("v")) else
                          f"{m.group('k')}{m.group('q')}<redacted>", line)
    return _BEARER.sub(lambda m: m.group(0) if keep(m.group(2)) else f"{m.group(1)}<redacted>", line)


def _diff(path: Path, old: bytes | None, new: bytes) -> str:
    """A unified diff with literal secrets masked (it is printed, and may end up in logs)."""
    a = (old or b"").decode("utf-8").splitlines(keepends=True)
    b = new.decode("utf-8").splitlines(keepends=True)
    lines = difflib.unified_diff(a, b, fromfile=str(path) if old is not None else "/dev/null", tofile=str(path))
    return "".join(_redact_line(x) for x in lines)


def _run(agent: Agent, home: Path, project: Path | None, ctx: Ctx):
    files, warnings = load_files(agent, home, project)
    agent.onboard(files, ctx)
    return files, warnings


def onboard(home: Path, project: Path | None, config_path: Path, *, agents: list[str] | None = None,
            gateway: str | None = None, airlock: str, global_args: list[str],
            mint: Callable[[str], str] | None = None, dry_run: bool = False,
            move_secrets: bool = False, account: str | None = None) -> tuple[list[AgentResult], list[str]]:
    """Returns (per-agent results, diffs of Airlock's own config)."""
    unknown = [a for a in agents or [] if a not in AGENTS]
    if unknown:
        raise OnboardError(f"unknown agent {', '.join(unknown)}; known: {', '.join(AGENTS)}")
    cfg = AirlockConfig(config_path, move_secrets)
    gw = (gateway or cfg.gateway_url()).rstrip("/")
    results: list[AgentResult] = []
    pending: list[tuple[str, Doc]] = []
    for name, agent in AGENTS.items():
        if agents and name not in agents:
            continue
        files, load_warnings = load_files(agent, home, project)
        if not found(files, load_warnings):
            continue
        res = AgentResult(name, warnings=list(load_warnings))
        ctx = Ctx(gateway=gw, token=PLACEHOLDER_TOKEN, airlock=airlock, global_args=global_args,
                  register=lambda a, s, h, w=res.warnings: cfg.register(a, s, h, w), agent=name, account=account)
        existing = agent.existing_token(files, ctx)
        ctx.token = existing or PLACEHOLDER_TOKEN
        ctx.warnings = res.warnings
        agent.onboard(files, ctx)
        res.actions = ctx.actions
        res.token = "reused" if existing else "placeholder"
        changed = [(loc, doc) for loc, doc in files if doc.changed]
        needs_token = any(PLACEHOLDER_TOKEN.encode() in doc.render() for _, doc in changed)
        if needs_token and not existing and not dry_run:
            if mint is None:
                raise OnboardError("no way to mint a gateway token")
            ctx.token, res.token = mint(name), "minted"
            ctx.actions, ctx.warnings, ctx.extra_env = [], [], {}
            files, _ = _run(agent, home, project, ctx)
            changed = [(loc, doc) for loc, doc in files if doc.changed]
        if not needs_token:
            res.token = "reused" if existing else "none"
        for loc, doc in changed:
            if loc.scope == "project":
                res.warnings.append(f"{name}: {loc.path} is a project file (often committed); it now names this "
                                    "machine's airlock binary and config: review before committing")
            res.changed_files.append(str(loc.path))
            res.diffs.append(_diff(loc.path, doc.original, doc.render()))
            pending.append((name, doc))
        results.append(res)
    cfg_diffs = []
    if cfg.doc.changed:
        cfg_diffs.append(_diff(cfg.path, cfg.doc.original, cfg.doc.render()))
        pending.append(("airlock", cfg.doc))
    if not dry_run and pending:
        backups = Backups(home)
        for agent_name, doc in pending:
            backups.save(doc.path, doc.original, agent_name)
        for _, doc in pending:
            write_atomic(doc.path, doc.render())
    return results, cfg_diffs
