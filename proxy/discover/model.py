"""What discover reports and what onboard needs to know while it rewrites files."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PLACEHOLDER_TOKEN = "airlock-dry-run-token"
TRANSPORTS = ("stdio", "http", "sse", "ws")


@dataclass(slots=True)
class Location:
    """A config file an agent may read: ``role`` tells the agent module what it holds."""
    path: Path
    fmt: str                      # json | jsonc | json5 | toml | yaml | dotenv
    role: str                     # agent-specific: "mcp", "settings", "model", ...
    scope: str = "user"           # user | project | legacy | managed
    create: bool = False          # onboard may create it when absent


@dataclass(slots=True)
class Server:
    name: str
    transport: str                # stdio | http | sse | ws
    source_file: str
    key_path: list                # where the entry lives in its document
    command: str | None = None
    args: list[str] = field(default_factory=list)
    url: str | None = None
    disabled: bool = False
    headers: dict[str, str] = field(default_factory=dict)   # values stay internal, never printed
    env: dict[str, str] = field(default_factory=dict)
    scope: str = "user"

    def public(self) -> dict[str, Any]:
        return {"name": self.name, "transport": self.transport, "command": self.command,
                "args": list(self.args), "url": self.url, "disabled": self.disabled,
                "source_file": self.source_file, "scope": self.scope,
                "headers": sorted(self.headers), "env": sorted(self.env)}


@dataclass(slots=True)
class Report:
    agent: str
    config_files: list[str]
    mcp_servers: list[Server]
    model: dict[str, str | None]
    warnings: list[str] = field(default_factory=list)

    def public(self) -> dict[str, Any]:
        return {"agent": self.agent, "config_files": self.config_files,
                "mcp_servers": [s.public() for s in self.mcp_servers], "model": dict(self.model),
                "warnings": list(self.warnings)}


# -- env references in every agent's syntax -> Airlock's ${VAR} ----------------------------
_CONVERT = [
    re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}"),          # Cursor, Windsurf, VS Code
    re.compile(r"(?<!\$)\{env:([A-Za-z_][A-Za-z0-9_]*)\}"),      # OpenCode
    re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)"),                   # Gemini $VAR
]
_AIRLOCK_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-[^}]*)?\}")   # Claude, OpenClaw, Hermes, Airlock
_UNPORTABLE = re.compile(r"\$\{input:|\{file:|\$\{workspaceFolder|\$\{userHome")
_SECRET_NAME = re.compile(r"auth|token|key|secret|cookie|session|passw|credential", re.I)


def to_airlock_ref(value: str) -> tuple[str, bool]:
    """Rewrite env references to Airlock's ``${VAR}``; returns (value, has_reference)."""
    out = value
    for rx in _CONVERT:
        out = rx.sub(lambda m: "${" + m.group(1) + "}", out)
    return out, bool(_AIRLOCK_REF.search(out))


def classify_header(name: str, value: str) -> str:
    """"ref" (an env reference), "unportable" (${input:..}), "secret" (literal) or "plain"."""
    if _UNPORTABLE.search(value):
        return "unportable"
    if to_airlock_ref(value)[1]:
        return "ref"
    return "secret" if _SECRET_NAME.search(name) or value.lower().startswith(("bearer ", "basic ")) else "plain"


def safe_name(name: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.")
    return s or "server"
