"""Every agent Airlock knows how to discover and onboard, by name."""
from __future__ import annotations

from .base import Agent
from .claude_code import ClaudeCode
from .claude_desktop import ClaudeDesktop
from .cline import Cline
from .codex import Codex
from .cursor import Cursor
from .gemini import Gemini
from .hermes import Hermes
from .openclaw import OpenClaw
from .opencode import OpenCode
from .roo import Roo
from .vscode import VSCode
from .windsurf import Windsurf
from .zed import Zed

AGENTS: dict[str, Agent] = {a.name: a for a in (
    ClaudeCode(), ClaudeDesktop(), Codex(), Cursor(), Gemini(), OpenCode(), Windsurf(), OpenClaw(), Hermes(),
    VSCode(), Cline(), Roo(), Zed())}


def get(name: str) -> Agent:
    return AGENTS[name]
