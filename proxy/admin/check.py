"""Decisions for callers that are not proxied flows.

``POST /v1/check``  {tool, args, agent, session, server?, subject?, account?, flow?, justification?}
    -> the Decision JSON (``airlock policy explain --json`` shape) plus ``refusal`` (text for the
    model, null when allowed), ``tool_changed``, ``missing_justification`` and ``latency_us``. Used by
    agent hooks (Claude Code PreToolUse and the like; server defaults to "native") and ``airlock mcp wrap``.
``POST /v1/mcp/tools/list``  {server, result} -> {result (filtered + annotated), hidden, changed}
``GET  /v1/mcp/tools[?server=S]`` -> {tools: [remembered hashes, changed flags]}
``POST /v1/mcp/tools/accept`` {server, tool} -> the record, its latest version now the baseline

The first three also take a gateway token (``AGENT_PATHS``), so agents' hooks need no admin token.
"""
from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from proxy.mcp import decide
from proxy.mcp.tools import ToolWatch

# callable with the agent's own gateway token (``airlock hook``, ``airlock mcp wrap``) instead of the
# admin token: the token's account, flow, subject and agent then replace what the body claims
AGENT_PATHS = ["/v1/check", "/v1/mcp/tools/list", "/v1/mcp/tools"]


async def _body(request: web.Request) -> Any:
    try:
        return orjson.loads(await request.read())
    except (orjson.JSONDecodeError, ValueError):
        return None


def routes(rt) -> list[web.RouteDef]:
    fw = rt.services.get("mcp")
    watch: ToolWatch = fw.watch if fw is not None else ToolWatch(rt.store, rt.audit)

    async def check(request: web.Request) -> web.Response:
        status, out = await decide.check(rt, watch, await _body(request), request.get("identity"))
        return web.json_response(out, status=status)

    async def tools_list(request: web.Request) -> web.Response:
        status, out = await decide.tools_list(rt, watch, await _body(request))
        return web.json_response(out, status=status)

    async def tools(request: web.Request) -> web.Response:
        return web.json_response({"tools": await watch.records(request.query.get("server") or None)})

    async def accept(request: web.Request) -> web.Response:
        body = await _body(request)
        if not isinstance(body, dict) or not isinstance(body.get("server"), str) \
                or not isinstance(body.get("tool"), str):
            rt.audit.emit("check_invalid", reason="accept needs server and tool")
            return web.json_response({"error": {"message": 'body must be {"server": NAME, "tool": NAME}',
                                                "status": 400}}, status=400)
        rec = await watch.accept(body["server"], body["tool"])
        if rec is None:
            return web.json_response({"error": {"message": f"no remembered tool {body['tool']!r} on server "
                                                           f"{body['server']!r}; see 'airlock mcp tools list'",
                                                "status": 404}}, status=404)
        return web.json_response(rec)

    return [web.post("/v1/check", check), web.post("/v1/mcp/tools/list", tools_list),
            web.get("/v1/mcp/tools", tools), web.post("/v1/mcp/tools/accept", accept)]
