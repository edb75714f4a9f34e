"""The approvals component of one Airlock process (``rt.services["approvals"]``).

Owns the service, the link signer, the notifier and the keep-alive responder, and
holds the logic the thin addon calls: hold a ``require_approval`` call (sync), answer
``pending_approval`` and let the same call through once after approval (async),
answer ``airlock_approval_status``. Every failure denies (fail closed).
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from .. import chain, flowmeta
from ..policy import Workflow
from . import metrics, replies
from .heap import HeldHeap
from .links import LinkSigner
from .model import APPROVED, PENDING, fingerprint, redact
from .notify import Notifier
from .responder import Responder
from .service import ApprovalError, ApprovalService, StoreUnavailable
from .waiters import Multimap
from .settings import Settings

log = logging.getLogger("airlock.approvals")

HELD = "airlock.approval"            # flow.metadata: id of the approval this flow waited for
FORWARDED = "airlock.approval_forwarded"   # the approved call went upstream through mitmproxy
RELAYED = "airlock.approval_relayed"       # the keep-alive responder answers (and relays) this flow
MCP_CALL = "airlock.mcp_call"        # set by the MCP firewall for a call to hold
MODERN = "2026-07-28"


class Gate:
    def __init__(self, rt: Any):
        self.rt = rt
        self.settings = Settings.from_config(rt.config)
        self.links: LinkSigner | None = None
        self.notifier: Notifier | None = None
        self.service = ApprovalService(rt.store, rt.audit, self.settings, workflows=self.workflow)
        self.responder = Responder(self, self.settings.keepalive_seconds, rt.config.ssl_insecure)
        self.by_client = Multimap()                    # client connection id -> approvals held for it
        self.heap = HeldHeap()
        self._ready: asyncio.Task | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    async def ready(self) -> "Gate":
        """Start once (idempotent; the admin API may ask before the proxy is running)."""
        if self._ready is None:
            self._ready = asyncio.get_running_loop().create_task(self._start())
        await asyncio.shield(self._ready)
        return self

    async def _start(self) -> None:
        cfg = self.rt.config
        self.links = await LinkSigner.open(self.rt.store, self.settings.public_url, cfg.path(cfg.data_dir),
                                           self.settings.link_secret_env)
        self.notifier = Notifier(self.settings, self.links, self.rt.audit)
        self.service.notifier = self.notifier
        await self.service.start()
        await self.responder.start()

    async def close(self) -> None:
        await self.service.close()
        await self.responder.close()
        if self.notifier is not None:
            await self.notifier.close()

    def spawn(self, coro) -> None:
        self.service.spawn(self._logged(coro))

    async def _logged(self, coro) -> None:
        try:
            await coro
        except Exception as e:
            log.warning("approvals background step failed: %s: %s", type(e).__name__, e)
            metrics.ERRORS.labels("background").inc()

    def workflow(self, name: str | None) -> Workflow | None:
        engine = getattr(self.rt.policy, "engine", None)
        return (getattr(engine, "workflows", None) or {}).get(name) if name else None

    def max_hold_seconds(self) -> float:
        """The longest a call can be held here: mitmproxy's tcp_timeout must exceed it."""
        return self.settings.max_hold_seconds

    # -- the request hook -------------------------------------------------------------------------
    async def hold(self, flow: Any, call: dict, decision: Any) -> None:
        """The addon's coroutine for a governed call: it ends once the call is held (see _sync).
        Any exception denies the call (fail closed): mitmproxy would forward a request whose hook raised."""
        try:
            await self.ready()
            ctx = call.get("context")
            name = decision.approval_workflow
            wf = self.workflow(name) or Workflow(name=name or "default")
            if name and self.workflow(name) is None:
                log.warning("policy names approval workflow %r, which it does not define; using defaults", name)
            modern = _modern(flow)
            fields = dict(tool=call["tool"], server=call.get("server"), workflow=wf, rule=decision.rule,
                          reason=decision.reason, arguments=redact(call.get("args") or {}),
                          agent=getattr(ctx, "agent", None), subject=getattr(ctx, "subject", None),
                          account=getattr(ctx, "account", None), flow=getattr(ctx, "flow", None),
                          session=getattr(ctx, "session_id", None), justification=call.get("justification"))
            del ctx
            if wf.async_approval:
                await self._async(flow, call, fields, modern)
            else:
                await self._sync(flow, call, fields, modern)
        except Exception as e:
            self.fail(flow, call, e)

    async def _sync(self, flow: Any, call: dict, fields: dict, modern: bool) -> None:
        req = await self.service.create(**fields)
        metrics.CREATED.labels("sync").inc()
        flow.metadata[HELD] = req.id
        token = _progress_token(flowmeta.request_json(flow))
        if token is not None and "text/event-stream" in flow.request.headers.get("accept", ""):
            self.responder.reroute(flow, req, call["rpc_id"], token, modern)
            flow.metadata[RELAYED] = True
            self._track(flow, req.id)       # the responder holds it; a disconnect still cancels
            return
        rid, left = req.id, req.seconds_left()
        del req                                                 # keep what a held call keeps small
        fields.clear()
        # the call's facts are in the store now; ``held`` keeps its rpc id and tool (nothing else reads it)
        flow.metadata.pop(MCP_CALL, None)
        flowmeta.forget_request_json(flow)                      # parsed again if anyone asks after the hold
        # the headers cache too: rebuilt from the request if asked (later addons read only session
        # headers from it, which nothing rewrites)
        flow.metadata.pop(flowmeta.HEADERS, None)
        self._track(flow, rid)
        if flow.client_conn.timestamp_end is not None:          # gone before we could register the hold
            self._untrack(flow, rid)
            await self.service.cancel(rid, "client disconnected while held")
            flow.metadata[flowmeta.OUTCOME] = "approval_client_gone"
            return
        # Held without a coroutine: the flow is intercepted, the chain parks the addons after this one,
        # and the decision (the service resolves ``held``) finishes the call in a short task (_release).
        held = _Held(self, flow, rid, call["rpc_id"], call["tool"])
        flow.intercept()                        # before any await: a decision may arrive meanwhile
        metrics.HELD.inc()
        self.heap.started()
        try:
            held.timed = await self.service.watch(rid, left, held)
        except BaseException:
            flow.resume()                       # not held after all: the chain goes on (hold() denies)
            self._unhold(held)
            raise
        held.armed = True
        if held.done():
            self.release_soon(held)

    def release_soon(self, held: "_Held") -> None:
        # call_soon, not a task at once: the service resolves waiters while it walks its tables
        asyncio.get_running_loop().call_soon(self._start_release, held)

    def _start_release(self, held: "_Held") -> None:
        self.service.spawn(self._release(held))

    async def _release(self, held: "_Held") -> None:
        """A decision for a held call: answer it (or let it through), then run the addons the chain
        parked and resume the flow; whatever happens, the flow is resumed."""
        flow, rid = held.flow, held.rid
        settled = False
        try:
            try:
                state = held.state
                if isinstance(state, BaseException):
                    raise state
                self._unhold(held)
                await self._decided(held, state if state is not None else await self._expire(rid))
            except Exception as e:
                self._unhold(held)
                self.fail(flow, held.call(), e)
            settled = True
            rest = chain.resume_rest(flow)
            if rest is not None:
                await rest
        finally:
            if not settled:                     # cancelled (shutting down) before the answer: deny
                self._unhold(held)
                self.fail(flow, held.call(), ApprovalError("Airlock is shutting down"))
            flow.resume()

    def _unhold(self, held: "_Held") -> None:
        if held.gate is None:                   # once
            return
        held.gate = None
        self.service.unwatch(held.rid, held, held.timed)
        metrics.HELD.dec()
        self.heap.ended()
        self._untrack(held.flow, held.rid)

    async def _expire(self, rid: str) -> str:
        try:
            return await self.service.expire(rid)
        except ApprovalError:
            raise
        except Exception as e:
            raise StoreUnavailable(f"approval store unavailable: {type(e).__name__}: {e}") from e

    async def _decided(self, held: "_Held", state: str) -> None:
        flow, rid = held.flow, held.rid
        if flow.client_conn.timestamp_end is not None:          # the client went away: never forwarded
            self.spawn(self.service.cancel(rid, "client disconnected while held"))
            flow.metadata[flowmeta.OUTCOME] = "approval_client_gone"
            return
        metrics.DECIDED.labels(state).inc()
        if state == APPROVED:
            flow.metadata[FORWARDED] = True
            return                                              # forwarded; outcome set in response()
        final = await self.service.get(rid)
        if final is None:
            raise ApprovalError(f"approval request {rid} vanished from the store")
        flow.metadata[flowmeta.OUTCOME] = f"approval_{final.state}"
        flow.response = replies.respond(flow, replies.refusal(held.rpc_id, final, _modern(flow)))

    async def _async(self, flow: Any, call: dict, fields: dict, modern: bool) -> None:
        svc = self.service
        fp = fingerprint(call["tool"], call.get("server"), call.get("args") or {}, fields["account"],
                         fields["subject"], fields["agent"])
        rpc_id = call["rpc_id"]
        existing = await svc.find_call(fp)
        if existing is not None:
            if existing.state == PENDING:
                flow.metadata[flowmeta.OUTCOME] = "approval_pending"
                flow.response = replies.respond(flow, replies.pending(rpc_id, existing, self.settings.poll_seconds,
                                                                      modern, again=True))
                return
            await svc.forget_call(fp)
            if existing.state == APPROVED and await svc.consume(existing.id):
                flow.metadata[HELD] = existing.id
                flow.metadata[FORWARDED] = True
                metrics.DECIDED.labels(APPROVED).inc()
                self.rt.audit.emit("approval.released", approval_id=existing.id, tool=existing.tool, mode="async")
                return                                          # the approved call goes through, once
            if existing.state != APPROVED:
                metrics.DECIDED.labels(existing.state).inc()
                flow.metadata[flowmeta.OUTCOME] = f"approval_{existing.state}"
                flow.response = replies.respond(flow, replies.refusal(rpc_id, existing, modern, retry_hint=True))
                return
        req = await svc.create(fingerprint=fp, **fields)
        metrics.CREATED.labels("async").inc()
        flow.metadata[flowmeta.OUTCOME] = "approval_pending"
        flow.response = replies.respond(flow, replies.pending(rpc_id, req, self.settings.poll_seconds, modern))

    async def status(self, flow: Any, msg: dict) -> None:
        """Answer a call of the injected ``airlock_approval_status`` tool."""
        await self.ready()
        params = msg.get("params") or {}
        args = params.get("arguments") if isinstance(params, dict) else None
        rid = str((args or {}).get("request_id") or "").strip() if isinstance(args, dict) else ""
        modern = _modern(flow)
        req = await self.service.get(rid) if rid else None
        ident = flowmeta.identity(flow)
        if req is not None and ident is not None and req.account and req.account != ident.account:
            req = None                                          # other accounts' requests stay invisible
        flow.metadata[flowmeta.OUTCOME] = "approval_status"
        flow.response = replies.respond(flow, replies.status(msg.get("id"), req, rid or "(missing)", modern))

    # -- failures, disconnects, outcomes ---------------------------------------------------------------
    def fail(self, flow: Any, call: dict | None, exc: BaseException) -> None:
        """Deny a governed call whose approval path failed, with a clear reason and an audit row."""
        reason = str(exc) if isinstance(exc, ApprovalError) else f"internal error: {type(exc).__name__}: {exc}"
        if not isinstance(exc, ApprovalError):
            log.exception("approval path failed; denying the call")
        tool = (call or {}).get("tool", "?")
        self.failed(flow.metadata.get(HELD), tool, exc)
        modern = _modern(flow)
        flow.metadata[flowmeta.OUTCOME] = "approval_error"
        flow.response = replies.respond(flow, replies.failure((call or {}).get("rpc_id"), tool, reason[:300], modern))

    def failed(self, approval_id: str | None, tool: str, exc: BaseException) -> None:
        kind = "store_unavailable" if "unavailable" in str(exc) else type(exc).__name__
        metrics.ERRORS.labels(kind).inc()
        self.rt.audit.emit("approval.error", approval_id=approval_id, tool=tool, error=str(exc)[:300])
        if approval_id:
            self.spawn(self.service.cancel(approval_id, f"approval path failed: {str(exc)[:200]}"))

    def _track(self, flow: Any, approval_id: str) -> None:
        self.by_client.add(flow.client_conn.id, approval_id)

    def _untrack(self, flow: Any, approval_id: str) -> None:
        self.by_client.discard(flow.client_conn.id, approval_id)

    def client_gone(self, client_id: str) -> None:
        for approval_id in self.by_client.take(client_id):
            self.spawn(self.service.cancel(approval_id, "client disconnected while held"))

    def finished(self, flow: Any, outcome: str) -> None:
        """The response (or error) of a flow that carried an approval."""
        approval_id = flow.metadata.get(HELD)
        self._untrack(flow, approval_id)
        if flow.metadata.get(FORWARDED):
            self.spawn(self.service.set_outcome(approval_id, outcome))


class _Held:
    """A call held here, as the waiter the service resolves (future-like: ``done``, ``set_result``,
    ``set_exception``). Once resolved and ``armed`` (the hook has returned), the gate releases it."""
    __slots__ = ("gate", "flow", "rid", "rpc_id", "tool", "state", "armed", "timed")

    def __init__(self, gate: Gate, flow: Any, rid: str, rpc_id: Any, tool: str):
        self.gate: Gate | None = gate          # None once released
        self.flow = flow
        self.rid = rid
        self.rpc_id = rpc_id
        self.tool = tool
        self.state: Any = _WAITING             # then the final state, None (deadline) or an exception
        self.armed = False
        self.timed = False

    def done(self) -> bool:
        return self.state is not _WAITING

    def set_result(self, state: Any) -> None:
        if self.state is _WAITING:
            self.state = state
            if self.armed and self.gate is not None:
                self.gate.release_soon(self)

    def set_exception(self, exc: BaseException) -> None:
        self.set_result(exc)

    def call(self) -> dict:
        return {"rpc_id": self.rpc_id, "tool": self.tool}


_WAITING = object()


def _modern(flow: Any) -> bool:
    return flow.request.headers.get("mcp-protocol-version", "") >= MODERN


def _progress_token(body: Any) -> Any:
    if not isinstance(body, dict):
        return None
    meta = (body.get("params") or {}).get("_meta") if isinstance(body.get("params"), dict) else None
    return meta.get("progressToken") if isinstance(meta, dict) else None
