"""Deciding calls: ordering, fall-through, scoping, justification, fail-closed, CEL context."""
from __future__ import annotations

from datetime import datetime, timezone

from proxy.policy import CallContext, Engine, load_engine

from .conftest import SEED, engine


def decide(e, tool="bash", **kw):
    return e.decide(CallContext(tool=tool, **kw))


def test_empty_engine_allows_everything():
    for e in (Engine.empty(), load_engine([])):
        d = decide(e, "anything", server="x", args={"a": 1})
        assert d.as_dict() == {"decision": "allow", "rule": None, "justification": "none",
                               "approval_workflow": None, "reason": d.reason}
        assert e.visible("anything", None) and e.justification_mode("anything", None) == "none"


def test_seed_decisions():
    e = engine(SEED, "seed.yaml")
    d = decide(e, server="shell", args={"command": "deploy to production"}, justification="release")
    assert (d.action, d.rule, d.justification, d.approval_workflow) == \
        ("require_approval", "seed:tools[0].conditions[0]", "required", "deploy-approval")
    assert "seed:tools[0].conditions[0]" in d.reason
    d = decide(e, server="shell", args={"command": "deploy to staging"}, justification="test")
    assert (d.action, d.approval_workflow) == ("allow", None)
    d = decide(e, server="shell", args={"command": "deploy to production"})
    assert d.action == "deny" and "requires a justification" in d.reason
    # source: mcp does not cover agent-native tools
    assert decide(e, server="native", args={"command": "deploy production"}).action == "allow"


def test_first_matching_condition_wins_and_rules_fall_through():
    e = engine("""
        approval_workflows: [{name: w1}, {name: w2}]
        tools:
          - id: all
            name: "*"
            conditions:
              - {id: c-deny, expression: "args.x == 1", action: deny}
              - {id: c-appr, expression: "args.x >= 1", action: require_approval}
          - id: bash-rule
            name: bash
            approval_workflow: w1
            conditions:
              - {id: b-appr, expression: "args.x == 5", action: require_approval, approval_workflow: w2}
              - {id: b-appr2, expression: "args.x == 0", action: require_approval}
            action: deny
    """)
    assert decide(e, args={"x": 1}).rule == "c-deny"
    assert decide(e, args={"x": 2}).rule == "c-appr"
    d = decide(e, args={"x": 0})
    assert (d.action, d.rule, d.approval_workflow) == ("require_approval", "b-appr2", "w1")
    assert decide(e, args={"x": -1}).rule == "bash-rule"         # the tool's own action
    assert decide(e, "ls", args={"x": -1}).action == "allow"    # nothing decides: defaults


def test_condition_workflow_overrides_tool_workflow():
    e = engine("""
        approval_workflows: [{name: w1}, {name: w2}]
        tools:
          - name: t
            approval_workflow: w1
            conditions:
              - {expression: "args.x == 5", action: require_approval, approval_workflow: w2}
    """)
    assert decide(e, "t", args={"x": 5}).approval_workflow == "w2"


def test_defaults_apply_when_no_rule_decides():
    e = engine("""
        defaults: {action: require_approval, justification: optional, approval_workflow: w}
        approval_workflows: [{name: w}]
        tools:
          - {name: safe, action: allow}
    """)
    d = decide(e, "other")
    assert (d.action, d.rule, d.justification, d.approval_workflow) == ("require_approval", None, "optional", "w")
    assert decide(e, "safe").action == "allow"


def test_disabled_tool_is_hidden_and_refused():
    e = engine("""
        tools:
          - {id: "off", name: dangerous, enabled: false}
          - {name: gone, action: deny}
          - {name: maybe, conditions: [{expression: "args.x == 1", action: deny}]}
    """)
    d = decide(e, "dangerous")
    assert (d.action, d.rule) == ("deny", "off") and "disabled" in d.reason
    assert not e.visible("dangerous", "s") and not e.visible("gone", "s")
    assert e.visible("maybe", "s") and e.visible("other", "s")
    assert not engine("defaults: {action: deny}\n").visible("x", None)


def test_globs_and_server_scoping():
    e = engine("""
        tools:
          - {id: gh, name: "github.*", action: require_approval}
          - {id: fs-only, name: "read_*", source: filesystem, action: deny}
          - {id: any-mcp, name: "exec", source: mcp, action: deny}
          - {id: srv-glob, name: "write", server: "prod-*", action: deny}
    """)
    assert decide(e, "create_issue", server="github").rule == "gh"       # server.tool
    assert decide(e, "github.create_issue").rule == "gh"                 # qualified name
    assert decide(e, "create_issue", server="gitlab").action == "allow"
    assert decide(e, "read_file", server="filesystem").rule == "fs-only"
    assert decide(e, "read_file", server="other").action == "allow"
    assert decide(e, "exec", server="shell").rule == "any-mcp"
    assert decide(e, "exec", server="native").action == "allow"
    assert decide(e, "write", server="prod-db").rule == "srv-glob"
    assert decide(e, "write", server="dev-db").action == "allow"


def test_justification_modes():
    e = engine("""
        defaults: {justification: optional}
        tools:
          - {name: bash, justification: required}
          - {name: "*", justification: none}
    """)
    assert e.justification_mode("bash", None) == "required"
    assert e.justification_mode("ls", None) == "none"
    assert decide(e, "bash", justification="  ").action == "deny"
    d = decide(e, "bash", justification="checking disk usage")
    assert (d.action, d.justification) == ("allow", "required")


def test_evaluation_errors_fail_closed_naming_the_rule():
    e = engine("""
        tools:
          - name: t
            conditions:
              - {id: needs-arg, expression: "args.command.contains('x')", action: allow}
          - name: u
            conditions:
              - {id: not-bool, expression: "args.n + 1", action: allow}
          - name: v
            conditions:
              - {id: div, expression: "args.n / 0 == 1", action: allow}
          - name: w
            conditions:
              - {id: guarded, expression: "has(args.command) && args.command.contains('x')", action: deny}
    """)
    d = decide(e, "t", args={})
    assert (d.action, d.rule) == ("deny", "needs-arg")
    assert "needs-arg failed to evaluate" in d.reason and "has(args" in d.reason
    d = decide(e, "u", args={"n": 1})
    assert (d.action, d.rule) == ("deny", "not-bool") and "not a bool" in d.reason
    assert decide(e, "v", args={"n": 1}).action == "deny"
    assert decide(e, "w", args={}).action == "allow"
    assert decide(e, "w", args={"command": "xx"}).action == "deny"


def test_decide_never_raises_on_odd_contexts():
    e = engine("tools:\n  - {name: t, conditions: [{expression: \"args.a == 1\", action: allow}]}\n")
    d = e.decide(CallContext(tool="t", args={"a": object()}))
    assert d.action == "deny"
    d = e.decide(CallContext(tool="t", args=["not", "a", "dict"]))   # type: ignore[arg-type]
    assert d.action == "deny"


def test_cel_context_variables():
    e = engine("""
        tools:
          - name: t
            conditions:
              - id: who
                expression: >-
                  agent == 'claude-code' && subject == 'alice' && account == 'acme' && flow == 'ci' &&
                  session.id == 's1' && justification == 'why' && request.host == 'h' &&
                  request.path == '/mcp/gh' && tool.name == 't' && tool.server == 'gh' && !tool.changed
                action: deny
    """)
    full = dict(server="gh", agent="claude-code", subject="alice", account="acme", flow="ci",
                session_id="s1", justification="why", request_host="h", request_path="/mcp/gh")
    assert decide(e, "t", **full).rule == "who"
    assert decide(e, "t", **{**full, "tool_changed": True}).action == "allow"
    assert decide(e, "t", **{**full, "agent": None}).action == "allow"   # missing -> "" not an error


def test_time_windows_with_now():
    e = engine("""
        tools:
          - name: t
            conditions:
              - expression: "now.getHours('Europe/Berlin') < 9 || now.getDayOfWeek('Europe/Berlin') == 0"
                action: deny
    """)
    at = lambda s: datetime.fromisoformat(s).replace(tzinfo=timezone.utc)  # noqa: E731
    assert decide(e, "t", now=at("2026-03-03T07:30:00")).action == "deny"    # 08:30 Berlin
    assert decide(e, "t", now=at("2026-03-03T08:30:00")).action == "allow"   # 09:30 Berlin
    assert decide(e, "t", now=at("2026-03-08T12:00:00")).action == "deny"    # Sunday


def test_helper_functions():
    e = engine("""
        tools:
          - name: t
            conditions:
              - {id: s, expression: "has_secret(args)", action: deny}
              - {id: k, expression: "'aws_access_key_id' in secrets(args.blob)", action: deny}
              - {id: g, expression: "glob(lower(args.path), ['*.pem', '/etc/*'])", action: deny}
    """)
    assert decide(e, "t", args={"x": {"y": ["Bearer abcdefghijklmnop1234"]}, "path": "a"}).rule == "s"
    assert decide(e, "t", args={"path": "/ETC/passwd", "blob": []}).rule == "g"
    assert decide(e, "t", args={"path": "src/main.py", "blob": ["ok"]}).action == "allow"


def test_only_matching_rules_are_evaluated():
    # 200 rules whose conditions would fail (deny) if evaluated; only tool_7's rule may run
    rules = "\n".join(f"  - name: tool_{i}\n    conditions:\n      - {{id: r{i}, expression: \"args.missing == 1\", "
                      f"action: allow}}" for i in range(200))
    e = engine("tools:\n" + rules + "\n  - {name: 'grp_*', action: require_approval}\n")
    assert decide(e, "unrelated").action == "allow"
    d = decide(e, "tool_7")
    assert (d.action, d.rule) == ("deny", "r7")
    assert decide(e, "grp_x").action == "require_approval"
    assert [r.name for r in e.matching("tool_7", None)] == ["tool_7"]
