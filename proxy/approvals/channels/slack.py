"""Slack incoming webhook: the call, its justification and Approve / Deny buttons.

Buttons are URL buttons carrying signed one-tap links: tapping one opens the
confirmation page (GET) where one more tap decides (POST).
"""
from __future__ import annotations

import orjson

from .base import Context, Delivery, post


def blocks(ctx: Context) -> list[dict]:
    m = ctx.message
    out: list[dict] = [
        {"type": "header", "text": {"type": "plain_text", "text": m.title[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": m.markdown[:2900]}},
    ]
    buttons = [{"type": "button", "text": {"type": "plain_text", "text": b.label[:75]}, "url": b.url,
                "style": "primary" if b.decision == "approve" else "danger"} for b in m.buttons[:24]]
    buttons.append({"type": "button", "text": {"type": "plain_text", "text": "Open approvals page"},
                    "url": m.page_url})
    out.append({"type": "actions", "elements": buttons})
    return out


async def send(ctx: Context) -> Delivery:
    payload: dict = {"text": ctx.message.title, "blocks": blocks(ctx)}
    for k in ("channel", "username", "icon_emoji"):
        if ctx.spec.get(k):
            payload[k] = ctx.spec[k]
    return await post(ctx, "slack", str(ctx.spec["url"]), orjson.dumps(payload),
                      {"content-type": "application/json"})
