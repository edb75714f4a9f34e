"""Decisions for callers that are not proxied flows.

``POST /v1/check``  {tool, args, agent, session, server?, subject?, account?, flow?, justification?}
    -> the Decision JSON (``airlock policy explain --json`` shape) plus ``refusal`` (text for the
    model, null when allowed), ``tool_changed`` and ``latency_us``. Used by agent hooks (Claude Code
    PreToolUse and the like; server defaults to "native") and by ``airlock mcp wrap``.
``POST /v1/mcp/tools/list``  {server, result} -> {result (filtered + annotated), hidden, changed}
``GET  /v1/mcp/tools[?server=S]`` -> {tools: [remembered hashes, changed flags]}
``POST /v1/mcp/tools/accept`` {server, tool} -> the record, its latest version now the baseline
"""
from __future__ import annotations

from typing import Any

from aiohttp import web

from proxy.mcp import decide
from proxy.mcp.tools import JUSTIFICATION, ToolWatch, rewrite_result
from proxy.policy import CallContext

_STR_FIELDS = ("agent", "session", "server", "subject", "account", "flow", "justification")


def _bad(rt, message: str) -> web.Response:
    rt.audit.emit("check_invalid", reason=message)
    return web.json_response({"error": {"message": message, "status": 400}}, status=400)


async def _body(request: web.Request) -> Any:
    try:
        return await request.json(loads=__import__("orjson").loads)
    except Exception:
        return None


def routes(rt) -> list[web.RouteDef]:
    fw = rt.services.get("mcp")
    watch: ToolWatch = fw.watch if fw is not None else ToolWatch(rt.store, rt.audit)

    async def check(request: web.Request) -> web.Response:
        body = await _body(request)
        if not isinstance(body, dict):
            return _bad(rt, "body must be a JSON object like {\"tool\": \"bash\", \"args\": {...}}")
        tool = body.get("tool")
        if not isinstance(tool, str) or not tool:
            return _bad(rt, "\"tool\" (the tool name) is required")
        args = body.get("args") if body.get("args") is not None else {}
        if not isinstance(args, dict):
            return _bad(rt, "\"args\" must be a JSON object")
        for k in _STR_FIELDS:
            if body.get(k) is not None and not isinstance(body[k], str):
                return _bad(rt, f"\"{k}\" must be a string")
        args = dict(args)
        justification = decide.text_of(body.get("justification")) or decide.text_of(args.pop(JUSTIFICATION, None))
        args.pop(JUSTIFICATION, None)
        server = body.get("server") or "native"
        changed = server != "native" and await watch.is_changed(server, tool)
        ctx = CallContext(tool=tool, server=server, args=args, agent=body.get("agent"), subject=body.get("subject"),
                          account=body.get("account"), flow=body.get("flow"), session_id=body.get("session"),
                          justification=justification, tool_changed=changed)
        engine = rt.policy.engine
        ev = decide.evaluate(engine, ctx)
        outcome = "allowed" if ev.why is None else ("approval_required" if ev.why == "approval" else "refused")
        decide.emit(rt.audit, ctx, ev, outcome, source=str(body.get("source") or "check"),
                    policy_version=engine.version)
        out = ev.decision.as_dict()
        out.update(refusal=decide.refusal(ev, tool), tool_changed=changed, latency_us=ev.latency_us,
                   missing_justification=ev.why == "missing_justification")
        return web.json_response(out)

    async def tools_list(request: web.Request) -> web.Response:
        body = await _body(request)
        if not isinstance(body, dict) or not isinstance(body.get("server"), str) \
                or not isinstance(body.get("result"), dict):
            return _bad(rt, "body must be {\"server\": NAME, \"result\": <tools/list result>}")
        server = body["server"]
        result, originals, hidden = rewrite_result(body["result"], server, rt.policy.engine)
        if hidden:
            rt.audit.emit("tools_hidden", server=server, tools=hidden)
        changed = await watch.observe(server, originals)
        return web.json_response({"result": result, "hidden": hidden, "changed": changed})

    async def tools(request: web.Request) -> web.Response:
        return web.json_response({"tools": await watch.records(request.query.get("server") or None)})

    async def accept(request: web.Request) -> web.Response:
        body = await _body(request)
        if not isinstance(body, dict) or not isinstance(body.get("server"), str) \
                or not isinstance(body.get("tool"), str):
            return _bad(rt, "body must be {\"server\": NAME, \"tool\": NAME}")
        rec = await watch.accept(body["server"], body["tool"])
        if rec is None:
            return web.json_response({"error": {"message": f"no remembered tool {body['tool']!r} on server "
                                                           f"{body['server']!r}; see 'airlock mcp tools list'",
                                                "status": 404}}, status=404)
        return web.json_response(rec)

    return [web.post("/v1/check", check), web.post("/v1/mcp/tools/list", tools_list),
            web.get("/v1/mcp/tools", tools), web.post("/v1/mcp/tools/accept", accept)]
