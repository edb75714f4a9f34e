"""policies/ ships valid files whose example cases pass; the folder also loads as a whole."""
from __future__ import annotations

from pathlib import Path

import pytest

from proxy.policy import CallContext, load_engine
from proxy.policy.cases import load_cases, run_cases

ROOT = Path(__file__).resolve().parents[2] / "policies"
NAMES = ["default", "production-safeguards", "read-only", "business-hours", "secrets-never-leave"]


@pytest.mark.parametrize("name", NAMES)
def test_policy_passes_its_cases(name):
    engine = load_engine([ROOT / f"{name}.yaml"])
    cases_file = ROOT / "cases" / f"{name}.yaml"
    results = run_cases(engine, load_cases(cases_file.read_text(), str(cases_file)))
    assert len(results) >= 4
    assert [r for r in results if not r["ok"]] == []


def test_default_policy_requires_approval_for_changed_tools():
    e = load_engine([ROOT / "default.yaml"])
    d = e.decide(CallContext(tool="anything", server="any", tool_changed=True))
    assert d.action == "require_approval" and d.approval_workflow == "default-approval"


def test_the_whole_folder_loads():
    e = load_engine([ROOT])
    assert len(e.source_files) == len(NAMES) + 1          # + model-gateway.yaml
    assert e.models and e.budgets and e.rate_limits and e.prices
