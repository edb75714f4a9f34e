"""Reach people: turn an approval request into a message and send it on each channel.

Channel settings come from ``approvals.channels`` in airlock.yaml, overlaid by the
workflow's ``channel_config`` for the same name. Every delivery (success or
failure after retries) is logged and audited as ``approval.notify``; a channel that
is named but not configured is reported the same way, never silently skipped.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import aiohttp

from . import metrics
from .channels import SENDERS
from .channels.base import Button, Context, Delivery, Message
from .model import ApprovalRequest
from .settings import channel_type

log = logging.getLogger(__name__)
MAX_BOUND_APPROVERS = 5


def describe(req: ApprovalRequest, now: float | None = None) -> tuple[str, str, str]:
    """(title, plain text, markdown) for a request."""
    where = f"{req.server}/{req.tool}" if req.server else req.tool
    who = req.subject or req.agent or req.account or "an agent"
    title = f"Approval needed: {where} ({req.id})"
    args = ", ".join(f"{k}={_short(v)}" for k, v in list(req.arguments.items())[:12]) or "(none)"
    left = int(req.seconds_left(now))
    rows = [("Tool", where), ("Requested by", f"{who}" + (f" via {req.agent}" if req.agent and req.subject else "")),
            ("Account", req.account or "-"), ("Arguments", args),
            ("Justification", req.justification or "(none given)"), ("Rule", req.rule or "-"),
            ("Workflow", f"{req.workflow}: {req.required_approvals} approval(s) needed"),
            ("Expires in", f"{left // 60} min {left % 60} s")]
    if req.state != "pending":
        title = f"Approval {req.state}: {where} ({req.id})"
        rows.append(("Decision", f"{req.state} by {req.decided_by or '-'}"))
    text = "\n".join(f"{k}: {v}" for k, v in rows)
    md = "\n".join(f"*{k}:* {v}" if k != "Arguments" else f"*{k}:* `{v}`" for k, v in rows)
    return title, text, md


def _short(value: Any, n: int = 80) -> str:
    s = value if isinstance(value, str) else repr(value)
    return s if len(s) <= n else s[: n - 1] + "…"


class Notifier:
    def __init__(self, settings: Any, links: Any, audit: Any):
        self.settings = settings
        self.links = links
        self.audit = audit
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def channel_spec(self, name: str, workflow: Any) -> dict | None:
        base = self.settings.channels.get(name)
        extra = (getattr(workflow, "channel_config", None) or {}).get(name)
        if base is None and not isinstance(extra, dict):
            return None
        spec = dict(base or {})
        if isinstance(extra, dict):
            spec.update(extra)
        return spec

    def buttons(self, req: ApprovalRequest, approvers: list[str]) -> list[Button]:
        if self.links is None:
            return []
        bound = approvers[:MAX_BOUND_APPROVERS]
        out = []
        for who in bound or [None]:
            suffix = f" as {who}" if who else ""
            out.append(Button(f"Approve{suffix}", self.links.url(req.id, "approve", who, req.expires_at),
                              "approve", who))
            out.append(Button(f"Deny{suffix}", self.links.url(req.id, "deny", who, req.expires_at), "deny", who))
        return out

    def message(self, req: ApprovalRequest, event: str, approvers: list[str]) -> Message:
        title, text, md = describe(req, time.time())
        page = self.links.page_url(req.id) if self.links else self.settings.public_url + "/approvals"
        return Message(event, title, text, md, req.as_dict(), page,
                       self.buttons(req, approvers) if event != "approval.decided" else [])

    async def notify(self, req: ApprovalRequest, workflow: Any, channels: list[str],
                     escalation: dict | None = None) -> list[Delivery]:
        approvers = list(req.approvers)
        event = "approval.escalated" if escalation else "approval.requested"
        msg = self.message(req, event, approvers)
        return await self._send_all(req, workflow, channels, msg, approvers)

    async def decided(self, req: ApprovalRequest, workflow: Any) -> list[Delivery]:
        """Tell webhook channels the outcome (chat channels keep their message)."""
        chans = [c for c in req.channels
                 if (spec := self.channel_spec(c, workflow)) and channel_type(c, spec) == "webhook"]
        if not chans:
            return []
        return await self._send_all(req, workflow, chans, self.message(req, "approval.decided", []), [])

    async def _send_all(self, req: ApprovalRequest, workflow: Any, channels: list[str], msg: Message,
                        approvers: list[str]) -> list[Delivery]:
        jobs = []
        for name in channels:
            spec = self.channel_spec(name, workflow)
            if spec is None:
                jobs.append(_missing(name))
                continue
            typ = channel_type(name, spec)
            sender = SENDERS.get(typ)
            if sender is None:
                jobs.append(_missing(name, f"unknown channel type {typ!r}"))
                continue
            ctx = Context(name, spec, msg, self.session(), approvers, self.links)
            jobs.append(_guard(name, typ, sender(ctx)))
        results = await asyncio.gather(*jobs)
        for d in results:
            metrics.NOTIFY.labels(d.type, "ok" if d.ok else "failed").inc()
            self.audit.emit("approval.notify", approval_id=req.id, event=msg.event, **d.as_dict())
            if d.ok:
                log.info("approval %s: %s sent via %s (%d attempt(s))", req.id, msg.event, d.channel, d.attempts)
            else:
                log.warning("approval %s: %s NOT delivered via %s: %s", req.id, msg.event, d.channel, d.error)
        return list(results)


async def _missing(name: str, why: str | None = None) -> Delivery:
    return Delivery(name, "?", False, 0, None, why or f"channel {name!r} is not configured "
                    "(add it under approvals.channels in airlock.yaml or the workflow's channel_config)")


async def _guard(name: str, typ: str, coro) -> Delivery:
    try:
        return await coro
    except Exception as e:              # a channel bug must not break the others
        log.exception("channel %s failed", name)
        return Delivery(name, typ, False, 1, None, f"{type(e).__name__}: {e}"[:300])
