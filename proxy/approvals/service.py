"""Approval requests over the ``Store`` interface: create, vote, close, wait.

Works the same on the in-process store and on Redis (several replicas):

* state in one hash per request (``model``), votes counted by an atomic script
  (``scripts``) so a quorum is reached exactly once across replicas;
* pending requests in a sorted set by expiry; every replica sweeps it and the
  atomic close script makes exactly one of them expire a request;
* a decision is published on ``approvals:decided:<id>``; ONE subscription per
  process fans it out to the futures of the calls held here. A waiter re-reads the
  state after registering (publish-before-subscribe race), and a slow rotating
  re-check covers messages lost while the subscriber reconnected;
* if the store stops answering, the sweeper fails every held call at once
  (``StoreUnavailable``), which the addon turns into a clean deny.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


from . import scripts
from .deadlines import Deadlines
from .model import (APPROVE, APPROVED, CANCELLED, DENY, EXPIRED, FINAL, KEY_PREFIX, PENDING,
                    ApprovalRequest, compact_json, new_id, norm_name)
from .settings import Settings
from .waiters import Waiters

log = logging.getLogger(__name__)

CHANNEL = "approvals:decided:"
PENDING_Z = "approvals:pending"        # id -> expires_at
INDEX_Z = "approvals:index"            # id -> created_at (listing)
ESCALATE_Z = "approvals:escalate"      # "<id>|<step>" -> due time
FP_PREFIX = "approvals:fp:"            # call fingerprint -> id (async approvals)
USED_PREFIX = "approvals:used:"        # an approved async call was let through


class ApprovalError(Exception):
    """The approval path failed; the caller must deny."""


class StoreUnavailable(ApprovalError):
    pass


@dataclass(slots=True)
class VoteResult:
    status: str                      # recorded | decided | missing | closed | expired | self | not_allowed | duplicate | invalid
    state: str
    request: ApprovalRequest | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("recorded", "decided")

    @property
    def message(self) -> str:
        return {
            "recorded": f"vote recorded; still pending ({self._quorum()})",
            "decided": f"request {self.state}",
            "missing": "no such approval request",
            "closed": f"request is already {self.state}",
            "expired": "request has expired",
            "self": "the requester cannot approve their own call",
            "not_allowed": "you are not an approver for this request",
            "duplicate": "you have already voted on this request",
            "invalid": "decision must be approve or deny and the approver must be named",
        }.get(self.status, self.status)

    def _quorum(self) -> str:
        if not self.request:
            return ""
        n = sum(1 for v in self.request.votes if v.decision == APPROVE)
        return f"{n} of {self.request.required_approvals} approvals"


class ApprovalService:
    def __init__(self, store: Any, audit: Any, settings: Settings | None = None, notifier: Any = None,
                 workflows: Callable[[str], Any] | None = None):
        self.store = store
        self.audit = audit
        self.settings = settings or Settings()
        self.notifier = notifier
        self.workflows = workflows or (lambda name: None)
        self._waiters = Waiters()                      # approval id -> the calls held here for it
        self._deadlines = Deadlines()
        self._recheck = iter(())
        self._tasks: set[asyncio.Task] = set()
        self._sweeper: asyncio.Task | None = None
        self._last_trim = 0.0
        self.healthy = True
        self.started = False

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        if self.started:
            return
        scripts.register(self.store)
        self.store.subscribe(CHANNEL, self._on_message)
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_loop())
        self.started = True

    async def close(self) -> None:
        for t in [self._sweeper, *self._tasks]:
            if t:
                t.cancel()
        for t in [self._sweeper, *self._tasks]:
            if t:
                try:
                    await t
                except (asyncio.CancelledError, Exception):
                    pass
        self._fail_waiters(ApprovalError("Airlock is shutting down"))
        self._deadlines.clear()
        self.started = False

    def spawn(self, coro) -> asyncio.Task:
        """A background task we keep a reference to (notifications, outcome writes)."""
        t = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)
        return t

    # -- create / read --------------------------------------------------------------------------
    async def create(self, *, tool: str, server: str | None, workflow: Any, arguments: dict | None = None,
                     rule: str | None = None, reason: str | None = None, agent: str | None = None,
                     subject: str | None = None, account: str | None = None, flow: str | None = None,
                     session: str | None = None, justification: str | None = None,
                     fingerprint: str | None = None) -> ApprovalRequest:
        now = time.time()
        timeout = min(float(workflow.timeout_seconds), self.settings.max_hold_seconds)
        req = ApprovalRequest(
            id=new_id(), tool=tool, server=server, workflow=workflow.name, created_at=now,
            expires_at=now + timeout, arguments=arguments or {}, agent=agent, subject=subject,
            account=account, flow=flow, session=session, justification=justification, rule=rule,
            reason=reason, required_approvals=max(1, int(workflow.required_approvals)),
            approvers=list(workflow.approvers), channels=list(workflow.channels),
            async_approval=bool(workflow.async_approval), on_timeout=workflow.on_timeout or "deny",
            fingerprint=fingerprint)
        keep = timeout + self.settings.retention_seconds
        await self.store.hset(req.key, req.to_fields(), ttl=keep)
        await self.store.zadd(PENDING_Z, req.id, req.expires_at)
        await self.store.zadd(INDEX_Z, req.id, now)
        for i, step in enumerate(workflow.escalation or ()):
            after = float(step.get("after_seconds", 0) or 0)
            if 0 < after < timeout:
                await self.store.zadd(ESCALATE_Z, f"{req.id}|{i}", now + after)
        if fingerprint:
            await self.store.set(FP_PREFIX + fingerprint, req.id.encode(), ttl=keep)
        self.audit.emit("approval.created", approval_id=req.id, tool=tool, server=server, workflow=req.workflow,
                        rule=rule, account=account, subject=subject, agent=agent, flow=flow, session=session,
                        required_approvals=req.required_approvals, expires_at=req.expires_at,
                        async_approval=req.async_approval)
        if self.notifier is not None and req.channels:
            self.spawn(self.notifier.notify(req, workflow, req.channels, escalation=None))
        return req

    async def get(self, approval_id: str) -> ApprovalRequest | None:
        if not approval_id or "|" in approval_id:
            return None
        return ApprovalRequest.from_fields(await self.store.hgetall(KEY_PREFIX + approval_id))

    async def list(self, state: str | None = PENDING, limit: int = 100) -> list[ApprovalRequest]:
        """Newest first; ``state=None`` lists every state still retained."""
        if state == PENDING:
            ids = list(reversed(await self.store.zrangebyscore(PENDING_Z, float("inf"))))
        else:
            ids = list(reversed(await self.store.zrangebyscore(INDEX_Z, float("inf"))))
        out: list[ApprovalRequest] = []
        for i in range(0, len(ids), 50):
            batch = await asyncio.gather(*(self.get(x) for x in ids[i:i + 50]))
            out += [r for r in batch if r is not None and (state is None or r.state == state)]
            if len(out) >= limit:
                break
        out.sort(key=lambda r: r.created_at, reverse=True)
        return out[:limit]

    # -- decisions ---------------------------------------------------------------------------------
    async def vote(self, approval_id: str, approver: str, decision: str, comment: str = "",
                   via: str = "api") -> VoteResult:
        who = norm_name(approver)
        if decision not in (APPROVE, DENY) or not who or len(who) > 200:
            return VoteResult("invalid", "", await self.get(approval_id))
        now = time.time()
        doc = compact_json({"approver": approver.strip(), "decision": decision,
                            "comment": (comment or "")[:2000], "time": now, "via": via})
        status, state = scripts.pair(await self.store.eval(
            scripts.VOTE, [KEY_PREFIX + approval_id], [who, decision, doc, repr(now)]))
        self.audit.emit("approval.vote", approval_id=approval_id, approver=approver.strip(), decision=decision,
                        comment=(comment or "")[:2000], status=status, via=via)
        if status == "decided":
            await self._decided(approval_id, state, approver.strip(), comment or "")
        elif status == "expired":
            state = await self.expire(approval_id)
        return VoteResult(status, state, await self.get(approval_id))

    async def finish(self, approval_id: str, state: str, by: str, reason: str) -> tuple[bool, str]:
        """Move a pending request to a final ``state``; False (and the current state) if already final."""
        changed, current = scripts.pair(await self.store.eval(
            scripts.CLOSE, [KEY_PREFIX + approval_id], [state, repr(time.time()), by, reason]))
        if int(changed):
            await self._decided(approval_id, current, by, reason)
        return bool(int(changed)), current

    async def expire(self, approval_id: str) -> str:
        req = await self.get(approval_id)
        if req is None:
            return EXPIRED
        if req.final:
            return req.state
        if req.on_timeout in ("allow", "approve"):
            changed, state = await self.finish(approval_id, APPROVED, "timeout",
                                              "no decision in time; the workflow approves on timeout")
        else:
            changed, state = await self.finish(approval_id, EXPIRED, "timeout",
                                              f"no decision within {int(req.expires_at - req.created_at)} s")
        if changed:
            self.audit.emit("approval.expired", approval_id=approval_id, state=state, tool=req.tool,
                            workflow=req.workflow)
        return state

    async def cancel(self, approval_id: str, reason: str, by: str = "airlock") -> bool:
        changed, _ = await self.finish(approval_id, CANCELLED, by, reason)
        if changed:
            self.audit.emit("approval.cancelled", approval_id=approval_id, reason=reason, by=by)
        return changed

    async def set_outcome(self, approval_id: str, outcome: str) -> None:
        await self.store.hset(KEY_PREFIX + approval_id, {"outcome": outcome[:500].encode()})

    async def _decided(self, approval_id: str, state: str, by: str, reason: str) -> None:
        self.audit.emit("approval.decided", approval_id=approval_id, state=state, decided_by=by, reason=reason)
        await self.store.publish(CHANNEL + approval_id, state.encode())
        await self.store.zrem(PENDING_Z, approval_id)
        if self.notifier is not None:
            self.spawn(self._notify_decided(approval_id))

    async def _notify_decided(self, approval_id: str) -> None:
        req = await self.get(approval_id)
        if req is not None:
            await self.notifier.decided(req, self.workflows(req.workflow))

    # -- async approvals: the same call let through once -------------------------------------------
    async def find_call(self, fp: str) -> ApprovalRequest | None:
        rid = await self.store.get(FP_PREFIX + fp)
        return await self.get(rid.decode()) if rid else None

    async def forget_call(self, fp: str) -> None:
        await self.store.delete(FP_PREFIX + fp)

    async def consume(self, approval_id: str) -> bool:
        """True exactly once per approved request, across replicas."""
        return await self.store.set(USED_PREFIX + approval_id, b"1", ttl=self.settings.retention_seconds,
                                    only_if_absent=True)

    # -- waiting -------------------------------------------------------------------------------------
    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def _on_message(self, channel: str, message: bytes) -> None:
        approval_id = channel[len(CHANNEL):]
        if approval_id in self._waiters:
            self._waiters.resolve(approval_id, message.decode() if isinstance(message, bytes) else str(message))

    def _fail_waiters(self, exc: Exception) -> None:
        self._waiters.fail_all(exc)

    async def _state(self, approval_id: str) -> str | None:
        fields = await self.store.hgetall(KEY_PREFIX + approval_id)
        raw = fields.get("state")
        return raw.decode() if raw else None

    async def watch(self, approval_id: str, timeout: float, waiter: Any) -> bool:
        """Give ``waiter`` (future-like: ``done``, ``set_result``, ``set_exception``) the final state of a
        request: its decision, ``None`` once ``timeout`` passes (the caller then calls ``expire``), or
        ``StoreUnavailable`` when the store stops answering. True if the deadline was armed. The caller
        calls ``unwatch`` once the waiter is done with, whatever happened (also when this raises)."""
        self._waiters.add(approval_id, waiter)
        try:
            state = await self._state(approval_id)     # a decision published before we listened
        except asyncio.CancelledError:
            raise
        except Exception as e:
            raise StoreUnavailable(f"approval store unavailable: {type(e).__name__}: {e}") from e
        if state is None:
            raise ApprovalError(f"approval request {approval_id} vanished from the store")
        if waiter.done():
            return False
        if state in FINAL:
            waiter.set_result(state)
            return False
        self._deadlines.add(timeout, waiter)           # one timer for all held calls, not one each
        return True

    def unwatch(self, approval_id: str, waiter: Any, timed: bool) -> None:
        self._waiters.discard(approval_id, waiter)
        if timed:
            self._deadlines.released()

    async def wait(self, approval_id: str, timeout: float) -> str:
        """The final state of a request: decided, or expired when ``timeout`` passes.

        Raises ``StoreUnavailable`` when the store stops answering meanwhile."""
        fut = asyncio.get_running_loop().create_future()
        timed = False
        try:
            timed = await self.watch(approval_id, timeout, fut)
            state = await fut
            return state if state is not None else await self.expire(approval_id)
        except (ApprovalError, asyncio.CancelledError):
            raise
        except Exception as e:
            raise StoreUnavailable(f"approval store unavailable: {type(e).__name__}: {e}") from e
        finally:
            self.unwatch(approval_id, fut, timed)

    # -- the sweeper: expiry, escalation, store health --------------------------------------------------
    async def _sweep_loop(self) -> None:
        while True:
            try:
                await self.sweep()
                if not self.healthy:
                    log.warning("approval store answers again")
                self.healthy = True
            except asyncio.CancelledError:
                raise
            except Exception as e:
                if self.healthy:
                    log.error("approval store unavailable (%s: %s); denying held calls", type(e).__name__, e)
                    self.audit.emit("approval.error", error=f"store unavailable: {type(e).__name__}: {e}",
                                    held=self.waiting)
                self.healthy = False
                self._fail_waiters(StoreUnavailable(f"approval store unavailable: {type(e).__name__}: {e}"))
            await asyncio.sleep(self.settings.sweep_seconds)

    async def sweep(self) -> None:
        now = time.time()
        for rid in await self.store.zrangebyscore(PENDING_Z, now):
            await self.expire(rid)
            await self.store.zrem(PENDING_Z, rid)
        for member in await self.store.zrangebyscore(ESCALATE_Z, now):
            if await self.store.zrem(ESCALATE_Z, member):      # exactly one replica wins the claim
                rid, _, step = member.partition("|")
                await self._escalate(rid, int(step or 0))
        if self._waiters:
            await self._recheck_some(50)
        else:
            await self.store.get("approvals:health")           # a cheap round trip: is the store alive?
        if now - self._last_trim > 60:
            self._last_trim = now
            for rid in await self.store.zrangebyscore(INDEX_Z, now - self.settings.retention_seconds):
                await self.store.zrem(INDEX_Z, rid)

    async def _recheck_some(self, n: int) -> None:
        ids = list(itertools.islice(self._recheck, n))
        if not ids:
            self._recheck = iter(list(self._waiters))
            ids = list(itertools.islice(self._recheck, n))
        for rid in ids:
            if rid in self._waiters:
                state = await self._state(rid)
                if state in FINAL:
                    self._on_message(CHANNEL + rid, state.encode())

    async def _escalate(self, approval_id: str, step: int) -> None:
        req = await self.get(approval_id)
        if req is None or req.final:
            return
        wf = self.workflows(req.workflow)
        steps = tuple(getattr(wf, "escalation", ()) or ())
        if step >= len(steps):
            log.warning("approval %s: escalation step %d no longer in workflow %s", approval_id, step, req.workflow)
            return
        spec = steps[step]
        approvers = [str(a) for a in spec.get("approvers") or ()]
        if approvers:
            await self.store.eval(scripts.ALLOW, [req.key], [norm_name(a) for a in approvers])
            req = await self.get(approval_id) or req
        channels = [str(c) for c in spec.get("channels") or ()] or list(req.channels)
        self.audit.emit("approval.escalated", approval_id=approval_id, step=step, channels=channels,
                        approvers=approvers)
        if self.notifier is not None and channels:
            self.spawn(self.notifier.notify(req, wf, channels, escalation=spec))


__all__ = ["ApprovalError", "ApprovalService", "StoreUnavailable", "VoteResult", "APPROVED", "CANCELLED",
           "EXPIRED", "FINAL", "PENDING"]
