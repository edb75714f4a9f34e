"""Signed one-tap links: ``<public_url>/approvals/link/<token>``.

A token names one request, one decision and (usually) one approver, is signed with
HMAC-SHA256, expires with the request and can be used once. GET of the link only
shows a confirmation page; POST decides (chat link previews never approve anything).

The signing secret comes from ``approvals.link_secret_env`` when set; otherwise it is
kept in ``<data_dir>/approvals-link.key`` (created on first start, mode 0600) and
shared through the store so every replica on one Redis accepts the others' links.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from .model import APPROVE, DENY

PATH = "/approvals/link/"
_SECRET_KEY = "approvals:link-secret"
_USED = "approvals:link-used:"


class LinkError(Exception):
    """A link that cannot be used; ``str()`` is safe to show to the person who opened it."""


@dataclass(frozen=True, slots=True)
class Link:
    approval_id: str
    decision: str
    approver: str | None      # None: the confirmation page asks for a name
    expires_at: float
    nonce: str


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class LinkSigner:
    def __init__(self, secret: bytes, base_url: str, store: Any = None):
        if len(secret) < 16:
            raise ValueError("link secret must be at least 16 bytes")
        self._secret = secret
        self.base_url = base_url.rstrip("/")
        self.store = store

    @classmethod
    async def open(cls, store: Any, base_url: str, data_dir: str | Path | None,
                   secret_env: str | None = None) -> "LinkSigner":
        if secret_env:
            value = os.environ.get(secret_env)
            if not value:
                raise LinkError(f"approvals.link_secret_env names {secret_env}, which is not set")
            return cls(value.encode(), base_url, store)
        secret = _file_secret(Path(data_dir) if data_dir else None)
        await store.set(_SECRET_KEY, secret, only_if_absent=True)     # first replica wins; others adopt it
        shared = await store.get(_SECRET_KEY)
        return cls(shared or secret, base_url, store)

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._secret, payload.encode(), hashlib.sha256).digest())

    def token(self, approval_id: str, decision: str, approver: str | None, expires_at: float) -> str:
        payload = _b64(orjson.dumps({"i": approval_id, "d": decision, "a": approver or "",
                                     "e": round(expires_at, 3), "n": secrets.token_hex(8)}))
        return f"{payload}.{self._sign(payload)}"

    def url(self, approval_id: str, decision: str, approver: str | None, expires_at: float) -> str:
        return self.base_url + PATH + self.token(approval_id, decision, approver, expires_at)

    def page_url(self, approval_id: str | None = None) -> str:
        return self.base_url + "/approvals" + (f"#{approval_id}" if approval_id else "")

    def parse(self, token: str, now: float | None = None) -> Link:
        payload, _, sig = (token or "").partition(".")
        if not payload or not sig or not hmac.compare_digest(sig, self._sign(payload)):
            raise LinkError("this approval link is not valid (wrong or damaged signature)")
        try:
            d = orjson.loads(_unb64(payload))
            link = Link(str(d["i"]), str(d["d"]), str(d.get("a") or "") or None, float(d["e"]), str(d["n"]))
        except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
            raise LinkError("this approval link is not valid (unreadable)") from None
        if link.decision not in (APPROVE, DENY):
            raise LinkError("this approval link is not valid (unknown decision)")
        if link.expires_at <= (now if now is not None else time.time()):
            raise LinkError("this approval link has expired together with its request")
        return link

    async def used(self, link: Link) -> bool:
        return await self.store.get(_USED + link.nonce) is not None

    async def use(self, link: Link) -> bool:
        """Mark the link used; False if it was used before (single use, across replicas)."""
        ttl = max(1.0, link.expires_at - time.time()) + 3600
        return await self.store.set(_USED + link.nonce, b"1", ttl=ttl, only_if_absent=True)

    async def release(self, link: Link) -> None:
        """Give a link back when its vote was refused for a reason the person can fix (name)."""
        await self.store.delete(_USED + link.nonce)


def _file_secret(folder: Path | None) -> bytes:
    if folder is None:
        return secrets.token_hex(32).encode()
    path = folder / "approvals-link.key"
    try:
        value = path.read_bytes().strip()
        if len(value) >= 32:
            return value
    except FileNotFoundError:
        pass
    folder.mkdir(parents=True, exist_ok=True)
    value = secrets.token_hex(32).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(value)
    return value
