"""Mattermost incoming webhook: an attachment with the call and Approve / Deny buttons.

Mattermost buttons POST to their integration URL from the Mattermost server: that
URL is the signed one-tap link, so a button decides in one tap (POST) while the
markdown links in the text open the confirmation page (GET) instead.
"""
from __future__ import annotations

import orjson

from .base import Context, Delivery, post


async def send(ctx: Context) -> Delivery:
    m = ctx.message
    links = " · ".join(f"[{b.label}]({b.url})" for b in m.buttons)
    actions = [{"id": f"{b.decision}{i}", "name": b.label[:60], "type": "button",
                "style": "good" if b.decision == "approve" else "danger",
                "integration": {"url": b.url, "context": {"decision": b.decision, "approver": b.approver or ""}}}
               for i, b in enumerate(m.buttons[:10])]
    payload: dict = {
        "text": f"#### {m.title}",
        "attachments": [{"fallback": m.text[:500], "color": "#d97706", "text": m.markdown + "\n\n" + links
                         + f"\n\n[Open approvals page]({m.page_url})", "actions": actions}],
    }
    for k in ("channel", "username", "icon_url"):
        if ctx.spec.get(k):
            payload[k] = ctx.spec[k]
    return await post(ctx, "mattermost", str(ctx.spec["url"]), orjson.dumps(payload),
                      {"content-type": "application/json"})
