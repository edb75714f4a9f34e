"""Native-tool hooks: turn an agent's hook input into a ``POST /v1/check`` body and the
decision back into the agent's hook answer. Fails closed: no decision means deny."""
from __future__ import annotations

from typing import Any


def claude_code_request(event: Any) -> dict:
    """Claude Code PreToolUse stdin JSON -> the /v1/check body."""
    if not isinstance(event, dict) or not isinstance(event.get("tool_name"), str):
        raise ValueError("hook input must be Claude Code's PreToolUse JSON with a tool_name")
    args = event.get("tool_input")
    return {"tool": event["tool_name"], "args": args if isinstance(args, dict) else {},
            "agent": "claude-code", "session": event.get("session_id"), "server": "native",
            "source": "claude-code-hook"}


def claude_code_answer(decision: dict | None, error: str | None = None) -> dict | None:
    """The /v1/check answer -> Claude Code's hook JSON (None = no opinion, normal permission flow)."""
    if error is not None or not isinstance(decision, dict):
        return _out("deny", f"Airlock could not check this call ({error or 'no decision'}); denied (fail closed)")
    action = decision.get("decision") or decision.get("action")
    reason = decision.get("refusal") or decision.get("reason") or ""
    if action == "allow":
        return None
    if action == "require_approval":
        return _out("ask", f"Airlock policy requires approval: {reason}".rstrip(": "))
    return _out("deny", f"Blocked by Airlock policy: {reason}".rstrip(": "))


def _out(decision: str, reason: str) -> dict:
    return {"hookSpecificOutput": {"hookEventName": "PreToolUse", "permissionDecision": decision,
                                   "permissionDecisionReason": reason}}
