"""Zed: ``~/.config/zed/settings.json`` and ``<project>/.zed/settings.json`` (JSON with comments and
trailing commas). Servers under ``context_servers``: ``{"source": "custom", "command", "args",
"env"}``, the legacy ``{"command": {"path", "args", "env"}}``, or remote ``{"url", "headers"}``;
extension-provided servers (``"source": "extension"``) are launched by their extension and are
not listed. Model URLs: ``language_models.{anthropic,openai}.api_url`` (keys live in the OS keychain)."""
from __future__ import annotations

from pathlib import Path

from .base import Agent, Ctx, Files
from .model import Location, Server


class Zed(Agent):
    name = "zed"
    container = ["context_servers"]

    def locations(self, home: Path, project: Path | None) -> list[Location]:
        locs = [Location(home / ".config" / "zed" / "settings.json", "jsonc", "mcp")]
        if project:
            locs.append(Location(project / ".zed" / "settings.json", "jsonc", "mcp", "project"))
        return locs

    def parse(self, name, entry, loc):
        common = dict(name=name, source_file=str(loc.path), key_path=[], scope=loc.scope,
                      disabled=entry.get("enabled") is False)
        cmd = entry.get("command")
        if isinstance(cmd, dict):                                  # legacy shape
            return Server(transport="stdio", command=str(cmd.get("path")), args=[str(a) for a in cmd.get("args") or []],
                          env={str(k): str(v) for k, v in (cmd.get("env") or {}).items()}, **common)
        if isinstance(cmd, str):
            return Server(transport="stdio", command=cmd, args=[str(a) for a in entry.get("args") or []],
                          env={str(k): str(v) for k, v in (entry.get("env") or {}).items()}, **common)
        if isinstance(entry.get("url"), str):
            return Server(transport="http", url=entry["url"],
                          headers={str(k): str(v) for k, v in (entry.get("headers") or {}).items()}, **common)
        return None

    def wrap_stdio(self, doc, srv, entry, ctx):
        if isinstance(entry.get("command"), dict):
            doc.set([*srv.key_path, "command", "path"], ctx.airlock)
            doc.set([*srv.key_path, "command", "args"], ctx.wrap_args(srv.name, srv.command or "", srv.args))
        else:
            super().wrap_stdio(doc, srv, entry, ctx)

    def model(self, files: Files) -> dict:
        for pid in ("anthropic", "openai"):
            for loc, doc in files:
                url = doc.get(["language_models", pid, "api_url"]) if doc.exists else None
                if url:
                    return {"provider": pid, "base_url": url}
        return {"provider": None, "base_url": None}

    def onboard_model(self, files: Files, ctx: Ctx) -> None:
        ctx.warnings.append(f"{self.name}: model API keys live in the OS keychain, so the gateway token cannot be "
                            "written to a file; use HTTPS_PROXY with Airlock's proxy listener and CA")
