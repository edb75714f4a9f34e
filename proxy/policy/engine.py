"""The policy engine: decides one tool call.

Rules (the ``tools`` entries of the loaded files, in file order) are indexed by tool name:
exact names in a dict, globs in a short list; the list of rules matching a (tool, server) is
cached, so a decision only evaluates the conditions of rules that can match.

Semantics: walk the matching rules in order. A disabled rule denies. Each rule's conditions are
tried in order and the first that is true decides. A rule with no true condition decides with its
own ``action`` if it has one, else the next matching rule is tried; the policy's
``defaults.action`` decides when no rule does. Any evaluation error denies, naming the rule.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from .cel import Activation, CelEvalError, Program
from .model import Budget, CallContext, Decision, ModelRule, RateLimit, Workflow

_CACHE_MAX = 4096


@dataclass(frozen=True, slots=True)
class Condition:
    id: str
    program: Program
    action: str
    approval_workflow: str | None = None
    justification: str | None = None
    description: str | None = None
    line: int | None = None

    @property
    def expression(self) -> str:
        return self.program.source


@dataclass(frozen=True, slots=True)
class Rule:
    """One ``tools`` entry."""

    id: str
    name: str                          # exact tool name or glob
    source: str | None = None          # None = any server; "mcp" = any MCP server; else a server glob
    enabled: bool = True
    action: str | None = None
    justification: str | None = None
    approval_workflow: str | None = None
    conditions: tuple[Condition, ...] = ()
    description: str | None = None
    file: str = ""
    line: int | None = None

    @property
    def is_glob(self) -> bool:
        return any(ch in self.name for ch in "*?[")

    def matches_server(self, server: str | None) -> bool:
        src = self.source
        if src is None or src == "*":
            return True
        if src == "mcp":
            return server != "native"
        return fnmatch.fnmatchcase(server or "", src)

    def matches_tool(self, tool: str, server: str | None) -> bool:
        if not self.is_glob:
            return tool == self.name or (server is not None and f"{server}.{tool}" == self.name)
        if fnmatch.fnmatchcase(tool, self.name):
            return True
        return server is not None and fnmatch.fnmatchcase(f"{server}.{tool}", self.name)


def _verb(action: str, workflow: str | None) -> str:
    if action == "require_approval":
        return f"requires approval (workflow {workflow})" if workflow else "requires approval"
    return "allows" if action == "allow" else "denies"


class Engine:
    def __init__(self, *, rules=(), source_files=None, version="empty", workflows=None, models=None,
                 budgets=None, rate_limits=None, prices=None, default_action="allow",
                 default_justification="none", default_workflow=None, metadata=None):
        self.rules: tuple[Rule, ...] = tuple(rules)
        self.source_files: list[str] = list(source_files or [])
        self.version: str = version
        self.workflows: dict[str, Workflow] = dict(workflows or {})
        self.models: list[ModelRule] = list(models or [])
        self.budgets: list[Budget] = list(budgets or [])
        self.rate_limits: list[RateLimit] = list(rate_limits or [])
        self.prices: dict[str, dict] = dict(prices or {})
        self.default_action = default_action
        self.default_justification = default_justification
        self.default_workflow = default_workflow
        self.metadata: dict = dict(metadata or {})
        self._exact: dict[str, list[Rule]] = {}
        self._globs: list[Rule] = []
        for r in self.rules:
            if r.is_glob:
                self._globs.append(r)
            else:
                self._exact.setdefault(r.name, []).append(r)
        self._order = {id(r): i for i, r in enumerate(self.rules)}
        self._cache: dict[tuple[str, str | None], tuple[Rule, ...]] = {}

    @classmethod
    def empty(cls) -> "Engine":
        return cls()

    def counts(self) -> dict:
        return {"rules": len(self.rules), "conditions": sum(len(r.conditions) for r in self.rules),
                "workflows": len(self.workflows), "models": len(self.models),
                "budgets": len(self.budgets), "rate_limits": len(self.rate_limits),
                "prices": len(self.prices)}

    # ---- matching -------------------------------------------------------------------------------

    def matching(self, tool: str, server: str | None) -> tuple[Rule, ...]:
        """The rules that apply to a tool on a server, in policy order (cached)."""
        key = (tool, server)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        found = [r for r in self._exact.get(tool, ()) if r.matches_server(server)]
        if server is not None:
            found += [r for r in self._exact.get(f"{server}.{tool}", ()) if r.matches_server(server)]
        found += [r for r in self._globs if r.matches_tool(tool, server) and r.matches_server(server)]
        if len(found) > 1:
            found.sort(key=lambda r: self._order[id(r)])
        result = tuple(found)
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        self._cache[key] = result
        return result

    def justification_mode(self, tool: str, server: str | None) -> str:
        for r in self.matching(tool, server):
            if r.justification:
                return r.justification
        return self.default_justification

    def visible(self, tool: str, server: str | None) -> bool:
        """False if the tool is disabled or denied whatever its arguments."""
        for r in self.matching(tool, server):
            if not r.enabled:
                return False
            if r.conditions:
                return True
            if r.action is not None:
                return r.action != "deny"
        return self.default_action != "deny"

    # ---- deciding -------------------------------------------------------------------------------

    def decide(self, ctx: CallContext) -> Decision:
        """Never raises: any failure is a deny whose reason says why."""
        try:
            return self._decide(ctx)
        except Exception as e:  # a bug or a hostile context must not let the call through
            return Decision("deny", None, self.default_justification, None,
                            f"policy evaluation failed ({type(e).__name__}: {e}); failing closed")

    def _decide(self, ctx: CallContext) -> Decision:
        rules = self.matching(ctx.tool, ctx.server)
        mode = next((r.justification for r in rules if r.justification), self.default_justification)
        activation = None
        for r in rules:
            if not r.enabled:
                return Decision("deny", r.id, mode, None,
                                f"tool {ctx.tool!r} is disabled by rule {r.id}")
            for c in r.conditions:
                if activation is None:
                    activation = Activation(ctx)
                try:
                    hit = c.program.evaluate(activation)
                except CelEvalError as e:
                    hint = "; test optional arguments with has(args.x)" if "no such" in str(e) else ""
                    return Decision("deny", c.id, c.justification or r.justification or mode, None,
                                    f"rule {c.id} failed to evaluate ({e}{hint}); failing closed (deny)")
                if hit:
                    workflow = c.approval_workflow or r.approval_workflow or self.default_workflow
                    why = c.description or f"condition `{c.expression}` is true"
                    return self._finish(ctx, c.action, c.id, c.justification or r.justification or mode,
                                        workflow, f"rule {c.id} {_verb(c.action, workflow)}: {why}")
            if r.action is not None:
                workflow = r.approval_workflow or self.default_workflow
                why = r.description or f"tool {ctx.tool!r} matches {r.name!r}"
                return self._finish(ctx, r.action, r.id, r.justification or mode, workflow,
                                    f"rule {r.id} {_verb(r.action, workflow)}: {why}")
        seen = f"no condition of {', '.join(r.id for r in rules)} matched" if rules else "no rule matches"
        return self._finish(ctx, self.default_action, None, mode, self.default_workflow,
                            f"{seen} tool {ctx.tool!r}: default action {self.default_action}")

    def _finish(self, ctx: CallContext, action: str, rule: str | None, mode: str,
                workflow: str | None, reason: str) -> Decision:
        if action != "require_approval":
            workflow = None
        if mode == "required" and action != "deny" and not (ctx.justification or "").strip():
            return Decision("deny", rule, mode, None,
                            f"tool {ctx.tool!r} requires a justification"
                            f"{f' (rule {rule})' if rule else ''}: call it again with a "
                            f"`justification` argument saying why")
        return Decision(action, rule, mode, workflow, reason)
