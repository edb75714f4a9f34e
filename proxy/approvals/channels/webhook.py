"""Generic webhook: the request as JSON, signed with HMAC-SHA256.

Headers: ``X-Airlock-Event``, ``X-Airlock-Delivery`` (unique id), ``X-Airlock-Timestamp``
(unix seconds) and ``X-Airlock-Signature: sha256=<hex>`` = HMAC-SHA256(secret,
"<timestamp>.<body>"). Receivers recompute it and reject old timestamps.
"""
from __future__ import annotations

import hashlib
import hmac
import time
import uuid

import orjson

from .base import Context, Delivery, post, secret


def signature(key: str, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(key.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


async def send(ctx: Context) -> Delivery:
    m = ctx.message
    payload = {"event": m.event, "approval": m.request, "page_url": m.page_url,
               "links": [{"label": b.label, "decision": b.decision, "approver": b.approver, "url": b.url}
                         for b in m.buttons],
               "text": m.text}
    body = orjson.dumps(payload)
    key = secret(ctx.spec, "secret")
    delivery = str(uuid.uuid4())

    def sign(raw: bytes) -> dict[str, str]:
        ts = str(int(time.time()))
        hdrs = {"X-Airlock-Timestamp": ts}
        if key:
            hdrs["X-Airlock-Signature"] = signature(key, ts, raw)
        return hdrs

    headers = {"content-type": "application/json", "X-Airlock-Event": m.event, "X-Airlock-Delivery": delivery,
               "user-agent": "airlock-approvals"}
    return await post(ctx, "webhook", str(ctx.spec["url"]), body, headers, sign)
