"""The shape every agent module fills in, and the rewrite loop they share.

An agent module says where its files are (:meth:`Agent.locations`), how to read an
MCP entry (:meth:`Agent.parse`) and, where its syntax differs from the common
``command/args/env`` + ``url/headers`` shape, how to rewrite one. The loop here
walks every server, skips the ones already pointing at Airlock, wraps stdio servers
with ``airlock mcp wrap`` and points remote ones at ``<gateway>/mcp/<name>``.
"""
from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from .docs import Doc
from .model import Location, Server, safe_name

Files = list[tuple[Location, Doc]]


def relocated(home: Path, env_var: str, default: Path) -> Path:
    """An agent's config dir moved by an env var (CODEX_HOME, ...), honoured only when scanning the
    real home: an explicit ``--home`` tree is taken as it is."""
    value = os.environ.get(env_var)
    if value and home.absolute() == Path.home().absolute():
        return Path(value).expanduser().absolute()
    return default


@dataclass
class Ctx:
    """Everything an agent needs to rewrite its files for one onboarding."""
    gateway: str                              # http://127.0.0.1:8787 (no trailing slash)
    token: str
    airlock: str                              # absolute path of the airlock CLI
    global_args: list[str]                    # e.g. ["-c", "/abs/airlock.yaml"]: where wrap/hook find Airlock
    register: Callable[[str, Server, dict[str, str]], str | None]   # -> name under Airlock's /mcp/
    agent: str = ""                           # passed to ``mcp wrap --agent`` for policy and audit
    account: str | None = None
    warnings: list[str] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)   # agent env vars the rewrite relies on

    @property
    def openai_base(self) -> str:
        return f"{self.gateway}/openai/v1"

    @property
    def anthropic_base(self) -> str:
        return f"{self.gateway}/anthropic"

    def mcp_url(self, name: str) -> str:
        return f"{self.gateway}/mcp/{name}"

    def is_ours_url(self, url: str | None) -> bool:
        return bool(url) and url.startswith(f"{self.gateway}/")

    @staticmethod
    def is_wrapped(command: str | None, args: list) -> bool:
        if not command or os.path.basename(command) != "airlock":
            return False
        head = [str(a) for a in args[:args.index("--")]] if "--" in args else [str(a) for a in args]
        return any(head[i:i + 2] == ["mcp", "wrap"] for i in range(len(head)))

    def wrap_args(self, name: str, command: str, args: list) -> list[str]:
        who = ["--agent", self.agent] if self.agent else []
        who += ["--account", self.account] if self.account else []
        # no literal token here: the entry may sit in a committed project file; ``mcp wrap`` reads the
        # agent's AIRLOCK_TOKEN from its environment (set by onboarding where the agent has an env block)
        return [*self.global_args, "mcp", "wrap", "--server", safe_name(name), *who, "--", command,
                *[str(a) for a in args]]

    def hook_command(self, kind: str) -> str:
        return " ".join(shlex.quote(x) for x in [self.airlock, *self.global_args, *self._token_args(), "hook", kind])

    def _token_args(self) -> list[str]:
        """The agent's own gateway token, so hooks need no admin token (hooks live in user-level files)."""
        return ["--token", self.token] if self.token else []

    def bearer(self) -> str:
        return f"Bearer {self.token}"


class Agent:
    name = ""
    container: list = ["mcpServers"]        # where the server map lives in an "mcp" file
    url_keys: tuple[str, ...] = ("url",)
    headers_key = "headers"
    rewrite_url_key: str | None = None     # None: keep whichever url key the entry used
    remote_set: dict[str, Any] = {}          # extra keys written on a rewritten remote entry
    remote_drop: tuple[str, ...] = ("headersHelper", "oauth")
    default_model: dict[str, str | None] = {"provider": None, "base_url": None}

    # -- to fill in ----------------------------------------------------------------------
    def locations(self, home: Path, project: Path | None) -> list[Location]:
        raise NotImplementedError

    def parse(self, name: str, entry: dict, loc: Location) -> Server | None:
        """The common ``command``/``url`` shape (Claude, Cursor, Windsurf, VS Code...)."""
        url = next((entry[k] for k in self.url_keys if isinstance(entry.get(k), str)), None)
        typ = str(entry.get("type") or "").lower()
        if entry.get("command") is not None and typ in ("", "stdio", "local"):
            transport = "stdio"
        elif typ == "sse":
            transport = "sse"
        elif typ == "ws":
            transport = "ws"
        elif url:
            transport = "http"
        else:
            return None
        return Server(name=name, transport=transport, source_file=str(loc.path), key_path=[],
                      command=entry.get("command") if transport == "stdio" else None,
                      args=[str(a) for a in entry.get("args") or []] if transport == "stdio" else [],
                      url=url if transport != "stdio" else None,
                      disabled=bool(entry.get("disabled")) or entry.get("enabled") is False,
                      headers={str(k): str(v) for k, v in (entry.get(self.headers_key) or {}).items()},
                      env={str(k): str(v) for k, v in (entry.get("env") or {}).items()}, scope=loc.scope)

    def containers(self, loc: Location, doc: Doc) -> Iterator[list]:
        if loc.role == "mcp":
            yield list(self.container)

    def model(self, files: Files) -> dict[str, str | None]:
        return dict(self.default_model)

    def onboard_model(self, files: Files, ctx: Ctx) -> None:
        """Point model traffic at the gateway; default: not file-configurable."""
        ctx.warnings.append(f"{self.name}: model routing is not file-configurable; "
                            "use HTTPS_PROXY with Airlock's proxy listener and CA")

    def install_hooks(self, files: Files, ctx: Ctx) -> None:
        return None

    def disabled_names(self, files: Files, loc: Location) -> set[str]:
        return set()

    # -- shared --------------------------------------------------------------------------
    def servers(self, files: Files) -> list[Server]:
        out: list[Server] = []
        for loc, doc in files:
            if not doc.exists:
                continue
            off = self.disabled_names(files, loc)
            for cpath in self.containers(loc, doc):
                entries = doc.get(cpath)
                if not isinstance(entries, dict):
                    continue
                for name, entry in entries.items():
                    if not isinstance(entry, dict):
                        continue
                    srv = self.parse(str(name), entry, loc)
                    if srv is None:
                        continue
                    srv.key_path = [*cpath, name]
                    srv.disabled = srv.disabled or name in off
                    out.append(srv)
        return out

    def existing_token(self, files: Files, ctx: Ctx) -> str | None:
        """A token this agent already carries from an earlier onboarding (reused, not re-minted)."""
        for srv in self.servers(files):
            if srv.transport != "stdio" and ctx.is_ours_url(srv.url):
                auth = srv.headers.get("Authorization") or srv.headers.get("authorization") or ""
                if auth.startswith("Bearer ") and "{" not in auth:
                    return auth[7:]
        return None

    def onboard(self, files: Files, ctx: Ctx) -> None:
        docs = {str(loc.path): doc for loc, doc in files}
        for srv in self.servers(files):
            doc = docs[srv.source_file]
            entry = doc.get(srv.key_path)
            if srv.transport == "stdio":
                if Ctx.is_wrapped(srv.command, srv.args):
                    continue
                self.wrap_stdio(doc, srv, entry, ctx)
                ctx.actions.append(f"wrapped stdio server {srv.name} ({srv.source_file})")
            elif srv.transport in ("http", "sse"):
                if ctx.is_ours_url(srv.url):
                    continue
                name = ctx.register(self.name, srv, self.upstream_headers(srv, entry))
                if name is None:
                    continue
                self.point_remote(doc, srv, entry, ctx, ctx.mcp_url(name))
                ctx.actions.append(f"routed {srv.transport} server {srv.name} -> /mcp/{name} ({srv.source_file})")
            else:
                ctx.warnings.append(f"{self.name}: {srv.name} uses the {srv.transport} transport, which "
                                    "Airlock cannot proxy; left unchanged")
        self.onboard_model(files, ctx)
        self.install_hooks(files, ctx)

    def upstream_headers(self, srv: Server, entry: dict) -> dict[str, str]:
        return dict(srv.headers)

    def wrap_stdio(self, doc: Doc, srv: Server, entry: dict, ctx: Ctx) -> None:
        doc.set([*srv.key_path, "command"], ctx.airlock)
        doc.set([*srv.key_path, "args"], ctx.wrap_args(srv.name, srv.command or "", srv.args))

    def point_remote(self, doc: Doc, srv: Server, entry: dict, ctx: Ctx, url: str) -> None:
        used = self.rewrite_url_key or next((k for k in self.url_keys if k in entry), self.url_keys[0])
        for k in self.url_keys:
            if k != used and k in entry:
                doc.delete([*srv.key_path, k])
        for k in self.remote_drop:
            doc.delete([*srv.key_path, k])
        doc.set([*srv.key_path, used], url)
        for k, v in self.remote_set.items():
            doc.set([*srv.key_path, k], v)
        doc.set([*srv.key_path, self.headers_key], {"Authorization": self.auth_header(srv, ctx)})

    def auth_header(self, srv: Server, ctx: Ctx) -> str:
        """The Authorization value a rewritten remote entry sends (a literal token by default)."""
        if srv.scope == "project":
            ctx.warnings.append(f"{self.name}: {srv.source_file} is a project file (often committed) and now "
                                "holds this machine's gateway token for " + srv.name + "; keep it out of git")
        return ctx.bearer()


def add_hook(doc: Doc, event_path: list, entry: dict, mark: str) -> bool:
    """Append a hook group unless one whose command contains ``mark`` is already there."""
    groups = doc.get(event_path) or []
    if not isinstance(groups, list):
        return False
    for g in groups:
        for h in (g.get("hooks") or [g]) if isinstance(g, dict) else []:
            if isinstance(h, dict) and mark in str(h.get("command", "")):
                return False
    doc.set(event_path, [*groups, entry])
    return True
