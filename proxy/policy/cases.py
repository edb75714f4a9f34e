"""Policy unit tests: a cases file lists calls and the decision each must get.

```yaml
cases:
  - name: deploys to production wait for approval
    call: {tool: bash, server: shell, args: {command: "deploy production"}, justification: "release"}
    expect: {decision: require_approval, approval_workflow: deploy-approval}
  - name: plain reads are fine
    call: {tool: bash, args: {command: ls}, justification: "look around"}
    expect: allow                      # shorthand for {decision: allow}
```
Only the keys given under ``expect`` are compared (decision, rule, justification,
approval_workflow, reason_contains).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .engine import Engine
from .model import ACTIONS, JUSTIFICATION_MODES, CallContext, PolicyError
from .schema import _Checker, _plain
from .yamlsrc import LList, LMap, parse_yaml

CALL_KEYS = ("tool", "server", "args", "agent", "subject", "account", "flow", "session_id",
             "justification", "tool_changed", "request_host", "request_path", "now")
EXPECT_KEYS = ("decision", "rule", "justification", "approval_workflow", "reason_contains")
CASE_KEYS = ("name", "call", "expect")


@dataclass
class Case:
    name: str
    call: CallContext
    expect: dict
    line: int | None = None
    raw_call: dict = field(default_factory=dict)


def _call(c: _Checker, m: LMap, where: str) -> CallContext | None:
    tool = c.get(m, "tool", where, "str")
    if not tool:
        return None
    args = m.get("args", {})
    if not isinstance(args, dict):
        c.err(m.line_of("args"), f"{where}.args must be a mapping", "e.g. args: {command: ls}")
        return None
    now = m.get("now")
    if now is not None:
        if isinstance(now, str):
            try:
                now = datetime.fromisoformat(now.replace("Z", "+00:00"))
            except ValueError:
                c.err(m.line_of("now"), f"{where}.now is not an ISO timestamp: {now!r}",
                      'e.g. now: "2026-03-02T10:00:00Z"')
                return None
        if not isinstance(now, datetime):
            c.err(m.line_of("now"), f"{where}.now must be a timestamp", 'e.g. now: "2026-03-02T10:00:00Z"')
            return None
        if now.tzinfo is None:
            now = now.replace(tzinfo=timezone.utc)
    s = {k: c.get(m, k, where, "str") for k in ("server", "agent", "subject", "account", "flow",
                                                  "session_id", "justification", "request_host",
                                                  "request_path")}
    return CallContext(tool=tool, args=_plain(args), tool_changed=c.get(m, "tool_changed", where, "bool", False),
                       now=now, **s)


def load_cases(text: str, file: str) -> list[Case]:
    """Parse a cases file strictly; raises PolicyError listing every problem."""
    data = parse_yaml(text, file)
    c = _Checker(file)
    items = data
    if isinstance(data, LMap):
        c.mapping(data, data.line, "the cases file", ("cases",), required=("cases",))
        items = data.get("cases")
    if not isinstance(items, LList):
        raise PolicyError(file, getattr(data, "line", 1), "a cases file is a list of cases",
                          "write `cases:` followed by `- {name, call, expect}` items")
    cases = []
    for i, raw in enumerate(items):
        where, line = f"cases[{i}]", items.line_of(i)
        m = c.mapping(raw, line, where, CASE_KEYS, required=("call", "expect"))
        if m is None:
            continue
        name = c.get(m, "name", where, "str") or where
        cm = c.mapping(m.get("call"), m.line_of("call"), f"{where}.call", CALL_KEYS, required=("tool",))
        call = _call(c, cm, f"{where}.call") if cm is not None else None
        exp = m.get("expect")
        if isinstance(exp, str):
            exp_d = {"decision": exp}
            if exp not in ACTIONS:
                c.err(m.line_of("expect"), f"{where}.expect is {exp!r}",
                      f"use one of: {', '.join(ACTIONS)}")
        else:
            em = c.mapping(exp, m.line_of("expect"), f"{where}.expect", EXPECT_KEYS)
            exp_d = {}
            if em is not None:
                for k in EXPECT_KEYS:
                    if k in em:
                        choices = ACTIONS if k == "decision" else JUSTIFICATION_MODES if k == "justification" else ()
                        if em[k] is None and k in ("rule", "approval_workflow"):
                            exp_d[k] = None
                        else:
                            v = c.get(em, k, f"{where}.expect", "str", choices=choices)
                            if v is not None:
                                exp_d[k] = v
        if call is not None:
            cases.append(Case(name, call, exp_d, line, _plain(cm)))
    if c.errors:
        first = c.errors[0]
        raise PolicyError(first.file, first.line, first.message, first.hint, errors=c.errors)
    return cases


def run_case(engine: Engine, case: Case) -> dict:
    """{"name", "line", "ok", "expected", "actual", "diff": [text lines]} for one case."""
    actual = engine.decide(case.call).as_dict()
    diff = []
    for k, want in case.expect.items():
        if k == "reason_contains":
            if want.lower() not in actual["reason"].lower():
                diff += [f"- reason containing: {want!r}", f"+ reason: {actual['reason']!r}"]
            continue
        got = actual[k]
        if got != want:
            diff += [f"- {k}: {want}", f"+ {k}: {got}"]
    return {"name": case.name, "line": case.line, "ok": not diff, "expected": case.expect,
            "actual": actual, "diff": diff, "call": case.raw_call}


def run_cases(engine: Engine, cases: list[Case]) -> list[dict]:
    return [run_case(engine, c) for c in cases]


def call_from_json(d: dict[str, Any]) -> CallContext:
    """A CallContext from a plain mapping with CALL_KEYS (used by diff)."""
    return CallContext(**{k: v for k, v in d.items() if k in CALL_KEYS})
