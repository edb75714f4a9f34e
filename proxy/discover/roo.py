"""Roo Code: ``mcp_settings.json`` under the extension's global storage
(``rooveterinaryinc.roo-cline/settings/``) and ``<project>/.roo/mcp.json`` (project wins);
``mcpServers`` with ``type`` stdio / sse / streamable-http, ``disabled``, ``${env:VAR}``."""
from __future__ import annotations

from pathlib import Path

from .base import Agent
from .model import Location


class Roo(Agent):
    name = "roo"
    remote_set = {"type": "streamable-http"}

    def locations(self, home: Path, project: Path | None) -> list[Location]:
        locs = [Location(home / ".config" / "Code" / "User" / "globalStorage" / "rooveterinaryinc.roo-cline" /
                         "settings" / "mcp_settings.json", "json", "mcp")]
        if project:
            locs.append(Location(project / ".roo" / "mcp.json", "json", "mcp", "project"))
        return locs
