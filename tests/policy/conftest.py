from __future__ import annotations

import textwrap

import pytest

from proxy.policy import PolicyError, load_engine_text

SEED = """\
# Example: Require approval for production deployments
version: "1.0"
metadata:
  name: "Production Safeguards"
  description: "Require approval before deploying"

approval_workflows:
  - name: "deploy-approval"
    timeout_seconds: 600
    required_approvals: 1
    async_approval: true

tools:
  - name: "bash"
    source: mcp
    approval_workflow: "deploy-approval"
    justification: required
    conditions:
      - expression: "args.command.contains('deploy') && args.command.contains('production')"
        action: require_approval
"""


def engine(text: str, file: str = "p.yaml"):
    return load_engine_text(textwrap.dedent(text), file)


def errors(text: str, file: str = "p.yaml") -> list[PolicyError]:
    with pytest.raises(PolicyError) as ei:
        load_engine_text(textwrap.dedent(text), file)
    return ei.value.errors


# cel-python raises the recursion limit when its environment is first built; build it now, not
# inside a hypothesis test (which would warn that it cannot restore the limit).
from proxy.policy.cel import compile_expression  # noqa: E402

compile_expression("true")
