"""Admin API for gateway tokens: mint, list, revoke (audited; tokens never logged)."""
from __future__ import annotations

from aiohttp import web

from ..identity import Keys


def _keys(rt) -> Keys:
    return rt.services.setdefault("keys", Keys(rt.store))


def routes(rt) -> list:
    async def mint(request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except Exception:
            return web.json_response({"error": {"message": "body must be JSON"}}, status=400)
        if not isinstance(body, dict) or not body.get("account"):
            return web.json_response({"error": {"message": "'account' is required"}}, status=400)
        unknown = set(body) - {"account", "flow", "subject", "agent", "ttl"}
        if unknown:
            return web.json_response({"error": {"message": f"unknown fields: {', '.join(sorted(unknown))}"}},
                                     status=400)
        try:
            out = await _keys(rt).mint(str(body["account"]), body.get("flow"), body.get("subject"),
                                       body.get("agent"), body.get("ttl"))
        except ValueError as e:
            return web.json_response({"error": {"message": str(e)}}, status=400)
        rt.audit.emit("key_mint", token_id=out["id"], account=out["account"], flow=out["flow"],
                      subject=out["subject"], agent=out["agent"], data={"expires_at": out["expires_at"]})
        return web.json_response(out, status=201)

    async def list_keys(_):
        return web.json_response(await _keys(rt).list())

    async def revoke(request: web.Request) -> web.Response:
        key_id = request.match_info["id"]
        out = await _keys(rt).revoke(key_id)
        if out is None:
            return web.json_response({"error": {"message": f"no key {key_id}"}}, status=404)
        rt.audit.emit("key_revoke", token_id=key_id, account=out["account"])
        return web.json_response(out)

    return [web.post("/v1/keys", mint), web.get("/v1/keys", list_keys),
            web.post("/v1/keys/{id}/revoke", revoke), web.delete("/v1/keys/{id}", revoke)]
