"""Admin API of the policy engine.

``POST /v1/policy/reload`` -> ``{"ok": bool, "version": str, "error": str | null, "errors": [...]}``
(200 either way: an invalid version is rejected and the last good one stays in force).
``GET /v1/policy`` -> ``{"version", "files", "paths", "counts", "reloads", "last_error"}``.
"""
from __future__ import annotations

import asyncio

from aiohttp import web

from proxy.policy import PolicyError


def routes(rt) -> list[web.RouteDef]:
    async def show(_request: web.Request) -> web.Response:
        holder = rt.policy
        if holder is None:
            return web.json_response({"error": {"message": "no policy engine is loaded"}}, status=503)
        return web.json_response(holder.status())

    async def reload(_request: web.Request) -> web.Response:
        holder = rt.policy
        if holder is None:
            return web.json_response({"error": {"message": "no policy engine is loaded"}}, status=503)
        # loading compiles CEL and reads files: keep it off the event loop's hot path
        ok, error = await asyncio.get_running_loop().run_in_executor(None, holder.reload)
        errors = [] if ok else list(holder.last_errors)
        return web.json_response({"ok": ok, "version": holder.engine.version, "error": error,
                                  "errors": errors})

    return [web.get("/v1/policy", show), web.post("/v1/policy/reload", reload)]
