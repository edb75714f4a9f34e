"""Claude Desktop: ``claude_desktop_config.json`` (Linux ~/.config/Claude, macOS
~/Library/Application Support/Claude); ``mcpServers`` in the Claude Code shape, mostly stdio
(remote servers are bridged with ``npx mcp-remote URL``, itself a stdio command we wrap)."""
from __future__ import annotations

from pathlib import Path

from .base import Agent
from .model import Location


class ClaudeDesktop(Agent):
    name = "claude-desktop"
    default_model = {"provider": "anthropic", "base_url": None}   # hosted by the app, not configurable
    remote_set = {"type": "http"}

    def locations(self, home: Path, project: Path | None) -> list[Location]:
        return [Location(home / ".config" / "Claude" / "claude_desktop_config.json", "json", "mcp"),
                Location(home / "Library" / "Application Support" / "Claude" / "claude_desktop_config.json",
                         "json", "mcp", "macos")]
