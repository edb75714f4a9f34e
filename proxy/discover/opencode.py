"""OpenCode: ``~/.config/opencode/opencode.json[c]`` (legacy ``config.json``), project
``opencode.json[c]`` and ``.opencode/opencode.json[c]``; JSONC. Servers live under ``mcp``:
``{"type": "local", "command": [cmd, *args], "environment": {...}}`` or ``{"type": "remote",
"url", "headers"}``; ``enabled: false`` turns one off; ``{env:VAR}`` substitution. Models:
``provider.<id>.options.baseURL`` / ``apiKey`` and ``model: "<provider>/<model>"``."""
from __future__ import annotations

from pathlib import Path

from .base import Agent, Ctx, Files
from .model import Location, Server

_OPENAI_NPM = ("@ai-sdk/openai", "@ai-sdk/openai-compatible")
_DEFAULT_BASE = {"openai": "https://api.openai.com/v1", "anthropic": "https://api.anthropic.com/v1"}


class OpenCode(Agent):
    name = "opencode"
    container = ["mcp"]
    remote_drop = ("oauth",)

    def locations(self, home: Path, project: Path | None) -> list[Location]:
        g = home / ".config" / "opencode"
        locs = [Location(g / "opencode.json", "jsonc", "mcp"), Location(g / "opencode.jsonc", "jsonc", "mcp"),
                Location(g / "config.json", "jsonc", "mcp", "legacy")]
        if project:
            for d in (project, project / ".opencode"):
                locs += [Location(d / "opencode.json", "jsonc", "mcp", "project"),
                         Location(d / "opencode.jsonc", "jsonc", "mcp", "project")]
        return locs

    def parse(self, name, entry, loc):
        typ = entry.get("type")
        common = dict(name=name, source_file=str(loc.path), key_path=[], scope=loc.scope,
                      disabled=entry.get("enabled") is False)
        if typ == "local" and isinstance(entry.get("command"), list) and entry["command"]:
            cmd = [str(c) for c in entry["command"]]
            return Server(transport="stdio", command=cmd[0], args=cmd[1:],
                          env={str(k): str(v) for k, v in (entry.get("environment") or {}).items()}, **common)
        if typ == "remote" and isinstance(entry.get("url"), str):
            return Server(transport="http", url=entry["url"],
                          headers={str(k): str(v) for k, v in (entry.get("headers") or {}).items()}, **common)
        return None

    def wrap_stdio(self, doc, srv, entry, ctx):
        doc.set([*srv.key_path, "command"], [ctx.airlock, *ctx.wrap_args(srv.name, srv.command or "", srv.args)])

    def _providers(self, files: Files):
        for loc, doc in files:
            if doc.exists:
                for pid, spec in (doc.get(["provider"]) or {}).items():
                    if isinstance(spec, dict):
                        yield loc, doc, pid, spec

    @staticmethod
    def _kind(pid: str, spec: dict) -> str | None:
        npm = spec.get("npm")
        if pid == "anthropic" or npm == "@ai-sdk/anthropic":
            return "anthropic"
        if pid == "openai" or npm in _OPENAI_NPM:
            return "openai"
        return None

    def _model_id(self, files: Files) -> str | None:
        mid = None
        for loc, doc in files:
            if doc.exists and isinstance(doc.get(["model"]), str):
                mid = doc.get(["model"]).split("/", 1)[0]
        return mid

    def model(self, files: Files) -> dict:
        pid = self._model_id(files)
        base = None
        for _, _, p, spec in self._providers(files):
            if pid is None or p == pid:
                pid = p
                base = (spec.get("options") or {}).get("baseURL") or base
        return {"provider": pid, "base_url": base or _DEFAULT_BASE.get(pid or "")}

    def existing_token(self, files: Files, ctx: Ctx) -> str | None:
        for _, _, _, spec in self._providers(files):
            opts = spec.get("options") or {}
            if ctx.is_ours_url(opts.get("baseURL")) and opts.get("apiKey"):
                return str(opts["apiKey"])
        return super().existing_token(files, ctx)

    def onboard_model(self, files: Files, ctx: Ctx) -> None:
        seen = set()
        for loc, doc, pid, spec in list(self._providers(files)):
            kind = self._kind(pid, spec)
            if kind is None:
                ctx.warnings.append(f"{self.name}: provider {pid} is neither OpenAI- nor Anthropic-compatible; "
                                    "left unchanged")
                continue
            seen.add(pid)
            self._route(doc, loc, pid, kind, ctx)
        pid = self._model_id(files)
        if pid in ("openai", "anthropic") and pid not in seen:
            loc, doc = next((l, d) for l, d in files if d.exists and isinstance(d.get(["model"]), str))
            self._route(doc, loc, pid, pid, ctx)

    def _route(self, doc, loc, pid: str, kind: str, ctx: Ctx) -> None:
        base = ctx.openai_base if kind == "openai" else ctx.anthropic_base + "/v1"
        if doc.set(["provider", pid, "options", "baseURL"], base):
            ctx.actions.append(f"model provider {pid} -> {base} ({loc.path})")
        doc.set(["provider", pid, "options", "apiKey"], ctx.token)
