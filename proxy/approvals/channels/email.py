"""Email over SMTP (STARTTLS or implicit TLS optional), one message per recipient.

Recipients: ``to`` from the channel settings plus the workflow's approvers that are
email addresses (``to_approvers: false`` turns that off). An approver gets links
bound to their own address; other recipients get links that ask for a name.
"""
from __future__ import annotations

import asyncio
import smtplib
import ssl
from email.message import EmailMessage

from .base import Context, Delivery, secret


def recipients(ctx: Context) -> list[str]:
    to = ctx.spec.get("to") or []
    out = [to] if isinstance(to, str) else [str(x) for x in to]
    if ctx.spec.get("to_approvers", True):
        out += [a for a in ctx.approvers if "@" in a]
    seen, uniq = set(), []
    for a in out:
        if a.lower() not in seen:
            seen.add(a.lower())
            uniq.append(a)
    return uniq


def build(ctx: Context, rcpt: str) -> EmailMessage:
    m = ctx.message
    msg = EmailMessage()
    msg["Subject"] = m.title
    msg["From"] = str(ctx.spec.get("from") or "airlock@localhost")
    msg["To"] = rcpt
    lines = [m.text, ""]
    bound = rcpt.lower() in {a.lower() for a in ctx.approvers}
    if m.event != "approval.decided" and ctx.links is not None:
        rid, exp = m.request["id"], m.request["expires_at"]
        who = rcpt if bound else None
        lines += [f"Approve: {ctx.links.url(rid, 'approve', who, exp)}",
                  f"Deny:    {ctx.links.url(rid, 'deny', who, exp)}", ""]
    lines.append(f"All pending approvals: {m.page_url}")
    msg.set_content("\n".join(lines))
    return msg


def _deliver(spec: dict, messages: list[EmailMessage]) -> None:
    host, port = str(spec["host"]), int(spec.get("port", 25))
    timeout = float(spec.get("timeout_seconds", 10))
    cls = smtplib.SMTP_SSL if spec.get("ssl") else smtplib.SMTP
    with cls(host, port, timeout=timeout) as smtp:
        if spec.get("starttls"):
            smtp.starttls(context=ssl.create_default_context())
        user = spec.get("username")
        if user:
            smtp.login(str(user), secret(spec, "password") or "")
        for msg in messages:
            smtp.send_message(msg)


async def send(ctx: Context) -> Delivery:
    rcpts = recipients(ctx)
    where = f"smtp://{ctx.spec.get('host')}:{ctx.spec.get('port', 25)}"
    if not rcpts:
        return Delivery(ctx.name, "email", False, 0, None, "no recipients", where)
    messages = [build(ctx, r) for r in rcpts]
    retries = int(ctx.spec.get("retries", 3))
    backoff = float(ctx.spec.get("backoff_seconds", 0.5))
    error = None
    for attempt in range(1, retries + 2):
        try:
            await asyncio.to_thread(_deliver, ctx.spec, messages)
            return Delivery(ctx.name, "email", True, attempt, 250, None, where)
        except (smtplib.SMTPException, OSError) as e:
            error = f"{type(e).__name__}: {e}"[:300]
            if isinstance(e, smtplib.SMTPAuthenticationError):
                break
        if attempt <= retries:
            await asyncio.sleep(backoff * (2 ** (attempt - 1)))
    return Delivery(ctx.name, "email", False, attempt, None, error, where)
