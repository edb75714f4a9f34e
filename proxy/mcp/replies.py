"""What Airlock answers itself on MCP: tool results the model can act on, and JSON-RPC errors.

A policy refusal of ``tools/call`` is a *result* with ``isError: true`` and one text
block (every client passes that to the model; Claude Code shows only the first block),
never an HTTP error. Protocol problems (bad JSON, invalid request) are JSON-RPC errors.
"""
from __future__ import annotations

from typing import Any

from .jsonrpc import error as rpc_error  # noqa: F401  (re-exported: one home for the shape)

MISSING_JUSTIFICATION = "missing_justification"
APPROVALS_UNAVAILABLE = "approvals_unavailable"
APPROVAL_REQUIRED = "approval_required"


def tool_result(rpc_id: Any, text: str, is_error: bool = True, structured: dict | None = None,
                modern: bool = False) -> dict:
    """A JSON-RPC response carrying a CallToolResult with one text block."""
    result: dict[str, Any] = {"content": [{"type": "text", "text": text}], "isError": is_error}
    if structured is not None:
        result["structuredContent"] = structured
    if modern:                                  # 2026-07-28 results carry resultType
        result["resultType"] = "complete"
    return {"jsonrpc": "2.0", "id": rpc_id, "result": result}


def _get(decision: Any, name: str, default: Any = None) -> Any:
    if isinstance(decision, dict):
        return decision.get(name, default)
    return getattr(decision, name, default)


def refusal_text(decision: Any, tool: str | None = None, why: str | None = None) -> str:
    """Text for a refused call: which rule, why, and what to do instead.

    ``why`` is None for a policy deny, ``MISSING_JUSTIFICATION`` when the rule requires a
    justification that the call lacked, ``APPROVALS_UNAVAILABLE`` for require_approval on
    an Airlock without the approvals component.
    """
    rule = _get(decision, "rule") or "default"
    reason = (_get(decision, "reason") or "").strip().rstrip(".")
    name = f"'{tool}'" if tool else "this tool"
    if why == MISSING_JUSTIFICATION:
        return (f"Airlock policy (rule {rule}) requires a justification for {name}; the call was not run. "
                f"Call {name} again with the same arguments plus a \"justification\" argument: one or two "
                "sentences saying why this call is needed for the user's task. Justifications are reviewed "
                "and audited.")
    if why == APPROVAL_REQUIRED:
        wf = _get(decision, "approval_workflow")
        return (f"Airlock policy (rule {rule}) requires human approval{f' (workflow {wf})' if wf else ''} "
                f"for {name}: {reason or 'risky call'}. Wait for a human to approve it, or ask the user.")
    if why == APPROVALS_UNAVAILABLE or _get(decision, "action") == "require_approval":
        wf = _get(decision, "approval_workflow")
        wf_text = f" (workflow {wf})" if wf else ""
        return (f"Airlock policy (rule {rule}) requires human approval{wf_text} for {name}: {reason or 'risky call'}. "
                "Approvals are not enabled on this Airlock, so the call was not run. Do not retry it; "
                "tell the user it needs approval and ask them to run it or to enable approvals.")
    return (f"Blocked by Airlock policy (rule {rule}): {reason or 'this call is not allowed'}. "
            f"The call to {name} was not run. Do not retry it unchanged; use another tool or approach, "
            "or ask the user to change the policy if the call is needed.")
