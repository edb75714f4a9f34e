"""Cline (VS Code extension and CLI): ``cline_mcp_settings.json`` under the extension's global
storage (``~/.config/Code/User/globalStorage/saoudrizwan.claude-dev/settings/``) or the CLI's
``~/.cline/data/settings/``; ``mcpServers`` with ``type`` stdio / sse / streamableHttp (a bare
``url`` is SSE in older versions), ``disabled``. Provider keys live in VS Code secret storage."""
from __future__ import annotations

from pathlib import Path

from .base import Agent
from .model import Location

_STORAGE = Path(".config") / "Code" / "User" / "globalStorage"


class Cline(Agent):
    name = "cline"
    remote_set = {"type": "streamableHttp"}

    def locations(self, home: Path, project: Path | None) -> list[Location]:
        return [Location(home / _STORAGE / "saoudrizwan.claude-dev" / "settings" / "cline_mcp_settings.json",
                         "json", "mcp"),
                Location(home / ".cline" / "data" / "settings" / "cline_mcp_settings.json", "json", "mcp", "cli")]

    def parse(self, name, entry, loc):
        srv = super().parse(name, entry, loc)
        if srv and srv.transport == "http" and str(entry.get("type", "")).lower() != "streamablehttp":
            srv.transport = "sse"
        return srv
