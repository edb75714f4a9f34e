"""Runtime sessions: one per agent run, built from the audit trail.

A session id comes from the client's session headers (``Mcp-Session-Id``,
``x-airlock-session``, agent headers; see ``addons.identity``) and lands in the
``session`` column of every audit row. ``list``/``timeline`` read ClickHouse;
``end`` writes ``session:ended:<id>`` to the store (and publishes it, so every
replica knows at once): the identity addon then refuses the session's calls
through ``rt.services["sessions"].is_ended(id)``.
"""
from __future__ import annotations

import logging
import time
from typing import Any

import orjson

log = logging.getLogger("airlock.sessions")

# Client headers that name a session, in order of preference (the identity addon reads the same list).
SESSION_HEADERS = ("x-airlock-session", "mcp-session-id", "x-session-id", "x-claude-code-session-id",
                   "x-codex-session-id")
ENDED_PREFIX = "session:ended:"
ENDED_CHANNEL = "sessions:ended"
_RECHECK_SECONDS = 1.0        # how long a "not ended" answer is trusted (pub/sub makes it faster)
_MAX_CACHE = 20_000           # "not ended" answers kept; session ids come from clients, so this is bounded


def from_headers(headers) -> str | None:
    """The session id a request names in its headers, if any (at most 200 characters).
    ``headers`` is any mapping with lower-case keys (``flowmeta.headers(flow)``) or mitmproxy Headers."""
    for name in SESSION_HEADERS:
        v = headers.get(name)
        if v:
            return v[:200]
    return None


def ended_key(session_id: str) -> str:
    return ENDED_PREFIX + session_id


async def is_ended(store: Any, session_id: str) -> bool:
    """True if an administrator ended the session (a store read; prefer ``Sessions.is_ended``)."""
    return await store.get(ended_key(session_id)) is not None


class Sessions:
    """The ``sessions`` service: ended-session checks on the hot path, and the read side."""

    def __init__(self, store: Any, audit: Any):
        self.store = store
        self.audit = audit
        self._ended: set[str] = set()
        self._fresh: dict[str, float] = {}      # session -> monotonic time it was seen not ended
        self._subscribed = False

    def _subscribe(self) -> None:
        if self._subscribed:
            return
        self._subscribed = True
        try:
            self.store.subscribe(ENDED_CHANNEL, self._on_ended)
        except Exception:  # noqa: BLE001 - the store read below still answers correctly
            log.exception("sessions: could not subscribe to %s", ENDED_CHANNEL)

    def _on_ended(self, channel: str, message: bytes) -> None:
        sid = message.decode(errors="replace")
        self._ended.add(sid)
        self._fresh.pop(sid, None)

    def known(self, session_id: str) -> bool | None:
        """True/False when the answer is known without a store read, None when ``is_ended`` must ask."""
        if session_id in self._ended:
            return True
        seen = self._fresh.get(session_id)
        if seen is not None and time.monotonic() - seen < _RECHECK_SECONDS:
            return False
        return None

    async def is_ended(self, session_id: str) -> bool:
        """Cheap: a set lookup, then at most one store read per session per second."""
        known = self.known(session_id)
        if known is not None:
            return known
        self._subscribe()
        now = time.monotonic()
        if await self.store.get(ended_key(session_id)) is not None:
            self._ended.add(session_id)
            return True
        if len(self._fresh) >= _MAX_CACHE:
            self._prune(now)
        self._fresh[session_id] = now
        return False

    def _prune(self, now: float) -> None:
        """Forget answers too old to be trusted anyway; all of them if that is not enough."""
        fresh = {s: t for s, t in self._fresh.items() if now - t < _RECHECK_SECONDS}
        self._fresh = fresh if len(fresh) < _MAX_CACHE // 2 else {}

    async def end(self, session_id: str, by: str = "admin", reason: str = "") -> dict[str, Any]:
        """End a session: its later calls are refused. Audited. Idempotent."""
        record = {"session": session_id, "ended_at": time.time(), "by": by, "reason": reason}
        created = await self.store.set(ended_key(session_id), orjson.dumps(record), only_if_absent=True)
        if not created:
            raw = await self.store.get(ended_key(session_id))
            old = orjson.loads(raw) if raw else record
            return dict(old, already_ended=True)
        self._ended.add(session_id)
        await self.store.publish(ENDED_CHANNEL, session_id.encode())
        fields = {"session": session_id, "reason": reason or "ended by an administrator", "outcome": "ended",
                  "subject": by}
        write = getattr(self.audit, "write", None)
        if write is not None:
            await write("session_end", **fields)
        else:
            self.audit.emit("session_end", **fields)
        return dict(record, already_ended=False)

    # -- read side (blocking ClickHouse queries: run in a thread) -------------------------
    def list(self, since_us: int | None = None, limit: int = 100, account: str | None = None) -> list[dict]:
        conds, params = [], {"lim": max(1, min(int(limit), 10_000))}
        if since_us is not None:
            conds.append("last_ts >= fromUnixTimestamp64Micro({since:Int64})")
            params["since"] = since_us
        if account:
            conds.append("account = {account:String}")
            params["account"] = account
        having = (" HAVING " + " AND ".join(conds)) if conds else ""
        return self.audit.query(
            "SELECT session, any(account) AS account, any(agent) AS agent, any(subject) AS subject, "
            "min(first_ts) AS first_ts, max(last_ts) AS last_ts, sum(events) AS events, "
            "sum(tool_calls) AS tool_calls, sum(model_calls) AS model_calls, sum(denied) AS denied, "
            "sum(tokens) AS tokens, round(sum(cost), 6) AS cost, max(ended) AS ended "
            f"FROM sessions GROUP BY session{having} ORDER BY last_ts DESC LIMIT {{lim:UInt32}}", params)

    def timeline(self, session_id: str, limit: int = 5000) -> dict[str, Any]:
        rows = self.audit.query(
            "SELECT ts, kind, account, agent, subject, listener, route_kind, route_name, method, path, status, "
            "latency_ms, outcome, tool, server, action, rule, reason, provider, model, tokens_in, tokens_out, "
            "tokens, cost, approval_id, data FROM events WHERE session = {s:String} "
            "ORDER BY ts, stream, seq LIMIT {lim:UInt32}", {"s": session_id, "lim": max(1, min(int(limit), 100_000))})
        summary = {"session": session_id, "events": len(rows),
                   "tool_calls": sum(1 for r in rows if r["kind"] == "request" and r["route_kind"] == "mcp"),
                   "model_calls": sum(1 for r in rows if r["kind"] == "request" and r["model"]),
                   "denied": sum(1 for r in rows if r["action"] == "deny" or r["status"] in (401, 403, 429)),
                   "approvals": sum(1 for r in rows if r["kind"].startswith("approval.")),
                   "tokens": sum(int(r["tokens"]) for r in rows if r["kind"] == "request"),
                   "cost": round(sum(r["cost"] for r in rows if r["kind"] == "request"), 6),
                   "first_ts": rows[0]["ts"] if rows else None, "last_ts": rows[-1]["ts"] if rows else None,
                   "ended": any(r["kind"] == "session_end" for r in rows)}
        return {"summary": summary, "timeline": rows}


def service(rt: Any) -> Sessions:
    """The process's Sessions service (created on first use in ``rt.services``)."""
    svc = rt.services.get("sessions")
    if svc is None:
        svc = rt.services["sessions"] = Sessions(rt.store, rt.audit)
    return svc

