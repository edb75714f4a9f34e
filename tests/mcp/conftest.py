"""Fixtures for the MCP firewall tests: a Runtime with the real policy engine and store."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.harness import RecordingAudit

HERE = Path(__file__).resolve().parent
POLICY = HERE / "policy.yaml"
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))


@pytest.fixture
def rt():
    from proxy.config import from_dict
    from proxy.policy import PolicyHolder
    from proxy.runtime import Runtime
    from proxy.store.memory import MemoryStore
    cfg = from_dict({"mcp_servers": {"srv": {"url": "http://127.0.0.1:9/mcp"}}})
    audit = RecordingAudit()
    return Runtime(config=cfg, store=MemoryStore(), audit=audit, policy=PolicyHolder([POLICY]))
