"""One decision, the same wherever it is asked: gateway/proxy flows, ``POST /v1/check``,
and ``airlock mcp wrap`` (stdio). Also the audit row every decision writes."""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import orjson

from . import replies

ARGS_PREVIEW = 2000              # characters of redacted arguments kept in the audit row

try:                                                     # owned by the policy area
    from proxy.policy.secrets import redact as _redact
except ImportError:                                      # pragma: no cover
    def _redact(value: Any) -> Any:
        return value


@dataclass(frozen=True, slots=True)
class Evaluated:
    decision: Any                 # proxy.policy.Decision
    latency_us: int
    why: str | None               # None = the call may go on; else "deny", missing_justification, approval

    @property
    def refused(self) -> bool:
        return self.why is not None


def evaluate(engine: Any, ctx: Any) -> Evaluated:
    """Decide ``ctx`` and say what stops it (if anything)."""
    t0 = time.perf_counter_ns()
    decision = engine.decide(ctx)
    latency_us = (time.perf_counter_ns() - t0) // 1000
    why = None
    if decision.justification == "required" and not (ctx.justification or "").strip() and (
            decision.action != "deny" or _passes_with_justification(engine, ctx)):
        why = replies.MISSING_JUSTIFICATION
    elif decision.action == "deny":
        why = "deny"
    elif decision.action == "require_approval":
        why = "approval"
    return Evaluated(decision, latency_us, why)


def _passes_with_justification(engine: Any, ctx: Any) -> bool:
    """Is the missing justification the only reason for the deny? (Tells the model what to fix.)"""
    again = engine.decide(dataclasses.replace(ctx, justification="(justification given)"))
    return again.action != "deny"


def refusal(ev: Evaluated, tool: str, approvals: bool = False) -> str | None:
    """The text for the model; ``approvals``: an approvals component can take the call."""
    if ev.why is None:
        return None
    if ev.why == replies.MISSING_JUSTIFICATION:
        return replies.refusal_text(ev.decision, tool, replies.MISSING_JUSTIFICATION)
    if ev.why == "approval":
        return replies.refusal_text(ev.decision, tool,
                                    replies.APPROVAL_REQUIRED if approvals else replies.APPROVALS_UNAVAILABLE)
    return replies.refusal_text(ev.decision, tool)


def emit(audit: Any, ctx: Any, ev: Evaluated, outcome: str, **extra: Any) -> None:
    """The ``decision`` audit row (arguments and justification redacted, truncated)."""
    d = ev.decision
    audit.emit("decision", tool=ctx.tool, server=ctx.server, action=d.action, rule=d.rule, reason=d.reason,
               outcome=outcome, latency_us=ev.latency_us, latency_ms=ev.latency_us / 1000, account=ctx.account, subject=ctx.subject,
               agent=ctx.agent, session=ctx.session_id, flow=ctx.flow,
               justification=_redact(ctx.justification) if ctx.justification else None,
               justification_mode=d.justification, approval_workflow=d.approval_workflow,
               tool_changed=ctx.tool_changed, args=preview(ctx.args), **extra)


def preview(args: Any) -> str:
    """Arguments as compact JSON, truncated, then secrets redacted (one bounded scan of the text;
    the audit sink redacts every row again before it is written)."""
    try:
        text = orjson.dumps(args).decode()
    except TypeError:
        text = repr(args)
    cut = len(text) > ARGS_PREVIEW
    text = _redact(text[:ARGS_PREVIEW + 256] if cut else text)      # margin: no half secret at the cut
    return text[:ARGS_PREVIEW] + "...(truncated)" if cut else text


def text_of(value: Any) -> str | None:
    """A justification argument as text (None when absent or blank)."""
    if value is None:
        return None
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    text = text.strip()
    return text or None


# -- the /v1/check and tools/list services (admin API and `airlock mcp wrap` in process) ------------

_STR_FIELDS = ("agent", "session", "server", "subject", "account", "flow", "justification", "source")


async def check(rt: Any, watch: Any, body: Any, identity: Any = None) -> tuple[int, dict]:
    """``POST /v1/check``: (HTTP status, answer). Bad input -> 400 with a message + audit event.
    ``identity``: the caller's verified gateway token; its claims win over the body's."""
    from proxy.policy import CallContext

    from .tools import JUSTIFICATION
    problem = None
    if not isinstance(body, dict):
        problem = 'body must be a JSON object like {"tool": "bash", "args": {...}}'
    elif not isinstance(body.get("tool"), str) or not body["tool"]:
        problem = '"tool" (the tool name) is required'
    elif body.get("args") is not None and not isinstance(body["args"], dict):
        problem = '"args" must be a JSON object'
    else:
        problem = next((f'"{k}" must be a string' for k in _STR_FIELDS
                        if body.get(k) is not None and not isinstance(body[k], str)), None)
    if problem:
        rt.audit.emit("check_invalid", reason=problem)
        return 400, {"error": {"message": problem, "status": 400}}
    tool = body["tool"]
    args = dict(body.get("args") or {})
    justification = text_of(body.get("justification")) or text_of(args.get(JUSTIFICATION))
    args.pop(JUSTIFICATION, None)
    server = body.get("server") or "native"
    changed = server != "native" and await watch.is_changed(server, tool)
    who = {k: body.get(k) for k in ("agent", "subject", "account", "flow")}
    session = body.get("session")
    if identity is not None:
        who.update(account=identity.account, flow=identity.flow, subject=identity.subject,
                   agent=identity.agent or who["agent"])
        session = session or identity.session
    ctx = CallContext(tool=tool, server=server, args=args, session_id=session, justification=justification,
                      tool_changed=changed, **who)
    engine = rt.policy.engine
    ev = evaluate(engine, ctx)
    outcome = "allowed" if ev.why is None else ("approval_required" if ev.why == "approval" else "refused")
    emit(rt.audit, ctx, ev, outcome, source=body.get("source") or "check", policy_version=engine.version)
    out = ev.decision.as_dict()
    out.update(refusal=refusal(ev, tool, approvals="approvals" in rt.services), tool_changed=changed,
               latency_us=ev.latency_us, missing_justification=ev.why == replies.MISSING_JUSTIFICATION)
    return 200, out


async def tools_list(rt: Any, watch: Any, body: Any) -> tuple[int, dict]:
    """Filter + annotate one tools/list result for ``server`` and record its tool hashes."""
    from .tools import rewrite_result
    if not isinstance(body, dict) or not isinstance(body.get("server"), str) \
            or not isinstance(body.get("result"), dict):
        msg = 'body must be {"server": NAME, "result": <tools/list result>}'
        rt.audit.emit("check_invalid", reason=msg)
        return 400, {"error": {"message": msg, "status": 400}}
    server = body["server"]
    result, originals, hidden = rewrite_result(body["result"], server, rt.policy.engine)
    if hidden:
        rt.audit.emit("tools_hidden", server=server, tools=hidden)
    changed = await watch.observe(server, originals)
    return 200, {"result": result, "hidden": hidden, "changed": changed}
