"""Windsurf (Cascade): one global ``~/.codeium/windsurf/mcp_config.json`` (Windsurf Next:
``~/.codeium/windsurf-next/``); remote servers use ``serverUrl`` (``url`` also accepted);
``disabled: true`` turns one off; ``${env:VAR}`` interpolation. Models are Codeium-hosted."""
from __future__ import annotations

from pathlib import Path

from .base import Agent
from .model import Location


class Windsurf(Agent):
    name = "windsurf"
    url_keys = ("serverUrl", "url")

    def locations(self, home: Path, project: Path | None) -> list[Location]:
        return [Location(home / ".codeium" / "windsurf" / "mcp_config.json", "jsonc", "mcp"),
                Location(home / ".codeium" / "windsurf-next" / "mcp_config.json", "jsonc", "mcp", "next")]
