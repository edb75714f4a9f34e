"""Strict loading: the seed validates; every kind of mistake is an error with file, line and hint."""
from __future__ import annotations

from pathlib import Path

import pytest

from proxy.policy import PolicyError, load_engine

from .conftest import SEED, engine, errors


def test_seed_example_validates():
    e = engine(SEED, "seed.yaml")
    assert e.workflows["deploy-approval"].async_approval is True
    assert e.workflows["deploy-approval"].timeout_seconds == 600
    [rule] = e.rules
    assert (rule.name, rule.source, rule.justification, rule.approval_workflow) == \
        ("bash", "mcp", "required", "deploy-approval")
    assert rule.conditions[0].id == "seed:tools[0].conditions[0]"
    assert e.metadata["name"] == "Production Safeguards"


def test_approvals_required_is_an_alias():
    e = engine("""
        approval_workflows:
          - {name: two-people, approvals_required: 2, approvers: [a@x, b@x], channels: [slack]}
    """)
    wf = e.workflows["two-people"]
    assert (wf.required_approvals, wf.approvers, wf.channels) == (2, ("a@x", "b@x"), ("slack",))


def test_both_approval_keys_is_an_error():
    [err] = errors("""
        approval_workflows:
          - name: w
            required_approvals: 1
            approvals_required: 2
    """)
    assert err.line == 5 and "alias" in err.hint


def test_unknown_key_has_line_and_did_you_mean():
    [err] = errors("""
        tools:
          - name: bash
            conditons:
              - {expression: "true", action: deny}
    """, "x.yaml")
    assert (err.file, err.line) == ("x.yaml", 4)
    assert "unknown key 'conditons'" in err.message
    assert "conditions" in err.hint
    assert str(err).startswith("x.yaml:4: unknown key")


def test_unknown_top_level_key():
    [err] = errors("version: '1.0'\ntool:\n  - name: x\n")
    assert err.line == 2 and "'tools'" in err.hint


@pytest.mark.parametrize("snippet, line, needle", [
    ("tools:\n  - name: bash\n    enabled: 'no'\n", 3, "enabled must be true or false"),
    ("tools:\n  - name: bash\n    action: maybe\n", 3, "not one of allow, deny, require_approval"),
    ("tools:\n  - name: bash\n    justification: always\n", 3, "not one of none, optional, required"),
    ("tools: {name: bash}\n", 1, "tools must be a list"),
    ("tools:\n  - name: 42\n", 2, "name must be a string"),
    ("tools:\n  - conditions: []\n", 2, "missing required key 'name'"),
    ("approval_workflows:\n  - name: w\n    timeout_seconds: -5\n", 3, "must be >= 1"),
    ("approval_workflows:\n  - name: w\n    timeout_seconds: ten\n", 3, "must be an integer"),
    ("defaults: {action: permit}\n", 1, "defaults.action"),
    ("tools:\n  - name: bash\n    conditions:\n      - expression: 'true'\n", 4, "missing required key 'action'"),
])
def test_wrong_types_and_values(snippet, line, needle):
    errs = errors(snippet)
    assert any(e.line == line and needle in e.message for e in errs), [str(e) for e in errs]


def test_bad_cel_is_an_error_with_the_expression_line():
    [err] = errors("""
        tools:
          - name: bash
            conditions:
              - expression: "args.command.contains('x') &&"
                action: deny
    """)
    assert err.line == 5 and "CEL syntax error" in err.message and err.hint


def test_unknown_cel_variable_and_function():
    errs = errors("""
        tools:
          - name: bash
            conditions:
              - {expression: "argz.command == 'x'", action: deny}
              - {expression: "globb(tool.name, 'x')", action: deny}
    """)
    assert "unknown variable 'argz'" in errs[0].message and "'args'" in errs[0].hint
    assert "unknown function 'globb'" in errs[1].message and "'glob'" in errs[1].hint


def test_macro_variables_are_not_unknown():
    e = engine("""
        tools:
          - name: t
            conditions:
              - {expression: "args.files.exists(f, f.endsWith('.pem'))", action: deny}
    """)
    assert len(e.rules[0].conditions) == 1


def test_missing_workflow_is_an_error():
    errs = errors("""
        approval_workflows: [{name: real}]
        tools:
          - name: bash
            approval_workflow: imaginary
            conditions:
              - {expression: "true", action: require_approval, approval_workflow: other}
    """)
    assert [e.line for e in errs] == [5, 7]
    assert "'imaginary'" in errs[0].message and "known: real" in errs[0].hint


def test_duplicates_in_one_file():
    errs = errors("""
        approval_workflows: [{name: w}, {name: w}]
        tools:
          - {name: bash, id: r1}
          - {name: bash, id: r2}
          - {name: ls, id: r1}
    """)
    msgs = [e.message for e in errs]
    assert any("duplicate approval workflow 'w'" in m for m in msgs)
    assert any("duplicate tool 'bash'" in m for m in msgs)
    assert any("duplicate rule id 'r1'" in m for m in msgs)


def test_every_error_is_reported_not_just_the_first():
    errs = errors("tools:\n  - name: a\n    bogus: 1\n  - name: b\n    action: nope\n")
    assert [e.line for e in errs] == [3, 5]


def test_yaml_problems(tmp_path):
    err = errors("tools:\n  - name: bash\n   action: deny\n")[0]
    assert err.line is not None and "invalid YAML" in err.message
    err = errors("tools:\n  - name: a\n    name: b\n")[0]
    assert err.line == 3 and "duplicate key 'name'" in err.message
    assert "empty" in errors("")[0].message
    assert "must be a mapping" in errors("- just\n- a list\n")[0].message
    assert "tag" in errors("tools: !!python/object:os.system {}\n")[0].message


def test_files_and_folders_concatenate_in_order(tmp_path):
    d = tmp_path / "pol"
    d.mkdir()
    (d / "b.yaml").write_text("tools:\n  - {name: bash, action: deny}\n")
    (d / "a.yml").write_text("tools:\n  - {name: bash, action: allow}\n")
    (d / "notes.txt").write_text("not a policy")
    e = load_engine([d])
    assert [Path(f).name for f in e.source_files] == ["a.yml", "b.yaml"]
    assert [r.id for r in e.rules] == ["a:tools[0]", "b:tools[0]"]
    extra = tmp_path / "c.yaml"
    extra.write_text("tools:\n  - {name: ls, action: deny}\n")
    assert [r.id for r in load_engine([d, extra]).rules][-1] == "c:tools[0]"


def test_cross_file_duplicates_and_conflicts(tmp_path):
    (tmp_path / "a.yaml").write_text("defaults: {action: allow}\napproval_workflows: [{name: w}]\n"
                                     "tools:\n  - {id: same, name: x, action: deny}\n")
    (tmp_path / "b.yaml").write_text("defaults: {action: deny}\napproval_workflows: [{name: w}]\n"
                                     "tools:\n  - {id: same, name: y, action: deny}\n")
    with pytest.raises(PolicyError) as ei:
        load_engine([tmp_path])
    msgs = [f"{Path(e.file).name}:{e.line}: {e.message}" for e in ei.value.errors]
    assert any(m.startswith("b.yaml:2: duplicate approval workflow 'w'") for m in msgs), msgs
    assert any(m.startswith("b.yaml:4: duplicate rule id 'same'") for m in msgs), msgs
    assert any(m.startswith("b.yaml:1: defaults.action") for m in msgs), msgs


def test_missing_path_is_an_error(tmp_path):
    with pytest.raises(PolicyError) as ei:
        load_engine([tmp_path / "nope.yaml"])
    assert "no such policy file" in ei.value.message


def test_gateway_sections_parse():
    e = engine("""
        models:
          - match: {account: acme, agent: [claude-code, codex]}
            allow: ["gpt-4o-mini", "claude-*"]
        budgets:
          - {name: daily, scope: subject, period: day, limit_usd: 5}
          - {name: tokens, scope: account, period: month, limit_tokens: 1000, hard: false, match: {account: acme}}
        rate_limits:
          - {scope: agent, requests_per_minute: 60, tokens_per_minute: 100000}
        prices:
          "local-*": {input_per_mtok: 0.1, output_per_mtok: 0.4}
    """)
    assert e.models[0].match == {"account": "acme", "agent": ("claude-code", "codex")}
    assert e.models[0].allow == ("gpt-4o-mini", "claude-*") and e.models[0].id == "p:models[0]"
    assert (e.budgets[0].limit_usd, e.budgets[0].hard, e.budgets[1].hard) == (5.0, True, False)
    assert e.budgets[1].limit_tokens == 1000 and e.budgets[1].match == {"account": "acme"}
    assert e.rate_limits[0].requests_per_minute == 60 and e.rate_limits[0].id == "p:rate_limits[0]"
    assert e.prices == {"local-*": {"input_per_mtok": 0.1, "output_per_mtok": 0.4}}


@pytest.mark.parametrize("snippet, needle", [
    ("budgets:\n  - {name: b, scope: team, period: day, limit_usd: 1}\n", "scope"),
    ("budgets:\n  - {name: b, scope: account, period: week, limit_usd: 1}\n", "period"),
    ("budgets:\n  - {name: b, scope: account, period: day}\n", "sets no limit"),
    ("budgets:\n  - {name: b, scope: account, period: day, limit_usd: -1}\n", ">= 0"),
    ("budgets:\n  - {name: b, scope: account, period: day, limit_usd: 1}\n"
     "  - {name: b, scope: account, period: day, limit_usd: 2}\n", "duplicate budget"),
    ("rate_limits:\n  - {scope: agent}\n", "sets no limit"),
    ("models:\n  - {match: {team: x}, allow: [a]}\n", "unknown key 'team'"),
    ("models:\n  - {allow: gpt-4o}\n", "list of strings"),
    ("prices:\n  m: {input_per_mtok: 1}\n", "output_per_mtok"),
])
def test_gateway_section_errors(snippet, needle):
    errs = errors(snippet)
    assert any(needle in e.message for e in errs), [str(e) for e in errs]


def test_yaml_booleans_where_a_string_belongs_get_a_quoting_hint():
    [err] = errors("tools:\n  - {id: off, name: x}\n")
    assert "must be a string, not a boolean" in err.message and "quote" in err.hint


@pytest.mark.parametrize("snippet, line", [
    ("tools:\n  - name:\n    action: deny\n", 2),
    ("tools:\n  - name: ''\n", 2),
    ("tools:\n  - name: '  '\n", 2),
    ("tools:\n  - name: t\n    conditions:\n      - expression:\n        action: deny\n", 4),
    ("tools:\n  - name: t\n    conditions:\n      - {expression: 'true', action: }\n", 4),
    ("approval_workflows:\n  - name: null\n", 2),
])
def test_empty_required_values_are_errors_not_silently_dropped(snippet, line):
    errs = errors(snippet)
    assert any(e.line == line and ("empty" in e.message or "blank" in e.message) for e in errs), \
        [str(e) for e in errs]
