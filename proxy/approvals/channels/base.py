"""What every channel shares: the message, the delivery record, HTTP POST with retries."""
from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import aiohttp

log = logging.getLogger("proxy.approvals.channels")


@dataclass(slots=True)
class Button:
    label: str
    url: str                 # signed one-tap link (GET: confirmation page, POST: decide)
    decision: str            # approve | deny
    approver: str | None = None


@dataclass(slots=True)
class Message:
    event: str               # approval.requested | approval.escalated | approval.decided
    title: str
    text: str                # plain text: the call, who asked, justification, time left
    markdown: str            # the same for Slack / Mattermost / ntfy
    request: dict            # ApprovalRequest.as_dict()
    page_url: str
    buttons: list[Button] = field(default_factory=list)


@dataclass(slots=True)
class Context:
    name: str                # channel name in the config
    spec: dict[str, Any]     # its settings
    message: Message
    session: aiohttp.ClientSession
    approvers: list[str] = field(default_factory=list)
    links: Any = None        # LinkSigner, for channels that mint per-recipient links


@dataclass(slots=True)
class Delivery:
    channel: str
    type: str
    ok: bool
    attempts: int
    status: int | None = None
    error: str | None = None
    target: str | None = None     # host / address, never a secret

    def as_dict(self) -> dict[str, Any]:
        return {"channel": self.channel, "type": self.type, "ok": self.ok, "attempts": self.attempts,
                "status": self.status, "error": self.error, "target": self.target}


def secret(spec: dict[str, Any], key: str) -> str | None:
    """A secret from ``<key>_env`` (preferred) or ``<key>`` in the channel settings."""
    env = spec.get(f"{key}_env")
    if env:
        return os.environ.get(str(env))
    value = spec.get(key)
    return str(value) if value else None


def target(url: str) -> str:
    """What a delivery log may say about a URL: scheme and host only (webhook paths hold secrets)."""
    from urllib.parse import urlsplit
    u = urlsplit(url)
    return f"{u.scheme}://{u.hostname}{':' + str(u.port) if u.port else ''}"


async def post(ctx: Context, typ: str, url: str, body: bytes, headers: dict[str, str],
               sign=None) -> Delivery:
    """POST with retries and exponential backoff on connection errors, 429 and 5xx.

    ``sign(body) -> dict`` adds fresh signature headers on every attempt."""
    retries = int(ctx.spec.get("retries", 3))
    backoff = float(ctx.spec.get("backoff_seconds", 0.5))
    timeout = aiohttp.ClientTimeout(total=float(ctx.spec.get("timeout_seconds", 10)))
    attempt, status, error = 0, None, None
    while attempt <= retries:
        attempt += 1
        hdrs = dict(headers)
        if sign is not None:
            hdrs.update(sign(body))
        try:
            async with ctx.session.post(url, data=body, headers=hdrs, timeout=timeout) as resp:
                status = resp.status
                await resp.read()
                if status < 300:
                    return Delivery(ctx.name, typ, True, attempt, status, None, target(url))
                error = f"HTTP {status}"
                if status < 500 and status != 429:
                    break
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            error = f"{type(e).__name__}: {e}"[:300]
        if attempt <= retries:
            await asyncio.sleep(backoff * (2 ** (attempt - 1)))
    return Delivery(ctx.name, typ, False, attempt, status, error, target(url))
