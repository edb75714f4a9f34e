"""Cursor: ``~/.cursor/mcp.json`` and ``<project>/.cursor/mcp.json``; ``mcpServers`` with
optional ``type`` (stdio/http/sse/streamableHttp); ``${env:NAME}`` interpolation. Model base URL
and keys live in the app's SQLite state, so model traffic goes through HTTPS_PROXY instead."""
from __future__ import annotations

from pathlib import Path

from .base import Agent
from .model import Location


class Cursor(Agent):
    name = "cursor"

    def locations(self, home: Path, project: Path | None) -> list[Location]:
        locs = [Location(home / ".cursor" / "mcp.json", "jsonc", "mcp")]
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
