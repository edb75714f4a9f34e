"""Policy decision time for a 200-rule policy where a call matches at most a few rules.

    .venv/bin/python bench/policy_decide.py [--n 20000]

Prints p50 / p99 in microseconds per scenario; writes nothing.
"""
from __future__ import annotations

import argparse
import time

from proxy.policy import CallContext, load_engine_text


def policy(n_rules: int = 200) -> str:
    lines = ["version: '1.0'", "approval_workflows: [{name: w}]", "tools:",
             "  - name: '*'", "    conditions:",
             "      - {expression: 'tool.changed', action: require_approval, approval_workflow: w}",
             "      - {expression: 'has_secret(args)', action: deny}"]
    for i in range(n_rules - 11):
        lines += [f"  - name: tool_{i}", "    conditions:",
                  f"      - {{expression: \"has(args.command) && args.command.contains('danger{i}')\", "
                  "action: deny}"]
    for i in range(10):
        lines += [f"  - {{name: 'grp{i}_*', action: require_approval, approval_workflow: w}}"]
    return "\n".join(lines) + "\n"


def measure(engine, ctx: CallContext, n: int) -> tuple[float, float]:
    for _ in range(200):
        engine.decide(ctx)
    samples = []
    clock = time.perf_counter_ns
    for _ in range(n):
        t = clock()
        engine.decide(ctx)
        samples.append(clock() - t)
    samples.sort()
    return samples[len(samples) // 2] / 1000, samples[int(len(samples) * 0.99)] / 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    n = ap.parse_args().n
    engine = load_engine_text(policy(), "bench.yaml")
    assert engine.counts()["rules"] == 200
    args = {"command": "ls -la /srv", "cwd": "/srv"}
    scenarios = {
        "no rule but '*' (fast-path conditions)": CallContext(tool="unlisted", server="s", args=args),
        "exact rule + 1 CEL condition": CallContext(tool="tool_42", server="s", args=args),
        "glob rule, no CEL": CallContext(tool="grp3_write", server="s", args=args),
        "exact rule, CEL condition true": CallContext(tool="tool_7", server="s",
                                                      args={"command": "run danger7 now"}),
    }
    print(f"policy: {engine.counts()['rules']} rules, {engine.counts()['conditions']} conditions; n={n}")
    print(f"{'scenario':44} {'p50 us':>8} {'p99 us':>8}  decision")
    for name, ctx in scenarios.items():
        p50, p99 = measure(engine, ctx, n)
        print(f"{name:44} {p50:8.1f} {p99:8.1f}  {engine.decide(ctx).action}")


if __name__ == "__main__":
    main()
