"""Shared bits of the approvals tests."""
from __future__ import annotations

from proxy.policy import Workflow

WORKFLOWS = {
    "one": Workflow(name="one", timeout_seconds=30),
    "quorum": Workflow(name="quorum", timeout_seconds=30, required_approvals=2,
                       approvers=("alice@example.com", "bob@example.com", "carol@example.com")),
    "short": Workflow(name="short", timeout_seconds=1),
    "short-approve": Workflow(name="short-approve", timeout_seconds=1, on_timeout="allow"),
}
