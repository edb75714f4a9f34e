"""Gateway tokens: mint, verify, list, revoke.

A token is ``alk_<id>_<secret>``. The store keeps only the SHA-256 of the whole
token under ``key:<id>`` with its claims; the token itself is shown once, at
mint time, and never logged. Verified tokens are cached in-process for a few
seconds; a revocation is published so every replica drops it at once.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass

import orjson

from .flowmeta import Identity
from .store.base import Store

PREFIX = "alk_"
_TOKEN = re.compile(r"^alk_([0-9a-f]{16})_([A-Za-z0-9_-]{20,64})$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
REVOKED_CHANNEL = "keys:revoked"
CACHE_SECONDS = 5.0


class TokenError(Exception):
    """Why a token was refused (safe to show the caller: never contains the token)."""


def parse_ttl(value: str | int | float | None, default: float = 30 * 86400) -> float:
    if value is None or value == "":
        return default
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        m = _DURATION.match(str(value))
        if not m:
            raise ValueError(f"invalid duration {value!r}: use e.g. 90s, 30m, 2h, 7d, 4w")
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if seconds <= 0:
        raise ValueError("the TTL must be positive")
    return seconds


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(slots=True)
class KeyRecord:
    id: str
    account: str
    flow: str | None
    subject: str | None
    agent: str | None
    created_at: float
    expires_at: float
    revoked: bool = False

    def public(self) -> dict:
        return {"id": self.id, "account": self.account, "flow": self.flow, "subject": self.subject,
                "agent": self.agent, "created_at": _iso(self.created_at), "expires_at": _iso(self.expires_at),
                "revoked": self.revoked, "expired": self.expires_at <= time.time()}


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


class Keys:
    """Token operations over a Store (shared by the admin API and the identity addon)."""

    def __init__(self, store: Store):
        self.store = store
        self._cache: dict[str, tuple[float, Identity]] = {}   # token hash -> (valid until, identity)
        self._subscribed = False

    def listen(self) -> None:
        """Drop cached tokens when any replica revokes one (call once the loop runs)."""
        if not self._subscribed:
            self.store.subscribe(REVOKED_CHANNEL, self._on_revoked)
            self._subscribed = True

    def _on_revoked(self, channel: str, message: bytes) -> None:
        key_id = message.decode()
        for h, (_, ident) in list(self._cache.items()):
            if ident.token_id == key_id:
                self._cache.pop(h, None)

    async def mint(self, account: str, flow: str | None = None, subject: str | None = None,
                   agent: str | None = None, ttl: str | float | None = None) -> dict:
        if not account or not isinstance(account, str):
            raise ValueError("account is required")
        seconds = parse_ttl(ttl)
        key_id = secrets.token_hex(8)
        token = f"{PREFIX}{key_id}_{secrets.token_urlsafe(24)}"
        now = time.time()
        rec = KeyRecord(key_id, account, flow, subject, agent, now, now + seconds)
        await self.store.hset(f"key:{key_id}", {
            "hash": token_hash(token).encode(),
            "record": orjson.dumps({k: getattr(rec, k) for k in rec.__slots__}),
        }, ttl=seconds + 7 * 86400)     # keep expired keys listable for a week
        return {"token": token, "id": key_id, "account": account, "flow": flow, "subject": subject,
                "agent": agent, "expires_at": _iso(rec.expires_at)}

    async def _record(self, key_id: str) -> tuple[str, KeyRecord] | None:
        h = await self.store.hgetall(f"key:{key_id}")
        if not h or "record" not in h:
            return None
        return h["hash"].decode(), KeyRecord(**orjson.loads(h["record"]))

    def cached(self, token: str | None, session: str | None = None) -> Identity | None:
        """The identity of a token verified in the last few seconds, without a store read (None: ask
        ``verify``, which also says why a token is refused)."""
        return self._from_cache(token_hash(token), session) if token else None

    def _from_cache(self, digest: str, session: str | None) -> Identity | None:
        hit = self._cache.get(digest)
        now = time.time()
        if hit is None or hit[0] <= now or (hit[1].expires_at or 0) <= now:
            return None
        return hit[1] if session is None else _with_session(hit[1], session)

    async def verify(self, token: str | None, session: str | None = None) -> Identity:
        if not token:
            raise TokenError("missing gateway token: send it as 'Authorization: Bearer <token>' or 'x-api-key'")
        digest = token_hash(token)
        if (ident := self._from_cache(digest, session)) is not None:
            return ident
        now = time.time()
        m = _TOKEN.match(token)
        if not m:
            raise TokenError("unknown gateway token: mint one with 'airlock keys mint'")
        found = await self._record(m.group(1))
        if found is None or not hmac.compare_digest(found[0], digest):
            raise TokenError("unknown gateway token: mint one with 'airlock keys mint'")
        rec = found[1]
        if rec.revoked:
            raise TokenError("gateway token revoked: mint a new one with 'airlock keys mint'")
        if rec.expires_at <= now:
            raise TokenError("gateway token expired: mint a new one with 'airlock keys mint'")
        ident = Identity(rec.id, rec.account, rec.flow, rec.subject, rec.agent, f"tok:{rec.id}", rec.expires_at)
        if len(self._cache) > 10000:
            self._cache.clear()
        self._cache[digest] = (now + CACHE_SECONDS, ident)
        return ident if session is None else _with_session(ident, session)

    async def list(self) -> list[dict]:
        out = []
        for key in await self.store.scan("key:"):
            found = await self._record(key[4:])
            if found:
                out.append(found[1].public())
        return sorted(out, key=lambda r: r["created_at"])

    async def revoke(self, key_id: str) -> dict | None:
        found = await self._record(key_id)
        if found is None:
            return None
        digest, rec = found
        rec.revoked = True
        await self.store.hset(f"key:{key_id}", {
            "hash": digest.encode(), "record": orjson.dumps({k: getattr(rec, k) for k in rec.__slots__})})
        await self.store.publish(REVOKED_CHANNEL, key_id.encode())
        self._on_revoked(REVOKED_CHANNEL, key_id.encode())
        return rec.public()


def _with_session(ident: Identity, session: str) -> Identity:
    return Identity(ident.token_id, ident.account, ident.flow, ident.subject, ident.agent, session,
                    ident.expires_at)
