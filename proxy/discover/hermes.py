"""Hermes Agent (Nous Research): ``~/.hermes/config.yaml`` (profiles under
``~/.hermes/profiles/<name>/config.yaml``), YAML with comments. Servers under ``mcp_servers``
(``command``/``args``/``env`` or ``url``/``headers``; ``enabled: false``). Model: ``model.provider``,
``model.base_url``, ``model.api_key``."""
from __future__ import annotations

from pathlib import Path

from .base import Agent, Ctx, Files, relocated
from .model import Location


class Hermes(Agent):
    name = "hermes"
    container = ["mcp_servers"]
    remote_drop = ("auth", "oauth")

    def locations(self, home: Path, project: Path | None) -> list[Location]:
        h = relocated(home, "HERMES_HOME", home / ".hermes")
        locs = [Location(h / "config.yaml", "yaml", "mcp")]
        if (h / "profiles").is_dir():
            locs += [Location(p, "yaml", "mcp", "profile") for p in sorted((h / "profiles").glob("*/config.yaml"))]
        return locs

    def model(self, files: Files) -> dict:
        for loc, doc in files:
            if doc.exists and loc.scope == "user":
                m = doc.get(["model"]) or {}
                if isinstance(m, dict):
                    return {"provider": m.get("provider"), "base_url": m.get("base_url")}
        return {"provider": None, "base_url": None}

    def existing_token(self, files: Files, ctx: Ctx) -> str | None:
        for loc, doc in files:
            m = doc.get(["model"]) or {}
            if isinstance(m, dict) and ctx.is_ours_url(m.get("base_url")) and m.get("api_key"):
                return str(m["api_key"])
        return super().existing_token(files, ctx)

    def onboard_model(self, files: Files, ctx: Ctx) -> None:
        for loc, doc in files:
            m = doc.get(["model"])
            if not doc.exists or not isinstance(m, dict):
                continue
            if m.get("provider") == "anthropic":
                base = ctx.anthropic_base
            else:
                base = ctx.openai_base
                if m.get("provider") not in (None, "custom", "openai"):
                    doc.set(["model", "provider"], "custom")
            if doc.set(["model", "base_url"], base):
                ctx.actions.append(f"model traffic -> {base} ({loc.path})")
            doc.set(["model", "api_key"], ctx.token)
