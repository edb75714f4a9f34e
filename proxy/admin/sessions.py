"""Admin API of runtime sessions:

- ``GET /v1/sessions?since=T&limit=N&account=A`` -> ``[{session, account, agent, ..., ended}]``
- ``GET /v1/sessions/{id}`` -> ``{"summary": {...}, "timeline": [rows]}`` (404 if unknown)
- ``POST /v1/sessions/{id}/end {"reason"?}`` -> ends it: later calls of the session get 401 (audited)
"""
from __future__ import annotations

from aiohttp import web

from ..audit import query as q
from ..sessions import service
from .audit import _call, error, json_response


def routes(rt) -> list[web.RouteDef]:
    sessions = service(rt)

    async def list_sessions(request: web.Request) -> web.Response:
        try:
            since = q.parse_time(request.query.get("since"))
            limit = int(request.query.get("limit", "100"))
        except (q.QueryError, ValueError) as e:
            return error(400, str(e) if isinstance(e, q.QueryError) else "limit must be an integer")
        out, err = await _call(sessions.list, since, limit, request.query.get("account"))
        return err or json_response(out)

    async def show(request: web.Request) -> web.Response:
        sid = request.match_info["id"]
        out, err = await _call(sessions.timeline, sid)
        if err:
            return err
        if not out["timeline"] and not await sessions.is_ended(sid):
            return error(404, f"no session {sid!r} in the audit trail: see 'airlock sessions list'")
        out["summary"]["ended"] = out["summary"]["ended"] or await sessions.is_ended(sid)
        return json_response(out)

    async def end(request: web.Request) -> web.Response:
        sid = request.match_info["id"]
        reason = ""
        if request.can_read_body:
            try:
                body = await request.json()
            except Exception:  # noqa: BLE001
                return error(400, 'body must be JSON: {"reason": "..."}')
            if isinstance(body, dict):
                reason = str(body.get("reason") or "")
        if not sid.strip() or len(sid) > 200:
            return error(400, "invalid session id")
        out = await sessions.end(sid, by=request.headers.get("x-airlock-operator", "admin"), reason=reason)
        return json_response(out)

    return [web.get("/v1/sessions", list_sessions), web.get("/v1/sessions/{id}", show),
            web.post("/v1/sessions/{id}/end", end)]
