"""OpenAI Codex CLI: ``~/.codex/config.toml`` (+ profile files ``~/.codex/<name>.config.toml``) and
a trusted project's ``.codex/config.toml``. Servers are ``[mcp_servers.<name>]`` tables: ``command``
(stdio) or ``url`` (Streamable HTTP; no SSE) with ``http_headers``, ``bearer_token_env_var`` and
``env_http_headers``; ``enabled = false``. Model: ``model_provider`` + ``[model_providers.<id>]``
``base_url`` (or top-level ``openai_base_url``); a project file cannot set ``model_provider``."""
from __future__ import annotations

from pathlib import Path

from .base import Agent, Ctx, Files, relocated
from .model import Location, Server

PROVIDER_ID = "airlock"


class Codex(Agent):
    name = "codex"
    container = ["mcp_servers"]
    headers_key = "http_headers"
    remote_drop = ("bearer_token_env_var", "env_http_headers", "headers", "oauth", "bearer_token")
    default_model = {"provider": "openai", "base_url": "https://api.openai.com/v1"}

    def locations(self, home: Path, project: Path | None) -> list[Location]:
        c = relocated(home, "CODEX_HOME", home / ".codex")
        locs = [Location(c / "config.toml", "toml", "mcp")]
        if c.is_dir():
            locs += [Location(p, "toml", "mcp", "profile") for p in sorted(c.glob("*.config.toml"))]
        if project:
            locs.append(Location(project / ".codex" / "config.toml", "toml", "mcp", "project"))
        return locs

    def parse(self, name, entry, loc):
        common = dict(name=name, source_file=str(loc.path), key_path=[], scope=loc.scope,
                      disabled=entry.get("enabled") is False)
        if entry.get("command"):
            env = {str(k): str(v) for k, v in (entry.get("env") or {}).items()}
            env.update({str(n): "" for n in entry.get("env_vars") or []})
            return Server(transport="stdio", command=str(entry["command"]),
                          args=[str(a) for a in entry.get("args") or []], env=env, **common)
        if isinstance(entry.get("url"), str):
            return Server(transport="http", url=entry["url"], headers=self._headers(entry), **common)
        return None

    @staticmethod
    def _headers(entry: dict) -> dict[str, str]:
        h = {str(k): str(v) for k, v in (entry.get("http_headers") or {}).items()}
        for k, var in (entry.get("env_http_headers") or {}).items():
            h[str(k)] = "${" + str(var) + "}"
        if entry.get("bearer_token_env_var"):
            h["Authorization"] = "Bearer ${" + str(entry["bearer_token_env_var"]) + "}"
        return h

    def model(self, files: Files) -> dict:
        for loc, doc in files:
            if loc.scope != "user" or not doc.exists:
                continue
            pid = doc.get(["model_provider"]) or "openai"
            base = doc.get(["model_providers", pid, "base_url"])
            if base is None and pid == "openai":
                base = doc.get(["openai_base_url"]) or self.default_model["base_url"]
            return {"provider": pid, "base_url": base}
        return dict(self.default_model)

    def existing_token(self, files: Files, ctx: Ctx) -> str | None:
        for loc, doc in files:
            auth = doc.get(["model_providers", PROVIDER_ID, "http_headers", "Authorization"]) or ""
            if ctx.is_ours_url(doc.get(["model_providers", PROVIDER_ID, "base_url"])) and auth.startswith("Bearer "):
                return auth[7:]
        return super().existing_token(files, ctx)

    def onboard_model(self, files: Files, ctx: Ctx) -> None:
        for loc, doc in files:
            if loc.scope != "user":
                continue
            want = {"name": "Airlock", "base_url": ctx.openai_base, "wire_api": "responses",
                    "http_headers": {"Authorization": ctx.bearer()}}
            cur = doc.get(["model_providers", PROVIDER_ID])
            if cur != want:
                if cur is None:
                    doc.append_table(["model_providers", PROVIDER_ID], want)
                else:
                    for k, v in want.items():
                        doc.set(["model_providers", PROVIDER_ID, k], v)
            if doc.set(["model_provider"], PROVIDER_ID):
                ctx.actions.append(f"model traffic -> {ctx.openai_base} ({loc.path})")
