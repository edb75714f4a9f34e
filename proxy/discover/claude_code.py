"""Claude Code: ``~/.claude.json`` (user + per-project "local" scope), ``.mcp.json``
(project scope), ``settings.json`` files (model ``env``, hooks, MCP approval lists)."""
from __future__ import annotations

from pathlib import Path

from .base import Agent, Ctx, Files, add_hook, relocated
from .model import Location, Server

HOOK_MARK = "hook claude-code"
TOKEN_ENV = "AIRLOCK_TOKEN"


class ClaudeCode(Agent):
    name = "claude-code"
    default_model = {"provider": "anthropic", "base_url": "https://api.anthropic.com"}
    remote_set = {"type": "http"}

    def locations(self, home: Path, project: Path | None) -> list[Location]:
        cfg = relocated(home, "CLAUDE_CONFIG_DIR", home / ".claude")   # moves .claude.json along
        state = cfg / ".claude.json" if cfg != home / ".claude" else home / ".claude.json"
        locs = [Location(state, "json", "state"), Location(cfg / "settings.json", "json", "settings", create=True)]
        if project:
            locs += [Location(project / ".mcp.json", "json", "mcp", "project"),
                     Location(project / ".claude" / "settings.json", "json", "settings", "project"),
                     Location(project / ".claude" / "settings.local.json", "json", "settings", "project")]
        return locs

    def containers(self, loc, doc):
        if loc.role == "mcp":
            yield ["mcpServers"]
        elif loc.role == "state":
            yield ["mcpServers"]
            for p, proj in (doc.get(["projects"]) or {}).items():
                if isinstance(proj, dict) and isinstance(proj.get("mcpServers"), dict):
                    yield ["projects", p, "mcpServers"]

    def servers(self, files: Files) -> list[Server]:
        out = super().servers(files)
        for s in out:
            if s.key_path[0] == "projects":
                s.scope = "local"
        return out

    def disabled_names(self, files: Files, loc: Location) -> set[str]:
        off: set[str] = set()
        for l2, doc in files:
            if l2.role == "settings" and doc.exists and loc.role == "mcp":
                off |= set(doc.get(["disabledMcpjsonServers"]) or [])
            if l2.role == "state" and doc.exists:
                for proj in (doc.get(["projects"]) or {}).values():
                    if isinstance(proj, dict):
                        off |= set(proj.get("disabledMcpServers") or [])
                        if loc.role == "mcp":
                            off |= set(proj.get("disabledMcpjsonServers") or [])
        return off

    def _settings(self, files: Files) -> list:
        return [(loc, doc) for loc, doc in files if loc.role == "settings"]

    def model(self, files: Files) -> dict:
        base = None
        for loc, doc in self._settings(files):     # user first, project files override
            base = (doc.get(["env"]) or {}).get("ANTHROPIC_BASE_URL") or base
        return {"provider": "anthropic", "base_url": base or self.default_model["base_url"]}

    def existing_token(self, files: Files, ctx: Ctx) -> str | None:
        for loc, doc in self._settings(files):
            env = doc.get(["env"]) or {}
            if ctx.is_ours_url(env.get("ANTHROPIC_BASE_URL")) and env.get("ANTHROPIC_AUTH_TOKEN"):
                return str(env["ANTHROPIC_AUTH_TOKEN"])
        return super().existing_token(files, ctx)

    def auth_header(self, srv: Server, ctx: Ctx) -> str:
        """Project ``.mcp.json`` is usually committed: reference the token, set it in user settings."""
        if srv.scope == "project":
            ctx.extra_env[TOKEN_ENV] = ctx.token
            return "Bearer ${" + TOKEN_ENV + "}"
        return ctx.bearer()

    def onboard_model(self, files: Files, ctx: Ctx) -> None:
        for loc, doc in self._settings(files):
            env = doc.get(["env"]) or {}
            if loc.scope != "user" and "ANTHROPIC_BASE_URL" not in env:
                continue                      # project files that don't route keep inheriting ours
            if not doc.exists and loc.scope != "user":
                continue
            doc.set(["env", "ANTHROPIC_BASE_URL"], ctx.anthropic_base)
            doc.set(["env", "ANTHROPIC_AUTH_TOKEN"], ctx.token)
            if loc.scope == "user":
                for k, v in ctx.extra_env.items():
                    doc.set(["env", k], v)
            if "ANTHROPIC_API_KEY" in env:
                doc.delete(["env", "ANTHROPIC_API_KEY"])
                ctx.warnings.append(f"{self.name}: removed ANTHROPIC_API_KEY from {loc.path} (kept in the "
                                    "backup); give Airlock the provider key via providers.anthropic.api_key_env")
            if env.get("ANTHROPIC_BASE_URL") != ctx.anthropic_base:
                ctx.actions.append(f"model traffic -> {ctx.anthropic_base} ({loc.path})")

    def install_hooks(self, files: Files, ctx: Ctx) -> None:
        user = next(((loc, doc) for loc, doc in self._settings(files) if loc.scope == "user"), None)
        if user is None:
            return
        loc, doc = user
        entry = {"matcher": "*", "hooks": [{"type": "command", "command": ctx.hook_command("claude-code")}]}
        if add_hook(doc, ["hooks", "PreToolUse"], entry, HOOK_MARK):
            ctx.actions.append(f"installed PreToolUse hook -> Airlock /v1/check ({loc.path})")
