"""What changes between two policies: rules added / removed / changed, and calls whose decision changes.

Rules are matched by id. Ids a file does not give (``<file-stem>:tools[2].conditions[0]``) are
compared without the file stem when each side is a single file, so ``diff old.yaml new.yaml``
lines up. Calls compared: one synthetic call per tool name or glob found in either policy
(with ``tool.changed`` false and true), plus any calls given by the caller (e.g. a cases file).
"""
from __future__ import annotations

import re
from pathlib import Path

from .engine import Engine, Rule
from .model import CallContext

_AUTO = re.compile(r"^[^:]*:(tools\[\d+\].*)$")


def _units(engine: Engine, strip: bool) -> dict[str, dict]:
    out: dict[str, dict] = {}

    def key(rid: str, rule: Rule) -> str:
        if strip and rid.startswith(f"{Path(rule.file).stem}:"):
            m = _AUTO.match(rid)
            if m:
                return m.group(1)
        return rid

    for r in engine.rules:
        out[key(r.id, r)] = {"kind": "tool", "name": r.name, "source": r.source, "enabled": r.enabled,
                             "action": r.action, "justification": r.justification,
                             "approval_workflow": r.approval_workflow}
        for c in r.conditions:
            out[key(c.id, r)] = {"kind": "condition", "tool": r.name, "expression": c.expression,
                                 "action": c.action, "approval_workflow": c.approval_workflow,
                                 "justification": c.justification}
    return out


def _example_name(pattern: str) -> str:
    name = re.sub(r"\[[^\]]*\]", "x", pattern)
    return name.replace("*", "example").replace("?", "x")


def sample_calls(*engines: Engine) -> list[CallContext]:
    seen, calls = set(), []
    for e in engines:
        for r in e.rules:
            name = _example_name(r.name) if r.is_glob else r.name
            server = None if r.source in (None, "*", "mcp") else _example_name(r.source)
            if "." in name and server is None and r.is_glob:
                server, _, name = name.partition(".")
            for changed in (False, True):
                k = (name, server, changed)
                if k not in seen:
                    seen.add(k)
                    calls.append(CallContext(tool=name, server=server, tool_changed=changed))
    return calls


def _call_dict(c: CallContext) -> dict:
    d = {"tool": c.tool, "server": c.server, "args": c.args, "tool_changed": c.tool_changed}
    for k in ("agent", "subject", "account", "flow", "justification"):
        if getattr(c, k):
            d[k] = getattr(c, k)
    return d


def diff_engines(old: Engine, new: Engine, calls: list[CallContext] | None = None) -> dict:
    strip = len(old.source_files) <= 1 and len(new.source_files) <= 1
    a, b = _units(old, strip), _units(new, strip)
    rules = {
        "added": [{"id": k, **b[k]} for k in b if k not in a],
        "removed": [{"id": k, **a[k]} for k in a if k not in b],
        "changed": [{"id": k, "old": a[k], "new": b[k]} for k in a if k in b and a[k] != b[k]],
    }
    wf = {
        "added": sorted(set(new.workflows) - set(old.workflows)),
        "removed": sorted(set(old.workflows) - set(new.workflows)),
        "changed": sorted(n for n in set(old.workflows) & set(new.workflows)
                          if old.workflows[n] != new.workflows[n]),
    }
    defaults = {k: {"old": getattr(old, f"default_{k}"), "new": getattr(new, f"default_{k}")}
                for k in ("action", "justification", "workflow")
                if getattr(old, f"default_{k}") != getattr(new, f"default_{k}")}
    changed_calls = []
    for c in list(calls or []) + sample_calls(old, new):
        d_old, d_new = old.decide(c).as_dict(), new.decide(c).as_dict()
        if (d_old["decision"], d_old["justification"], d_old["approval_workflow"]) != \
                (d_new["decision"], d_new["justification"], d_new["approval_workflow"]):
            changed_calls.append({"call": _call_dict(c), "old": d_old, "new": d_new})
    gateway = {k: getattr(old, k) != getattr(new, k) for k in ("models", "budgets", "rate_limits", "prices")}
    return {"old_version": old.version, "new_version": new.version, "rules": rules,
            "workflows": wf, "defaults": defaults,
            "gateway_changed": sorted(k for k, v in gateway.items() if v), "calls": changed_calls,
            "changed": bool(rules["added"] or rules["removed"] or rules["changed"] or any(wf.values())
                            or defaults or changed_calls or any(gateway.values()))}
