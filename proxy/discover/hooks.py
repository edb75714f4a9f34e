"""Native-tool hooks: turn an agent's hook input into a ``POST /v1/check`` body and the
decision back into that agent's hook answer. Fails closed: no decision means deny.

Supported: Claude Code ``PreToolUse``, Gemini CLI ``BeforeTool``, Cursor ``beforeShellExecution``
(and ``preToolUse``)."""
from __future__ import annotations

from typing import Any

KINDS = ("claude-code", "gemini", "cursor")


def check_request(kind: str, event: Any) -> dict | None:
    """Hook stdin JSON -> the /v1/check body; None = not ours to decide (MCP tools pass the firewall)."""
    if not isinstance(event, dict):
        raise ValueError("hook input must be a JSON object")
    if kind == "cursor" and event.get("hook_event_name") == "beforeShellExecution":
        tool, args = "Shell", {"command": event.get("command"), "cwd": event.get("cwd")}
    else:
        tool, args = event.get("tool_name"), event.get("tool_input")
    if not isinstance(tool, str) or not tool:
        raise ValueError(f"hook input has no tool name ({kind})")
    if tool.startswith("mcp__") or (kind == "cursor" and event.get("hook_event_name") == "beforeMCPExecution"):
        return None
    session = event.get("session_id") or event.get("conversation_id")
    return {"tool": tool, "args": args if isinstance(args, dict) else {}, "agent": kind,
            "session": session if isinstance(session, str) else None, "server": "native",
            "source": f"{kind}-hook"}


def answer(kind: str, decision: dict | None, error: str | None = None) -> dict | None:
    """The /v1/check answer -> the agent's hook JSON (None = print nothing: normal permission flow)."""
    action = (decision.get("decision") or decision.get("action")) if isinstance(decision, dict) else None
    if error is not None or action not in ("allow", "deny", "require_approval"):
        return _out(kind, "deny", f"Airlock could not check this call ({error or 'no decision'}); "
                                  "denied (fail closed)")
    reason = decision.get("refusal") or decision.get("reason") or ""
    if action == "allow":
        return {} if kind == "gemini" else None          # Gemini expects JSON on stdout
    if action == "require_approval":
        return _out(kind, "ask", f"Airlock policy requires approval: {reason}".rstrip(": "))
    return _out(kind, "deny", f"Blocked by Airlock policy: {reason}".rstrip(": "))


def _out(kind: str, decision: str, reason: str) -> dict:
    if kind == "claude-code":
        return {"hookSpecificOutput": {"hookEventName": "PreToolUse", "permissionDecision": decision,
                                       "permissionDecisionReason": reason}}
    if kind == "cursor":
        return {"permission": decision, "user_message": reason, "agent_message": reason}
    return {"decision": "deny", "reason": reason}           # Gemini has no "ask": deny and say why
