"""Admin API and pages for human approvals.

JSON (admin token):
  GET  /v1/approvals?state=pending|approved|denied|expired|cancelled|all&limit=N
  GET  /v1/approvals/{id}
  POST /v1/approvals/{id}/approve   {"approver": "alice", "comment": "..."}
  POST /v1/approvals/{id}/deny      {"approver": "alice", "comment": "..."}
  POST /v1/approvals/{id}/cancel    {"reason": "..."}
Pages (public: they hold no data until the admin token is typed in, or carry a signed link):
  GET  /approvals                    pending list, details, approve/deny with comment (phone friendly)
  GET  /approvals/link/{token}       confirmation page of a one-tap link (never decides)
  POST /approvals/link/{token}       decides (form, JSON, or a Mattermost button)
"""
from __future__ import annotations

import html
from importlib import resources

from aiohttp import web

from ..approvals.links import LinkError
from ..approvals.model import STATES

PUBLIC_PREFIXES = ["/approvals", "/approvals/"]
_STATUS = {"recorded": 200, "decided": 200, "missing": 404, "closed": 409, "expired": 409, "self": 403,
           "not_allowed": 403, "duplicate": 409, "invalid": 400}


def _err(status: int, message: str) -> web.Response:
    return web.json_response({"error": {"message": message, "status": status}}, status=status)


async def _gate(rt):
    gate = rt.services.get("approvals")
    if gate is None:
        raise web.HTTPServiceUnavailable(text='{"error": {"message": "approvals are not enabled", "status": 503}}',
                                         content_type="application/json")
    return await gate.ready()


def routes(rt) -> list[web.RouteDef]:
    async def list_(request: web.Request) -> web.Response:
        gate = await _gate(rt)
        state = request.query.get("state", "pending")
        if state not in (*STATES, "all"):
            return _err(400, f"state must be one of {', '.join(STATES)} or all")
        try:
            limit = max(1, min(20000, int(request.query.get("limit", "100"))))
        except ValueError:
            return _err(400, "limit must be a number")
        reqs = await gate.service.list(None if state == "all" else state, limit)
        return web.json_response({"approvals": [r.as_dict() for r in reqs]})

    async def show(request: web.Request) -> web.Response:
        gate = await _gate(rt)
        req = await gate.service.get(request.match_info["id"])
        if req is None:
            return _err(404, f"no approval request {request.match_info['id']!r}: see 'airlock approvals list'")
        return web.json_response(req.as_dict())

    def decide(decision: str):
        async def handler(request: web.Request) -> web.Response:
            gate = await _gate(rt)
            body = await _json(request)
            approver = str(body.get("approver") or "").strip()
            if not approver:
                return _err(400, "say who decides: {\"approver\": \"name\"} (CLI: --as NAME)")
            res = await gate.service.vote(request.match_info["id"], approver, decision,
                                          str(body.get("comment") or ""), via="api")
            status = _STATUS.get(res.status, 400)
            if status >= 400:
                return _err(status, res.message)
            return web.json_response({"result": res.status, "state": res.state, "message": res.message,
                                      "approval": res.request.as_dict() if res.request else None})
        return handler

    async def cancel(request: web.Request) -> web.Response:
        gate = await _gate(rt)
        body = await _json(request)
        rid = request.match_info["id"]
        if await gate.service.get(rid) is None:
            return _err(404, f"no approval request {rid!r}")
        ok = await gate.service.cancel(rid, str(body.get("reason") or "cancelled by an admin"), by="admin")
        if not ok:
            return _err(409, "request is no longer pending")
        return web.json_response({"result": "cancelled", "approval": (await gate.service.get(rid)).as_dict()})

    async def page(_request: web.Request) -> web.Response:
        text = resources.files("proxy.admin").joinpath("approvals.html").read_text()
        return web.Response(text=text, content_type="text/html",
                            headers={"cache-control": "no-store", "x-frame-options": "DENY",
                                     "referrer-policy": "no-referrer"})

    async def link_get(request: web.Request) -> web.Response:
        gate = await _gate(rt)
        token = request.match_info["token"]
        try:
            link = gate.links.parse(token)
        except LinkError as e:
            return _page(410, "Link not usable", str(e))
        req = await gate.service.get(link.approval_id)
        if req is None:
            return _page(404, "Unknown request", "This approval request no longer exists.")
        if req.final:
            return _page(409, f"Already {req.state}", f"Request {req.id} was {req.state} by {req.decided_by or '-'}.")
        if await gate.links.used(link):
            return _page(409, "Link already used", "Each approval link works once.")
        from ..approvals.notify import describe
        _, text, _ = describe(req)
        verb = "Approve" if link.decision == "approve" else "Deny"
        who = (f'<p>Deciding as <b>{html.escape(link.approver)}</b></p>' if link.approver else
               '<label>Your name<input name="approver" required autocomplete="name"></label>')
        body = (f'<pre>{html.escape(text)}</pre><form method="post">{who}'
                f'<label>Comment<textarea name="comment" rows="2"></textarea></label>'
                f'<input type="hidden" name="confirm" value="1">'
                f'<button class="{link.decision}" type="submit">{verb} {html.escape(req.id)}</button></form>')
        return _page(200, f"{verb} this call?", body, raw=True)

    async def link_post(request: web.Request) -> web.Response:
        gate = await _gate(rt)
        wants_json = request.content_type == "application/json"
        body = await _json(request) if wants_json else dict(await request.post())
        try:
            link = gate.links.parse(request.match_info["token"])
        except LinkError as e:
            return _link_answer(wants_json, 410, "Link not usable", str(e))
        approver = link.approver or str(body.get("approver") or body.get("user_name") or "").strip()
        if not approver:
            return _link_answer(wants_json, 400, "Name needed", "Open the link and type your name to decide.")
        if not await gate.links.use(link):
            return _link_answer(wants_json, 409, "Link already used", "Each approval link works once.")
        res = await gate.service.vote(link.approval_id, approver, link.decision, str(body.get("comment") or ""),
                                      via="link")
        if res.status in ("not_allowed", "self", "invalid") and not link.approver:
            await gate.links.release(link)          # a typed name was refused: the link may be used again
        status = _STATUS.get(res.status, 400)
        title = "Done" if status < 400 else "Not recorded"
        return _link_answer(wants_json, status, title, f"{res.message} (request {link.approval_id}).")

    return [
        web.get("/v1/approvals", list_),
        web.get("/v1/approvals/{id}", show),
        web.post("/v1/approvals/{id}/approve", decide("approve")),
        web.post("/v1/approvals/{id}/deny", decide("deny")),
        web.post("/v1/approvals/{id}/cancel", cancel),
        web.get("/approvals", page),
        web.get("/approvals/link/{token}", link_get),
        web.post("/approvals/link/{token}", link_post),
    ]


async def _json(request: web.Request) -> dict:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text='{"error": {"message": "body must be JSON", "status": 400}}',
                                 content_type="application/json") from None
    return body if isinstance(body, dict) else {}


def _link_answer(wants_json: bool, status: int, title: str, text: str) -> web.Response:
    if wants_json:                       # Mattermost buttons show ephemeral_text to the person who tapped
        return web.json_response({"ok": status < 400, "message": text, "ephemeral_text": f"{title}: {text}"},
                                 status=status if status >= 400 else 200)
    return _page(status, title, text)


_STYLE = """body{font:16px/1.4 system-ui,sans-serif;margin:0 auto;max-width:40rem;padding:1rem;color:#111}
pre{white-space:pre-wrap;background:#f4f4f5;padding:.75rem;border-radius:.5rem;font-size:.9rem}
label{display:block;margin:.75rem 0}input,textarea{display:block;width:100%;box-sizing:border-box;font:inherit;
padding:.5rem;margin-top:.25rem}button{width:100%;padding:.9rem;font:inherit;font-weight:600;border:0;
border-radius:.5rem;color:#fff}.approve{background:#15803d}.deny{background:#b91c1c}"""


def _page(status: int, title: str, body: str, raw: bool = False) -> web.Response:
    content = body if raw else f"<p>{html.escape(body)}</p>"
    doc = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
           f'content="width=device-width,initial-scale=1"><meta name="robots" content="noindex">'
           f'<title>{html.escape(title)} · Airlock</title><style>{_STYLE}</style></head><body>'
           f'<h1>{html.escape(title)}</h1>{content}<p><a href="/approvals">All approvals</a></p></body></html>')
    return web.Response(text=doc, status=status, content_type="text/html",
                        headers={"cache-control": "no-store", "x-frame-options": "DENY",
                                 "referrer-policy": "no-referrer"})
