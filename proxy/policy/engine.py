"""The policy engine: decides one tool call (skeleton; real engine follows)."""
from __future__ import annotations

from .model import Budget, CallContext, Decision, ModelRule, RateLimit, Workflow


class Engine:
    def __init__(self, *, source_files=None, version="empty", workflows=None, models=None,
                 budgets=None, rate_limits=None, prices=None, default_action="allow",
                 default_justification="none"):
        self.source_files: list[str] = list(source_files or [])
        self.version: str = version
        self.workflows: dict[str, Workflow] = dict(workflows or {})
        self.models: list[ModelRule] = list(models or [])
        self.budgets: list[Budget] = list(budgets or [])
        self.rate_limits: list[RateLimit] = list(rate_limits or [])
        self.prices: dict[str, dict] = dict(prices or {})
        self.default_action = default_action
        self.default_justification = default_justification

    @classmethod
    def empty(cls) -> "Engine":
        return cls()

    def decide(self, ctx: CallContext) -> Decision:
        return Decision(self.default_action, None, self.default_justification, None,
                        f"no rule matches tool {ctx.tool!r}: default action {self.default_action}")

    def visible(self, tool: str, server: str | None) -> bool:
        return self.default_action != "deny"

    def justification_mode(self, tool: str, server: str | None) -> str:
        return self.default_justification
