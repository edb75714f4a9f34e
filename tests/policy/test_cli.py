"""`airlock policy ...` as a user runs it: exit codes, stderr, JSON contracts."""
from __future__ import annotations

import json
from pathlib import Path

from tests.harness import run_cli

from .conftest import SEED

ROOT = Path(__file__).resolve().parents[2] / "policies"


def test_validate_ok_and_invalid(tmp_path):
    ok = run_cli("policy", "validate", str(ROOT / "default.yaml"), str(ROOT / "production-safeguards.yaml"))
    assert ok.returncode == 0, ok.stderr
    assert "ok: 2 file(s)" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("tools:\n  - name: bash\n    actoin: deny\n  - name: ls\n    conditions:\n"
                   "      - {expression: \"args.x ==\", action: deny}\n")
    r = run_cli("policy", "validate", str(bad))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"{bad}:3: unknown key 'actoin'" in r.stderr and "did you mean 'action'" in r.stderr
    assert f"{bad}:6:" in r.stderr and "2 error(s)" in r.stderr
    r = run_cli("policy", "validate", str(bad), "--json")
    assert r.returncode == 1
    errs = json.loads(r.stdout)
    assert [(e["file"], e["line"]) for e in errs] == [(str(bad), 3), (str(bad), 6)]
    assert set(errs[0]) == {"file", "line", "message", "hint"}
    r = run_cli("policy", "validate", str(ROOT / "default.yaml"), "--json")
    assert r.returncode == 0 and json.loads(r.stdout) == []


def test_validate_usage_error_and_missing_file(tmp_path):
    assert run_cli("policy", "validate").returncode == 2
    r = run_cli("policy", "validate", str(tmp_path / "nope.yaml"))
    assert r.returncode == 1 and "no such policy file" in r.stderr


def test_explain_json_contract(tmp_path):
    seed = tmp_path / "seed.yaml"
    seed.write_text(SEED)
    r = run_cli("policy", "explain", "--policy", str(seed), "--tool", "bash", "--server", "shell",
                "--args", '{"command": "deploy production"}', "--justification", "release", "--agent", "codex",
                "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert list(out) == ["decision", "rule", "justification", "approval_workflow", "reason"]
    assert out["decision"] == "require_approval" and out["approval_workflow"] == "deploy-approval"
    assert out["rule"] == "seed:tools[0].conditions[0]" and out["justification"] == "required"
    r = run_cli("policy", "explain", "--policy", str(seed), "--tool", "bash", "--args", '{"command": "ls"}')
    assert r.returncode == 0 and "decision:      deny" in r.stdout and "justification" in r.stdout


def test_explain_bad_input(tmp_path):
    r = run_cli("policy", "explain", "--policy", str(ROOT / "default.yaml"), "--tool", "x", "--args", "{nope")
    assert r.returncode == 2 and "--args is not valid JSON" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("policy", "explain", "--policy", str(ROOT / "default.yaml"), "--tool", "x", "--args", "[1]")
    assert r.returncode == 2 and "JSON object" in r.stderr
    r = run_cli("policy", "explain", "--policy", str(ROOT / "default.yaml"), "--tool", "x", "--now", "noon")
    assert r.returncode == 2 and "ISO timestamp" in r.stderr
    r = run_cli("policy", "explain", "--policy", str(ROOT / "business-hours.yaml"), "--tool", "deploy_app",
                "--now", "2026-03-08T12:00:00Z", "--json")
    assert json.loads(r.stdout)["decision"] == "deny"


def test_policy_test_passes_and_fails_with_a_diff(tmp_path):
    r = run_cli("policy", "test", str(ROOT / "production-safeguards.yaml"),
                "--cases", str(ROOT / "cases" / "production-safeguards.yaml"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "5 passed, 0 failed" in r.stdout
    cases = tmp_path / "cases.yaml"
    cases.write_text("cases:\n  - name: wrong on purpose\n    call: {tool: bash, server: s, args: {command: ls},"
                     " justification: j}\n    expect: {decision: deny, justification: required}\n"
                     "  - name: right\n    call: {tool: other}\n    expect: allow\n")
    r = run_cli("policy", "test", str(ROOT / "production-safeguards.yaml"), "--cases", str(cases))
    assert r.returncode == 1
    assert "FAIL  wrong on purpose" in r.stdout and "- decision: deny" in r.stdout
    assert "+ decision: allow" in r.stdout and "PASS  right" in r.stdout and "1 passed, 1 failed" in r.stdout
    r = run_cli("policy", "test", str(ROOT / "production-safeguards.yaml"), "--cases", str(cases), "--json")
    out = json.loads(r.stdout)
    assert r.returncode == 1 and (out["passed"], out["failed"]) == (1, 1)


def test_policy_test_rejects_a_bad_cases_file(tmp_path):
    cases = tmp_path / "cases.yaml"
    cases.write_text("cases:\n  - call: {tool: bash, tool_chnged: true}\n    expect: maybe\n")
    r = run_cli("policy", "test", str(ROOT / "default.yaml"), "--cases", str(cases))
    assert r.returncode == 2
    assert "unknown key 'tool_chnged'" in r.stderr and f"{cases}:2" in r.stderr and "'maybe'" in r.stderr


def test_diff(tmp_path):
    old, new = tmp_path / "old.yaml", tmp_path / "new.yaml"
    old.write_text("tools:\n  - {name: bash, action: deny}\n  - {id: keep, name: ls, action: allow}\n"
                   "  - {id: gone, name: rm, action: deny}\n")
    new.write_text("tools:\n  - {name: bash, action: require_approval}\n  - {id: keep, name: ls, action: allow}\n"
                   "  - {id: fresh, name: curl, action: deny}\n")
    r = run_cli("policy", "diff", str(old), str(new), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert [x["id"] for x in out["rules"]["added"]] == ["fresh"]
    assert [x["id"] for x in out["rules"]["removed"]] == ["gone"]
    assert [x["id"] for x in out["rules"]["changed"]] == ["tools[0]"]
    changes = {(c["call"]["tool"], c["old"]["decision"], c["new"]["decision"]) for c in out["calls"]}
    assert {("bash", "deny", "require_approval"), ("rm", "deny", "allow"), ("curl", "allow", "deny")} <= changes
    assert not any(c["call"]["tool"] == "ls" for c in out["calls"])
    r = run_cli("policy", "diff", str(old), str(new))
    assert "+ rule fresh" in r.stdout and "- rule gone" in r.stdout and "~ rule tools[0]" in r.stdout
    assert run_cli("policy", "diff", str(old), str(new), "--exit-code").returncode == 1
    same = run_cli("policy", "diff", str(old), str(old), "--exit-code")
    assert same.returncode == 0 and "no differences" in same.stdout
