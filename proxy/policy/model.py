"""Immutable value objects of the policy engine (the API other areas code against)."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

ACTIONS = ("allow", "deny", "require_approval")
JUSTIFICATION_MODES = ("none", "optional", "required")


@dataclass(frozen=True, slots=True)
class CallContext:
    """One tool call, as the MCP firewall (or an agent hook) sees it."""

    tool: str
    server: str | None = None
    args: dict = field(default_factory=dict)
    agent: str | None = None
    subject: str | None = None
    account: str | None = None
    flow: str | None = None
    session_id: str | None = None
    justification: str | None = None
    tool_changed: bool = False
    request_host: str | None = None
    request_path: str | None = None
    now: datetime | None = None     # None = current UTC time


@dataclass(frozen=True, slots=True)
class Decision:
    action: str                     # "allow" | "deny" | "require_approval"
    rule: str | None
    justification: str              # "none" | "optional" | "required"
    approval_workflow: str | None
    reason: str

    def as_dict(self) -> dict:
        """The `airlock policy explain --json` contract."""
        return {
            "decision": self.action,
            "rule": self.rule,
            "justification": self.justification,
            "approval_workflow": self.approval_workflow,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class Workflow:
    name: str
    timeout_seconds: int = 600
    required_approvals: int = 1
    approvers: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    async_approval: bool = False
    on_timeout: str = "deny"
    escalation: tuple[dict, ...] = ()
    channel_config: dict = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ModelRule:
    match: dict
    allow: tuple[str, ...]
    id: str


@dataclass(frozen=True, slots=True)
class Budget:
    name: str
    scope: str
    period: str
    limit_usd: float | None
    limit_tokens: int | None
    hard: bool
    match: dict


@dataclass(frozen=True, slots=True)
class RateLimit:
    id: str
    scope: str
    requests_per_minute: int | None
    tokens_per_minute: int | None
    match: dict


class PolicyError(Exception):
    """An invalid policy. ``errors`` holds every problem found (each a PolicyError)."""

    def __init__(self, file: str, line: int | None, message: str, hint: str = "",
                 errors: list["PolicyError"] | None = None):
        self.file = file
        self.line = line
        self.message = message
        self.hint = hint
        self.errors: list[PolicyError] = errors if errors is not None else [self]
        super().__init__(self._one())

    def _one(self) -> str:
        loc = f"{self.file}:{self.line}" if self.line is not None else self.file
        text = f"{loc}: {self.message}"
        return f"{text} (hint: {self.hint})" if self.hint else text

    def __str__(self) -> str:
        if len(self.errors) <= 1:
            return self._one()
        return "\n".join(e._one() for e in self.errors)

    def as_dict(self) -> dict:
        return {"file": self.file, "line": self.line, "message": self.message, "hint": self.hint}
