"""OpenClaw (ex Clawdbot/Moltbot): ``~/.openclaw/openclaw.json`` (legacy ``~/.clawdbot/clawdbot.json``),
JSON5. Servers under ``mcp.servers``: stdio ``command``/``args``/``env`` or remote ``url`` with
``transport: "streamable-http"`` (or ``type: "http"``); a bare ``url`` means SSE; ``enabled: false``.
Models: ``models.providers.<id>.baseUrl`` / ``apiKey`` / ``api`` (openai-* or anthropic-messages)."""
from __future__ import annotations

from pathlib import Path

from .base import Agent, Ctx, Files, relocated
from .model import Location


class OpenClaw(Agent):
    name = "openclaw"
    container = ["mcp", "servers"]
    remote_set = {"transport": "streamable-http"}
    remote_drop = ("oauth", "auth", "type")

    def locations(self, home: Path, project: Path | None) -> list[Location]:
        state = relocated(home, "OPENCLAW_STATE_DIR", home / ".openclaw")
        main = relocated(home, "OPENCLAW_CONFIG_PATH", state / "openclaw.json")
        return [Location(main, "json5", "mcp"), Location(home / ".clawdbot" / "clawdbot.json", "json5", "mcp", "legacy")]

    def parse(self, name, entry, loc):
        srv = super().parse(name, entry, loc)
        if srv and srv.transport != "stdio":
            http = entry.get("transport") == "streamable-http" or entry.get("type") == "http"
            srv.transport = "http" if http else "sse"
        return srv

    def _providers(self, files: Files):
        for loc, doc in files:
            if doc.exists:
                for pid, spec in (doc.get(["models", "providers"]) or {}).items():
                    if isinstance(spec, dict):
                        yield loc, doc, pid, spec

    def model(self, files: Files) -> dict:
        primary = None
        for loc, doc in files:
            if doc.exists:
                primary = doc.get(["agents", "defaults", "model", "primary"]) or primary
        pid = primary.split("/", 1)[0] if isinstance(primary, str) else None
        base = None
        for _, _, p, spec in self._providers(files):
            if pid is None or p == pid:
                pid, base = p, spec.get("baseUrl") or base
        return {"provider": pid, "base_url": base}

    def existing_token(self, files: Files, ctx: Ctx) -> str | None:
        for _, _, _, spec in self._providers(files):
            if ctx.is_ours_url(spec.get("baseUrl")) and spec.get("apiKey"):
                return str(spec["apiKey"])
        return super().existing_token(files, ctx)

    def onboard_model(self, files: Files, ctx: Ctx) -> None:
        for loc, doc, pid, spec in list(self._providers(files)):
            api = str(spec.get("api") or "")
            if api.startswith("openai"):
                base = ctx.openai_base
            elif api.startswith("anthropic"):
                base = ctx.anthropic_base
            else:
                ctx.warnings.append(f"{self.name}: provider {pid} (api {api or 'unset'}) is not an OpenAI or "
                                    "Anthropic wire format; left unchanged")
                continue
            if doc.set(["models", "providers", pid, "baseUrl"], base):
                ctx.actions.append(f"model provider {pid} -> {base} ({loc.path})")
            doc.set(["models", "providers", pid, "apiKey"], ctx.token)
