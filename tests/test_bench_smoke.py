"""The benchmark harness in smoke mode (``make bench-smoke``): every scenario runs briefly against real
processes (upstream, bare mitmproxy, ``airlock run``) and must produce figures without errors.
No speed is asserted here; speed lives in bench/RESULTS.md."""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.timeout(900),
              pytest.mark.skipif(not shutil.which("wrk"), reason="wrk not installed (apt-get install wrk)")]


def _num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run([sys.executable, "-O", "-m", "bench.run", "--smoke", "--store", str(out / "results"),
                           "--output", str(out / "RESULTS.md")], cwd=ROOT, capture_output=True, text=True,
                          timeout=880, env={**os.environ, "PYTHONPATH": str(ROOT)})
    results = {p.stem: json.loads(p.read_text()) for p in (out / "results").glob("*.json")
               if not p.stem.startswith("_")}
    return proc, results, out


def test_every_scenario_ran_without_error(smoke):
    from bench.run import SCENARIOS
    proc, results, _ = smoke
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert set(results) == set(SCENARIOS)
    failed = {k: v["error"] for k, v in results.items() if "error" in v}
    assert not failed, failed


def test_gateway_scenarios_have_figures_and_no_errors(smoke):
    from bench.targets import DEFAULT
    _, results, _ = smoke
    post = results["http_post"]["result"]
    assert {"direct", "bare mitmproxy", DEFAULT} <= set(post)
    assert any(k.startswith("airlock -O, addons:") for k in post)
    for name, r in post.items():
        assert "failed" not in r, (name, r)
        assert _num(r["c50_rps"]) and _num(r["c1_rps"]) and _num(r["c1_p50_ms"]), (name, r)
        assert r["errors"] == 0, (name, r)
    for name in ("direct", "bare mitmproxy", DEFAULT):
        assert post[name]["ol250_errors"] == 0 and _num(post[name]["ol250_p99_ms"]), post[name]
    sse = results["sse"]["result"]
    for name, r in sse.items():
        assert r["errors"] == 0 and r["concurrent_ok"] == r["concurrent"], (name, r)
        assert r["throughput_events"] >= r["throughput_expected"], (name, r)
        assert _num(r["ttft_p50_ms"]) and _num(r["event_p99_ms"]), (name, r)
    assert _num(sse["airlock gateway"]["events_per_cpu_s"])
    mcp = results["mcp_calls"]["result"]
    assert all(_num(r["c50_rps"]) and r["errors"] == 0 for r in mcp.values()), mcp


def test_component_scenarios_have_figures(smoke):
    _, results, _ = smoke
    pol = results["policy_decide"]["result"]["scenarios"]
    assert pol and all(_num(v["p50_us"]) for v in pol.values())
    audit = results["audit_ingest"]["result"]
    assert _num(audit["rows_per_s"]) and audit["dropped"] == 0 and _num(audit["addon_row_us"])
    cost = results["audit_cost"]["result"]
    assert cost["errors"] == 0 and _num(cost["with"]["rps_median"]) and _num(cost["without"]["rps_median"])
    from bench.audit_cost import LONG
    assert _num(cost[LONG]["rps_median"]) and cost["long_group"]["group_commit_ms"] == 50
    whole = cost["with"]["whole"]
    assert _num(whole["event_loop_us"]) and whole["audit_writer_us"] >= 0 and whole["ingester_us"] >= 0
    assert whole["total_us"] == pytest.approx(sum(v for k, v in whole.items() if k != "total_us"), abs=0.5)
    held = results["approvals_hold"]["result"]
    assert held["held"] == held["holds"] and held["client_errors"] == 0
    sm = results["sse_metering"]["result"]
    assert sm["throughput"]["errors"] == 0 and sm["concurrency"]["errors"] == 0 and sm["metered_tokens"] > 0
    w = results["workers"]["result"]
    if "skipped" not in w:                     # only when `airlock run` has --workers
        assert _num(w["w1_rps"]) and _num(w["w2_rps"]) and w["w1_errors"] == w["w2_errors"] == 0
    rss = results["rss"]["result"]
    assert rss["requests"] > 0 and rss["errors"] == 0 and len(rss["samples"]) >= 2
    prof = results["profile"]["result"]
    if "skipped" in prof:                      # py-spy missing or no ptrace rights: say so, never pass silently
        pytest.skip(f"profile: {prof['skipped']}")
    assert prof["samples"] > 0 and any(k.startswith(("addons/", "proxy/")) for k, _ in prof["files"])


def test_results_markdown_has_every_section(smoke):
    from bench.report import TITLES
    _, _, out = smoke
    text = (out / "RESULTS.md").read_text()
    assert "## Targets" in text and "Load average" in text
    for title in TITLES.values():
        assert f"## {title}" in text
