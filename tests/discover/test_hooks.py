"""Hook input/output mapping for every agent (the e2e tests run them against a real /v1/check)."""
from __future__ import annotations

import pytest

from proxy.discover.hooks import answer, check_request

APPROVAL = {"decision": "require_approval", "reason": "deploys need a human", "refusal": None}
DENY = {"decision": "deny", "refusal": "Blocked: no-rm (no recursive deletes)"}


def test_requests_per_agent():
    claude = check_request("claude-code", {"tool_name": "Bash", "tool_input": {"command": "ls"}, "session_id": "s"})
    assert claude == {"tool": "Bash", "args": {"command": "ls"}, "agent": "claude-code", "session": "s",
                      "server": "native", "source": "claude-code-hook"}
    cursor = check_request("cursor", {"hook_event_name": "beforeShellExecution", "command": "ls", "cwd": "/w",
                                      "conversation_id": "c"})
    assert cursor["tool"] == "Shell" and cursor["args"] == {"command": "ls", "cwd": "/w"} and cursor["session"] == "c"
    assert check_request("gemini", {"tool_name": "mcp__github__create_issue", "tool_input": {}}) is None
    assert check_request("cursor", {"hook_event_name": "beforeMCPExecution", "tool_name": "query"}) is None
    for bad in (None, [], {"tool_input": {}}, {"tool_name": ""}):
        with pytest.raises(ValueError):
            check_request("claude-code", bad)


def test_answers_per_agent():
    assert answer("claude-code", {"decision": "allow"}) is None and answer("cursor", {"decision": "allow"}) is None
    assert answer("gemini", {"decision": "allow"}) == {}
    c = answer("claude-code", APPROVAL)["hookSpecificOutput"]
    assert c["permissionDecision"] == "ask" and "deploys need a human" in c["permissionDecisionReason"]
    assert answer("cursor", APPROVAL)["permission"] == "ask"
    g = answer("gemini", APPROVAL)
    assert g["decision"] == "deny" and "requires approval" in g["reason"]
    assert answer("cursor", DENY) == {"permission": "deny", "user_message": "Blocked by Airlock policy: " + DENY["refusal"],
                                      "agent_message": "Blocked by Airlock policy: " + DENY["refusal"]}
    for kind in ("claude-code", "gemini", "cursor"):
        out = answer(kind, None, "ConnectError")
        assert "fail closed" in str(out) and ("deny" in str(out))
        assert "fail closed" in str(answer(kind, {"unexpected": True}))
