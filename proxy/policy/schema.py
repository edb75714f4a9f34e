"""Strict validation of one parsed policy document into engine objects.

Every problem is recorded (not just the first) as a PolicyError with file, line and a hint:
unknown keys (with a did-you-mean), wrong types, bad values, duplicate names, bad CEL.
Cross-file checks (duplicate ids / workflows, missing workflows) live in load.py.
"""
from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .cel import CelError, compile_expression
from .engine import Condition, Rule
from .model import (ACTIONS, JUSTIFICATION_MODES, Budget, ModelRule, PolicyError, RateLimit,
                    Workflow)
from .yamlsrc import LList, LMap

TOP_KEYS = ("version", "metadata", "defaults", "approval_workflows", "tools", "models", "budgets",
            "rate_limits", "prices")
META_KEYS = ("name", "description", "owner", "tags", "labels")
DEFAULT_KEYS = ("action", "justification", "approval_workflow")
WORKFLOW_KEYS = ("name", "description", "timeout_seconds", "required_approvals",
                 "approvals_required", "approvers", "channels", "async_approval", "on_timeout",
                 "escalation", "channel_config")
ESCALATION_KEYS = ("after_seconds", "channels", "approvers")
TOOL_KEYS = ("id", "name", "description", "source", "server", "enabled", "action", "justification",
             "approval_workflow", "conditions")
CONDITION_KEYS = ("id", "expression", "action", "approval_workflow", "justification", "description")
MATCH_KEYS = ("account", "flow", "subject", "agent", "key")
MODEL_KEYS = ("id", "description", "match", "allow")
BUDGET_KEYS = ("name", "description", "scope", "period", "limit_usd", "limit_tokens", "hard", "match")
RATE_KEYS = ("id", "description", "scope", "requests_per_minute", "tokens_per_minute", "match")
PRICE_KEYS = ("input_per_mtok", "output_per_mtok", "cached_input_per_mtok", "cache_write_per_mtok")
SCOPES = ("account", "flow", "subject", "agent", "key")
PERIODS = ("hour", "day", "month", "total")
ON_TIMEOUT = ("deny", "allow")


@dataclass
class PolicyDoc:
    """One validated file."""

    file: str
    stem: str
    defaults: dict = field(default_factory=dict)           # key -> (value, line)
    metadata: dict = field(default_factory=dict)
    workflows: list[tuple[Workflow, int | None]] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)
    models: list[ModelRule] = field(default_factory=list)
    budgets: list[tuple[Budget, int | None]] = field(default_factory=list)
    rate_limits: list[RateLimit] = field(default_factory=list)
    prices: dict[str, dict] = field(default_factory=dict)
    # (workflow name, line, where) for the cross-file "missing workflow" check
    workflow_refs: list[tuple[str, int | None, str]] = field(default_factory=list)
    ids: list[tuple[str, int | None]] = field(default_factory=list)


def _tname(v: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            type(None): "null"}.get(type(v), "a mapping" if isinstance(v, dict) else
                                    "a list" if isinstance(v, list) else type(v).__name__)


class _Checker:
    def __init__(self, file: str):
        self.file = file
        self.errors: list[PolicyError] = []

    def err(self, line: int | None, message: str, hint: str = "") -> None:
        self.errors.append(PolicyError(self.file, line, message, hint))

    def mapping(self, value: Any, line: int | None, where: str, allowed: tuple[str, ...],
                required: tuple[str, ...] = ()) -> LMap | None:
        if not isinstance(value, LMap):
            self.err(line, f"{where} must be a mapping, not {_tname(value)}",
                     f"expected keys: {', '.join(allowed)}")
            return None
        for k in value:
            if k not in allowed:
                close = difflib.get_close_matches(str(k), allowed, n=1)
                self.err(value.line_of(k), f"unknown key {k!r} in {where}",
                         f"did you mean {close[0]!r}?" if close else f"allowed keys: {', '.join(allowed)}")
        for k in required:
            if k not in value:
                self.err(value.line, f"{where} is missing required key {k!r}", f"add `{k}:`")
            elif value[k] is None or value[k] == "":
                self.err(value.line_of(k), f"{where}.{k} is empty", f"give `{k}:` a value")
        return value

    def items(self, doc: LMap, key: str, where: str) -> list[tuple[int, Any, int | None]]:
        value = doc.get(key)
        if value is None:
            return []
        if not isinstance(value, LList):
            self.err(doc.line_of(key), f"{where} must be a list, not {_tname(value)}",
                     f"write `{key}:` followed by `- ...` items")
            return []
        return [(i, v, value.line_of(i)) for i, v in enumerate(value)]

    def get(self, m: LMap, key: str, where: str, kind: str, default: Any = None, *,
            choices: tuple = (), minimum: float | None = None) -> Any:
        if key not in m or (m[key] is None and kind != "any"):
            return default
        v, line = m[key], m.line_of(key)
        ok = {"str": isinstance(v, str) and not isinstance(v, bool),
              "bool": isinstance(v, bool),
              "int": isinstance(v, int) and not isinstance(v, bool),
              "num": isinstance(v, (int, float)) and not isinstance(v, bool)
                     and math.isfinite(v),
              "strs": isinstance(v, list) and all(isinstance(x, str) for x in v),
              "map": isinstance(v, dict), "any": True}[kind]
        if not ok and kind == "str" and isinstance(v, (bool, int, float)):
            self.err(line, f"{where}.{key} must be a string, not {_tname(v)}",
                     "quote the value (YAML reads yes/no/on/off/true/false as booleans, 1.0 as a number)")
            return default
        if not ok:
            want = {"str": "a string", "bool": "true or false", "int": "an integer",
                    "num": "a number", "strs": "a list of strings", "map": "a mapping"}[kind]
            self.err(line, f"{where}.{key} must be {want}, not {_tname(v)}",
                     f"e.g. {key}: " + {"str": '"text"', "bool": "true", "int": "60", "num": "5.0",
                                        "strs": '["a", "b"]', "map": "{...}"}[kind])
            return default
        if choices and v not in choices:
            close = difflib.get_close_matches(str(v), [str(c) for c in choices], n=1)
            self.err(line, f"{where}.{key} is {v!r}, not one of {', '.join(map(str, choices))}",
                     f"did you mean {close[0]!r}?" if close else f"use one of: {', '.join(map(str, choices))}")
            return default
        if minimum is not None and v < minimum:
            self.err(line, f"{where}.{key} must be >= {minimum:g}, not {v!r}", f"use a value >= {minimum:g}")
            return default
        return tuple(v) if kind == "strs" else v

    def match(self, m: LMap, where: str) -> dict:
        if "match" not in m or m["match"] is None:
            return {}
        mm = self.mapping(m["match"], m.line_of("match"), f"{where}.match", MATCH_KEYS)
        out: dict = {}
        for k, v in (mm or {}).items():
            if k not in MATCH_KEYS:
                continue
            if isinstance(v, str):
                out[k] = v
            elif isinstance(v, list) and v and all(isinstance(x, str) for x in v):
                out[k] = tuple(v)
            else:
                self.err(mm.line_of(k), f"{where}.match.{k} must be a string or a list of strings",
                         f'e.g. {k}: "acme" or {k}: ["a", "b"] (globs allowed)')
        return out


def check_document(data: Any, file: str) -> tuple[PolicyDoc, list[PolicyError]]:
    """Validate one parsed file. Returns the document and every error found."""
    c = _Checker(file)
    doc = PolicyDoc(file=file, stem=Path(file).stem or "policy")
    if data is None:
        c.err(1, "the policy file is empty", 'start it with `version: "1.0"`')
        return doc, c.errors
    top = c.mapping(data, getattr(data, "line", 1), "the policy file", TOP_KEYS)
    if top is None:
        return doc, c.errors
    version = top.get("version")
    if version is not None and str(version) not in ("1", "1.0"):
        c.err(top.line_of("version"), f"unsupported policy version {version!r}", 'use version: "1.0"')
    if "metadata" in top and top["metadata"] is not None:
        meta = c.mapping(top["metadata"], top.line_of("metadata"), "metadata", META_KEYS)
        if meta is not None:
            doc.metadata = {k: v for k, v in meta.items() if k in META_KEYS}
    if "defaults" in top and top["defaults"] is not None:
        d = c.mapping(top["defaults"], top.line_of("defaults"), "defaults", DEFAULT_KEYS)
        if d is not None:
            for key, choices in (("action", ACTIONS), ("justification", JUSTIFICATION_MODES),
                                 ("approval_workflow", ())):
                v = c.get(d, key, "defaults", "str", choices=choices)
                if v is not None:
                    doc.defaults[key] = (v, d.line_of(key))
            if "approval_workflow" in doc.defaults:
                name, line = doc.defaults["approval_workflow"]
                doc.workflow_refs.append((name, line, "defaults"))
    _workflows(c, top, doc)
    _tools(c, top, doc)
    _gateway(c, top, doc)
    return doc, c.errors


def _workflows(c: _Checker, top: LMap, doc: PolicyDoc) -> None:
    seen: dict[str, int | None] = {}
    for i, raw, line in c.items(top, "approval_workflows", "approval_workflows"):
        where = f"approval_workflows[{i}]"
        w = c.mapping(raw, line, where, WORKFLOW_KEYS, required=("name",))
        if w is None:
            continue
        name = c.get(w, "name", where, "str")
        if not name:
            continue
        if name in seen:
            c.err(w.line_of("name"), f"duplicate approval workflow {name!r}",
                  f"already defined on line {seen[name]}; rename one")
        seen[name] = w.line_of("name")
        if "required_approvals" in w and "approvals_required" in w:
            c.err(w.line_of("approvals_required"), f"{where} sets both required_approvals and "
                  "approvals_required", "approvals_required is an alias: keep one")
        req_key = "approvals_required" if "approvals_required" in w else "required_approvals"
        escalation = []
        for j, e, eline in c.items(w, "escalation", f"{where}.escalation"):
            ew = f"{where}.escalation[{j}]"
            em = c.mapping(e, eline, ew, ESCALATION_KEYS, required=("after_seconds",))
            if em is not None:
                escalation.append({"after_seconds": c.get(em, "after_seconds", ew, "int", 0, minimum=1),
                                   "channels": list(c.get(em, "channels", ew, "strs", ())),
                                   "approvers": list(c.get(em, "approvers", ew, "strs", ()))})
        cc = c.get(w, "channel_config", where, "map", {})
        doc.workflows.append((Workflow(
            name=name,
            timeout_seconds=c.get(w, "timeout_seconds", where, "int", 600, minimum=1),
            required_approvals=c.get(w, req_key, where, "int", 1, minimum=1),
            approvers=c.get(w, "approvers", where, "strs", ()),
            channels=c.get(w, "channels", where, "strs", ()),
            async_approval=c.get(w, "async_approval", where, "bool", False),
            on_timeout=c.get(w, "on_timeout", where, "str", "deny", choices=ON_TIMEOUT),
            escalation=tuple(escalation),
            channel_config=_plain(cc)), line))
        c.get(w, "description", where, "str")


def _plain(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def _tools(c: _Checker, top: LMap, doc: PolicyDoc) -> None:
    seen: dict[tuple, int | None] = {}
    for i, raw, line in c.items(top, "tools", "tools"):
        where = f"tools[{i}]"
        t = c.mapping(raw, line, where, TOOL_KEYS, required=("name",))
        if t is None:
            continue
        name = c.get(t, "name", where, "str")
        if "source" in t and "server" in t:
            c.err(t.line_of("server"), f"{where} sets both source and server",
                  "server is an alias of source: keep one")
        source = c.get(t, "source" if "source" in t else "server", where, "str")
        rid = c.get(t, "id", where, "str") or f"{doc.stem}:{where}"
        doc.ids.append((rid, t.line_of("id") if "id" in t else line))
        if name is None:
            continue
        if not name.strip():
            if name:
                c.err(t.line_of("name"), f"{where}.name is blank", 'use a tool name or a glob like "github.*"')
            continue
        if (name, source) in seen:
            c.err(t.line_of("name"), f"duplicate tool {name!r}"
                  f"{f' (source {source!r})' if source else ''}",
                  f"already listed on line {seen[(name, source)]}; merge their conditions into one entry")
        seen[(name, source)] = t.line_of("name")
        workflow = c.get(t, "approval_workflow", where, "str")
        if workflow:
            doc.workflow_refs.append((workflow, t.line_of("approval_workflow"), where))
        conditions = []
        for j, craw, cline in c.items(t, "conditions", f"{where}.conditions"):
            cond = _condition(c, doc, craw, cline, f"{where}.conditions[{j}]")
            if cond is not None:
                conditions.append(cond)
        doc.rules.append(Rule(
            id=rid, name=name, source=source,
            enabled=c.get(t, "enabled", where, "bool", True),
            action=c.get(t, "action", where, "str", choices=ACTIONS),
            justification=c.get(t, "justification", where, "str", choices=JUSTIFICATION_MODES),
            approval_workflow=workflow, conditions=tuple(conditions),
            description=c.get(t, "description", where, "str"), file=doc.file, line=line))


def _condition(c: _Checker, doc: PolicyDoc, raw: Any, line: int | None, where: str) -> Condition | None:
    m = c.mapping(raw, line, where, CONDITION_KEYS, required=("expression", "action"))
    if m is None:
        return None
    cid = c.get(m, "id", where, "str") or f"{doc.stem}:{where}"
    doc.ids.append((cid, m.line_of("id") if "id" in m else line))
    action = c.get(m, "action", where, "str", choices=ACTIONS)
    workflow = c.get(m, "approval_workflow", where, "str")
    if workflow:
        doc.workflow_refs.append((workflow, m.line_of("approval_workflow"), where))
    justification = c.get(m, "justification", where, "str", choices=JUSTIFICATION_MODES)
    description = c.get(m, "description", where, "str")
    expr = c.get(m, "expression", where, "str")
    if not expr:
        return None               # missing, empty or wrong type: already reported
    try:
        program = compile_expression(expr)
    except CelError as e:
        col = f" (column {e.column})" if e.column else ""
        c.err(m.line_of("expression"), f"{where}.expression: {e.message}{col}", e.hint)
        return None
    if action is None:
        return None
    return Condition(cid, program, action, workflow, justification, description, m.line_of("expression"))


def _gateway(c: _Checker, top: LMap, doc: PolicyDoc) -> None:
    for i, raw, line in c.items(top, "models", "models"):
        where = f"models[{i}]"
        m = c.mapping(raw, line, where, MODEL_KEYS, required=("allow",))
        if m is None:
            continue
        rid = c.get(m, "id", where, "str") or f"{doc.stem}:{where}"
        doc.ids.append((rid, m.line_of("id") if "id" in m else line))
        allow = c.get(m, "allow", where, "strs")
        c.get(m, "description", where, "str")
        if allow is not None:
            doc.models.append(ModelRule(match=c.match(m, where), allow=allow, id=rid))
    names: dict[str, int | None] = {}
    for i, raw, line in c.items(top, "budgets", "budgets"):
        where = f"budgets[{i}]"
        m = c.mapping(raw, line, where, BUDGET_KEYS, required=("scope", "period"))
        if m is None:
            continue
        name = c.get(m, "name", where, "str") or f"{doc.stem}:{where}"
        if name in names:
            c.err(m.line_of("name"), f"duplicate budget {name!r}", f"already used on line {names[name]}")
        names[name] = m.line_of("name")
        usd = c.get(m, "limit_usd", where, "num", minimum=0)
        tokens = c.get(m, "limit_tokens", where, "int", minimum=0)
        if "limit_usd" not in m and "limit_tokens" not in m:
            c.err(line, f"{where} sets no limit", "add limit_usd and/or limit_tokens")
        scope = c.get(m, "scope", where, "str", choices=SCOPES)
        period = c.get(m, "period", where, "str", choices=PERIODS)
        hard = c.get(m, "hard", where, "bool", True)
        c.get(m, "description", where, "str")
        if scope and period:
            doc.budgets.append((Budget(name, scope, period, None if usd is None else float(usd),
                                       tokens, hard, c.match(m, where)), m.line_of("name")))
    for i, raw, line in c.items(top, "rate_limits", "rate_limits"):
        where = f"rate_limits[{i}]"
        m = c.mapping(raw, line, where, RATE_KEYS, required=("scope",))
        if m is None:
            continue
        rid = c.get(m, "id", where, "str") or f"{doc.stem}:{where}"
        doc.ids.append((rid, m.line_of("id") if "id" in m else line))
        rpm = c.get(m, "requests_per_minute", where, "int", minimum=1)
        tpm = c.get(m, "tokens_per_minute", where, "int", minimum=1)
        if "requests_per_minute" not in m and "tokens_per_minute" not in m:
            c.err(line, f"{where} sets no limit", "add requests_per_minute and/or tokens_per_minute")
        scope = c.get(m, "scope", where, "str", choices=SCOPES)
        c.get(m, "description", where, "str")
        if scope:
            doc.rate_limits.append(RateLimit(rid, scope, rpm, tpm, c.match(m, where)))
    pm = top.get("prices")
    if pm is not None and not isinstance(pm, LMap):
        c.err(top.line_of("prices"), f"prices must be a mapping, not {_tname(pm)}",
              'e.g. prices: {"my-model-*": {input_per_mtok: 0.1, output_per_mtok: 0.4}}')
    elif pm is not None:
        for model, spec in pm.items():
            where = f"prices[{model!r}]"
            if not isinstance(model, str):
                c.err(pm.line_of(model), f"{where}: a model name must be a string", "quote it")
                continue
            sm = c.mapping(spec, pm.line_of(model), where, PRICE_KEYS,
                           required=("input_per_mtok", "output_per_mtok"))
            if sm is None:
                continue
            entry = {k: float(v) for k in PRICE_KEYS
                     if (v := c.get(sm, k, where, "num", minimum=0)) is not None}
            doc.prices[model] = entry
