"""Phone / watch push through an ntfy server, with action buttons.

"Approve" and "Deny" are ntfy ``http`` actions: the phone POSTs the signed link
directly (one tap, no app switch). "Review" opens the confirmation page. The
links are bound to ``approver`` (the person who owns the topic).
"""
from __future__ import annotations

import orjson

from .base import Context, Delivery, post, secret


async def send(ctx: Context) -> Delivery:
    m = ctx.message
    approver = str(ctx.spec.get("approver") or f"ntfy:{ctx.spec.get('topic', '')}")
    links = ctx.links
    exp = m.request["expires_at"]
    rid = m.request["id"]
    actions: list[dict] = []
    if m.event != "approval.decided" and links is not None:
        approve = links.url(rid, "approve", approver, exp)
        deny = links.url(rid, "deny", approver, exp)
        actions = [
            {"action": "http", "label": "Approve", "url": approve, "method": "POST",
             "headers": {"content-type": "application/x-www-form-urlencoded"}, "body": "confirm=1", "clear": True},
            {"action": "http", "label": "Deny", "url": deny, "method": "POST",
             "headers": {"content-type": "application/x-www-form-urlencoded"}, "body": "confirm=1", "clear": True},
            {"action": "view", "label": "Review", "url": links.url(rid, "approve", approver, exp)},
        ]
    payload = {"topic": str(ctx.spec.get("topic", "airlock-approvals")), "title": m.title[:250],
               "message": m.text[:3500], "priority": int(ctx.spec.get("priority", 4)),
               "tags": ["warning"], "click": m.page_url, "actions": actions}
    headers = {"content-type": "application/json"}
    token = secret(ctx.spec, "token")
    if token:
        headers["authorization"] = f"Bearer {token}"
    return await post(ctx, "ntfy", str(ctx.spec["url"]).rstrip("/") + "/", orjson.dumps(payload), headers)
