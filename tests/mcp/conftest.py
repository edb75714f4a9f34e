"""Fixtures for the MCP firewall tests: a Runtime with the real policy engine and store."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
POLICY = HERE / "policy.yaml"
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))


class RecordingAudit:
    """An AuditSink that keeps events in a list (the tests read what the firewall wrote)."""

    def __init__(self):
        self.events: list[tuple[str, dict]] = []

    def emit(self, kind, **fields):
        self.events.append((kind, fields))

    def of(self, kind):
        return [f for k, f in self.events if k == kind]

    async def start(self):
        pass

    async def close(self):
        pass


@pytest.fixture
def rt():
    from proxy.config import from_dict
    from proxy.policy import PolicyHolder
    from proxy.runtime import Runtime
    from proxy.store.memory import MemoryStore
    cfg = from_dict({"mcp_servers": {"srv": {"url": "http://127.0.0.1:9/mcp"}}})
    audit = RecordingAudit()
    return Runtime(config=cfg, store=MemoryStore(), audit=audit, policy=PolicyHolder([POLICY]))
