"""Where approval requests reach people: one module per channel type, all async.

Each module exposes ``async def send(ctx: base.Context) -> base.Delivery``.
"""
from __future__ import annotations

from . import email, mattermost, ntfy, slack, webhook

SENDERS = {"webhook": webhook.send, "slack": slack.send, "mattermost": mattermost.send,
           "email": email.send, "ntfy": ntfy.send}

__all__ = ["SENDERS"]
