"""Gemini CLI: ``~/.gemini/settings.json`` and ``<project>/.gemini/settings.json`` (JSON with
comments), ``mcpServers`` with ``command`` / ``httpUrl`` / ``url`` + ``type``; servers turned off
with ``gemini mcp disable`` are listed in ``~/.gemini/mcp-server-enablement.json`` (lower-cased
names); extensions add servers in ``~/.gemini/extensions/*/gemini-extension.json``; the model base URL is ``GOOGLE_GEMINI_BASE_URL`` in ``~/.gemini/.env``. Airlock's gateway
speaks the OpenAI and Anthropic wire formats, so Gemini's own API is left alone (warned). Native
tools are checked by a ``BeforeTool`` hook in the user settings."""
from __future__ import annotations

from pathlib import Path

from .base import Agent, Ctx, Files, add_hook, relocated
from .model import Location


class Gemini(Agent):
    name = "gemini"
    url_keys = ("httpUrl", "url")
    rewrite_url_key = "url"
    remote_set = {"type": "http"}
    remote_drop = ("oauth", "authProviderType")
    default_model = {"provider": "gemini", "base_url": "https://generativelanguage.googleapis.com"}

    def locations(self, home: Path, project: Path | None) -> list[Location]:
        g = relocated(home, "GEMINI_CLI_HOME", home) / ".gemini"
        locs = [Location(g / "settings.json", "jsonc", "mcp"),
                Location(g / "mcp-server-enablement.json", "json", "enablement"),
                Location(g / ".env", "dotenv", "env")]
        if (g / "extensions").is_dir():    # extensions bring their own mcpServers
            locs += [Location(p, "json", "mcp", "extension")
                     for p in sorted((g / "extensions").glob("*/gemini-extension.json"))]
        if project:
            locs += [Location(project / ".gemini" / "settings.json", "jsonc", "mcp", "project"),
                     Location(project / ".gemini" / ".env", "dotenv", "env", "project")]
        return locs

    def parse(self, name, entry, loc):
        srv = super().parse(name, entry, loc)
        if srv and srv.transport == "http" and "httpUrl" in entry:
            srv.url = entry["httpUrl"]
        return srv

    def disabled_names(self, files: Files, loc: Location) -> set[str]:
        off: set[str] = set()
        for l2, doc in files:
            if l2.role == "enablement" and doc.exists:
                off |= {k for k, v in (doc.data or {}).items() if isinstance(v, dict) and v.get("enabled") is False}
            if l2.role == "mcp" and doc.exists:
                off |= {str(x).lower() for x in doc.get(["mcp", "excluded"]) or []}
        return {n for n in self._names(files) if n.lower() in off}

    def _names(self, files: Files) -> set[str]:
        return {str(n) for loc, doc in files if loc.role == "mcp" and doc.exists
                for n in (doc.get(["mcpServers"]) or {})}

    def model(self, files: Files) -> dict:
        base = None
        for loc, doc in files:
            if loc.role == "env" and doc.exists:
                base = doc.data.get("GOOGLE_GEMINI_BASE_URL") or base
        return {"provider": "gemini", "base_url": base or self.default_model["base_url"]}

    def onboard_model(self, files: Files, ctx: Ctx) -> None:
        ctx.warnings.append(f"{self.name}: the Gemini API is not one of the gateway's wire formats "
                            "(OpenAI, Anthropic); model traffic left unchanged")

    def install_hooks(self, files: Files, ctx: Ctx) -> None:
        for loc, doc in files:
            if loc.role == "mcp" and loc.scope == "user" and doc.exists:
                entry = {"matcher": ".*", "hooks": [{"type": "command", "name": "airlock",
                                                     "command": ctx.hook_command("gemini")}]}
                if add_hook(doc, ["hooks", "BeforeTool"], entry, "hook gemini"):
                    ctx.actions.append(f"installed BeforeTool hook -> Airlock /v1/check ({loc.path})")
