"""Shared bits of the approvals tests."""
from __future__ import annotations

import asyncio
import time

from proxy.policy import Workflow

WORKFLOWS = {
    "one": Workflow(name="one", timeout_seconds=30),
    "quorum": Workflow(name="quorum", timeout_seconds=30, required_approvals=2,
                       approvers=("alice@example.com", "bob@example.com", "carol@example.com")),
    "short": Workflow(name="short", timeout_seconds=1),
    "short-approve": Workflow(name="short-approve", timeout_seconds=1, on_timeout="allow"),
}


async def wait_for(cond, timeout=10.0):
    """Poll ``cond()`` until it is true (True) or ``timeout`` passes (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        await asyncio.sleep(0.02)
    return False
