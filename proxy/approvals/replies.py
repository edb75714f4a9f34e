"""What the approvals addon answers MCP clients: tool results in plain words."""
from __future__ import annotations

import time
from typing import Any

import orjson
from mitmproxy import http

from ..mcp.replies import tool_result
from .model import APPROVED, CANCELLED, DENIED, EXPIRED, ApprovalRequest

STATUS_TOOL = "airlock_approval_status"
STATUS_TOOL_DEF = {
    "name": STATUS_TOOL,
    "title": "Airlock approval status",
    "description": ("Check whether a tool call that Airlock held for human approval has been decided. "
                    "Pass the request_id from the pending_approval result. When the status is 'approved', "
                    "call the original tool again with exactly the same arguments: it then runs once."),
    "inputSchema": {"type": "object", "properties": {
        "request_id": {"type": "string", "description": "The id from the pending_approval result (apr_...)."}},
        "required": ["request_id"]},
    "annotations": {"readOnlyHint": True, "destructiveHint": False, "idempotentHint": True,
                    "openWorldHint": False},
}


def respond(flow: http.HTTPFlow, payload: dict) -> http.Response:
    hdrs = {"content-type": "application/json"}
    sid = flow.request.headers.get("mcp-session-id")
    if sid:
        hdrs["mcp-session-id"] = sid
    return http.Response.make(200, orjson.dumps(payload), hdrs)


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _last_comment(req: ApprovalRequest) -> str:
    for v in reversed(req.votes):
        if v.comment:
            return f" Comment from {v.approver}: \"{v.comment}\"."
    return ""


def refusal(rpc_id: Any, req: ApprovalRequest, modern: bool, retry_hint: bool = False) -> dict:
    """The call was not run because the request ended without approval."""
    name = f"'{req.tool}'"
    if req.state == DENIED:
        text = (f"A human approver ({req.decided_by or 'unknown'}) denied the call to {name} "
                f"(approval {req.id}).{_last_comment(req)} The call was not run. Do not retry it unchanged; "
                "tell the user it was denied or choose another approach.")
    elif req.state == EXPIRED:
        text = (f"No approver decided on the call to {name} in time (approval {req.id} expired), so it was not "
                "run. Tell the user it is waiting for approval; retry only if they ask you to.")
    elif req.state == CANCELLED:
        text = (f"The approval request {req.id} for {name} was cancelled ({req.decision_reason or 'no reason'}); "
                "the call was not run.")
    else:
        text = f"The call to {name} was not run (approval {req.id} is {req.state})."
    if retry_hint:
        text += " Calling it again starts a new approval request."
    return tool_result(rpc_id, text, is_error=True, modern=modern)


def failure(rpc_id: Any, tool: str, reason: str, modern: bool) -> dict:
    return tool_result(rpc_id, (
        f"Airlock could not obtain a human approval for '{tool}' ({reason}), so the call was not run "
        "(fail closed). Retry later or tell the user that approvals are unavailable."), is_error=True, modern=modern)


def upstream_failed(rpc_id: Any, tool: str, why: str, modern: bool) -> dict:
    return tool_result(rpc_id, f"The call to '{tool}' was approved, but the MCP server could not answer it ({why}). "
                       "Retrying starts a new approval request.", is_error=True, modern=modern)


def pending(rpc_id: Any, req: ApprovalRequest, poll: float, modern: bool, again: bool = False) -> dict:
    info = {"status": "pending_approval", "request_id": req.id, "poll_interval_seconds": int(poll),
            "expires_at": _when(req.expires_at), "tool": req.tool}
    lead = ("This call is still waiting for human approval" if again else
            "This call needs human approval and has NOT been run yet")
    text = (f"{lead}. {orjson.dumps(info).decode()} "
            f"Check the decision by calling the tool '{STATUS_TOOL}' with {{\"request_id\": \"{req.id}\"}} "
            f"about every {int(poll)} seconds (or ask the user to approve it). When the status is 'approved', "
            f"call '{req.tool}' again with exactly the same arguments; it will then run once. If it is denied "
            "or expires, do not retry it.")
    return tool_result(rpc_id, text, is_error=True, modern=modern)


def status(rpc_id: Any, req: ApprovalRequest | None, request_id: str, modern: bool) -> dict:
    if req is None:
        return tool_result(rpc_id, f"No approval request {request_id!r} is known to Airlock (check the id).",
                           is_error=True, modern=modern)
    info: dict[str, Any] = {"request_id": req.id, "status": req.state, "tool": req.tool,
                            "approvals": sum(1 for v in req.votes if v.decision == "approve"),
                            "required_approvals": req.required_approvals, "expires_at": _when(req.expires_at)}
    if req.decided_by:
        info["decided_by"] = req.decided_by
    comments = [{"approver": v.approver, "comment": v.comment} for v in req.votes if v.comment]
    if comments:
        info["comments"] = comments
    if req.state == APPROVED:
        hint = (f"Approved. Call '{req.tool}' again now with exactly the same arguments; it will run once."
                if req.outcome is None else "Approved, and the approved call has already run.")
    elif req.state == "pending":
        hint = "Still waiting for a human decision. Check again later."
    else:
        hint = f"The call was {req.state} and will not run. Do not retry it."
    info["instructions"] = hint
    return tool_result(rpc_id, orjson.dumps(info).decode(), is_error=False, modern=modern)


def inject_tool(result: Any) -> bool:
    """Add the status tool to a tools/list result (first page only); True if changed."""
    tools = result.get("tools") if isinstance(result, dict) else None
    if not isinstance(tools, list) or any(isinstance(t, dict) and t.get("name") == STATUS_TOOL for t in tools):
        return False
    tools.append(dict(STATUS_TOOL_DEF))
    return True
