"""VS Code (Copilot agent mode): user ``Code/User/mcp.json`` and workspace ``.vscode/mcp.json``
with a top-level ``servers`` map (+ ``inputs``); legacy ``"mcp": {"servers": ...}`` inside the
user ``settings.json``. JSONC. ``${input:id}`` secrets are prompted by VS Code and cannot be
moved into Airlock. Models are configured in the UI (HTTPS_PROXY + CA instead)."""
from __future__ import annotations

from pathlib import Path

from .base import Agent
from .model import Location


class VSCode(Agent):
    name = "vscode"
    container = ["servers"]
    remote_set = {"type": "http"}

    def locations(self, home: Path, project: Path | None) -> list[Location]:
        locs = []
        for base, scope in ((home / ".config" / "Code" / "User", "user"),
                            (home / "Library" / "Application Support" / "Code" / "User", "macos")):
            locs += [Location(base / "mcp.json", "jsonc", "mcp", scope),
                     Location(base / "settings.json", "jsonc", "settings", "legacy")]
        if project:
            locs.append(Location(project / ".vscode" / "mcp.json", "jsonc", "mcp", "project"))
        return locs

    def containers(self, loc, doc):
        if loc.role == "mcp":
            yield ["servers"]
        elif isinstance(doc.get(["mcp", "servers"]), dict):
            yield ["mcp", "servers"]
