"""Cursor: ``~/.cursor/mcp.json`` and ``<project>/.cursor/mcp.json``; ``mcpServers`` with
optional ``type`` (stdio/http/sse/streamableHttp); ``${env:NAME}`` interpolation. Model base URL
and keys live in the app's SQLite state, so model traffic goes through HTTPS_PROXY instead. Shell
commands are checked by a ``beforeShellExecution`` hook in ``~/.cursor/hooks.json``."""
from __future__ import annotations

from pathlib import Path

from .base import Agent, Ctx, Files, add_hook
from .model import Location


class Cursor(Agent):
    name = "cursor"

    def locations(self, home: Path, project: Path | None) -> list[Location]:
        locs = [Location(home / ".cursor" / "mcp.json", "jsonc", "mcp"),
                Location(home / ".cursor" / "hooks.json", "json", "hooks", create=True)]
        if project:
            locs.append(Location(project / ".cursor" / "mcp.json", "jsonc", "mcp", "project"))
        return locs

    def parse(self, name, entry, loc):
        srv = super().parse(name, entry, loc)
        if srv and srv.transport == "http" and str(entry.get("type", "")).lower() == "sse":
            srv.transport = "sse"
        return srv

    def point_remote(self, doc, srv, entry, ctx, url):
        super().point_remote(doc, srv, entry, ctx, url)
        if "type" in entry:
            doc.set([*srv.key_path, "type"], "http")

    def install_hooks(self, files: Files, ctx: Ctx) -> None:
        for loc, doc in files:
            if loc.role != "hooks":
                continue
            if not any(d.exists for l2, d in files if l2.role == "mcp") and not doc.exists:
                return                          # Cursor not really here: do not create its files
            if doc.get(["version"]) is None:
                doc.set(["version"], 1)
            if add_hook(doc, ["hooks", "beforeShellExecution"], {"command": ctx.hook_command("cursor")},
                        "hook cursor"):
                ctx.actions.append(f"installed beforeShellExecution hook -> Airlock /v1/check ({loc.path})")
