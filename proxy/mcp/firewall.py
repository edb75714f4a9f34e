"""The MCP firewall's logic; ``addons/mcp.py`` is the thin mitmproxy face of it.

Per POST body: parse strictly (jsonrpc.py), decide every ``tools/call`` with the policy
engine, strip ``justification`` from the arguments before anything is forwarded, answer
refusals as ``isError`` tool results, remember ``tools/list`` ids so their results get
filtered and annotated on the way back (JSON or SSE).

Refusals inside a batch or on a legacy HTTP+SSE session cannot be answered on the POST:
the refused element is replaced by a JSON-RPC ``ping`` (every MCP server must answer ping),
and the ping's answer is rewritten into the refusal where it comes back (the JSON array,
the POST's SSE stream or the legacy GET stream). The upstream never sees the refused call,
and the refusal reaches the client in the right order. On legacy SSE the ping's id (and a
tools/list request's id) is a tag that carries what to do (``tags.py``), so whichever
Airlock process carries the GET stream can do it: no shared state between workers.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import orjson
from mitmproxy import http

from proxy import errors, flowmeta
from proxy.policy import CallContext

from . import decide, jsonrpc, replies, sse, tags
from .tools import JUSTIFICATION, ToolWatch, rewrite_result

log = logging.getLogger("airlock.mcp")

STATE = "airlock.mcp"            # FlowState of a governed MCP flow
MCP_CALL = "airlock.mcp_call"    # a call handed to the approvals addon

try:
    from proxy.metrics import REFUSED as _REFUSED
except ImportError:                                      # pragma: no cover
    _REFUSED = None


def _count(reason: str) -> None:
    if _REFUSED is not None:
        _REFUSED.labels(reason).inc()


@dataclass(slots=True)
class FlowState:
    server: str
    list_ids: set = field(default_factory=set)              # ids of tools/list requests
    replace: dict = field(default_factory=dict)             # id -> response that replaces upstream's
    extra: list = field(default_factory=list)               # local responses to add (invalid batch elements)
    batch: bool = False

    @property
    def rewrites(self) -> bool:
        return bool(self.list_ids or self.replace or self.extra)


@dataclass(slots=True)
class Verdict:
    outcome: str                    # forwarded | refused | held | invalid
    response: dict | None = None    # what the client gets when not forwarded


class Firewall:
    def __init__(self, rt: Any):
        self.rt = rt
        self.watch = ToolWatch(rt.store, rt.audit)
        self._tasks: set[asyncio.Task] = set()

    # -- requests ----------------------------------------------------------------------------
    def request_headers(self, flow: http.HTTPFlow, route: flowmeta.Route) -> None:
        """Refuse POST bodies that mitmproxy would stream past the ``request`` hook uninspected."""
        req = flow.request
        if req.stream:                   # over stream_large_bodies: the body would never be decided
            problem = (413, "MCP request body too large for Airlock to inspect; it was not forwarded. "
                            "Send smaller arguments (for example a file path instead of the file's content).")
        elif "content-length" not in req.headers and "chunked" in req.headers.get("transfer-encoding", "").lower():
            problem = (411, "Airlock needs a Content-Length on MCP requests (chunked bodies can grow past what it "
                            "can inspect); the request was not forwarded.")
        else:
            return
        status, message = problem
        req.stream = False
        self.rt.audit.emit("mcp_invalid", server=route.name, code=jsonrpc.INVALID_REQUEST, reason=message,
                           status=status)
        _count("mcp_uninspectable")
        flow.metadata[flowmeta.OUTCOME] = "mcp_uninspectable"
        flow.response = errors.response("mcp", status, message, "uninspectable_body",
                                        headers=_session_header(flow), rpc_code=jsonrpc.INVALID_REQUEST)

    async def request(self, flow: http.HTTPFlow, route: flowmeta.Route) -> None:
        req = flow.request
        if req.method != "POST" or not req.raw_content:
            return
        value = flowmeta.request_json(flow)
        parsed = jsonrpc.parse_value(value) if value is not None else jsonrpc.parse(req.raw_content)
        if parsed.error:
            rid = parsed.messages[0].id if parsed.messages else None
            self._bad_request(flow, route, parsed.error, rid)
            return
        legacy = "ession" in req.path and sse.session_id_of(req.path) is not None   # results go to a GET stream
        transport = "legacy_sse" if legacy else ("batch" if parsed.batch else "http")
        state = FlowState(route.name, batch=parsed.batch)
        modern = req.headers.get("mcp-protocol-version", "") >= jsonrpc.MODERN
        keep: list = []
        dirty = False
        forwardable = False
        for msg in parsed.messages:
            if msg.kind == "invalid":
                state.extra.append(jsonrpc.error(msg.id, *msg.error))
                self.rt.audit.emit("mcp_invalid", server=route.name, code=msg.error[0], reason=msg.error[1])
                dirty = True
                continue
            if msg.kind == "request" and msg.method == "tools/list":
                if legacy:
                    msg.raw["id"] = tags.list_tag(msg.id)        # undone where the result comes back
                    dirty = True
                else:
                    state.list_ids.add(msg.id)
            elif msg.is_call and self._airlock_tool(msg):
                pass                                          # answered by another Airlock component
            elif msg.is_call:
                holdable = not parsed.batch and not legacy
                verdict, stripped = await self._call(flow, route, msg, modern or jsonrpc.is_modern(msg),
                                                     holdable, transport)
                dirty |= stripped
                if verdict.outcome in ("refused", "invalid"):
                    if holdable:
                        flow.response = self._json_response(flow, verdict.response)
                        return
                    dirty = True
                    if legacy:
                        keep.append({"jsonrpc": "2.0", "id": tags.refusal_tag(verdict.response), "method": "ping"})
                        forwardable = True
                    else:
                        state.replace[msg.id] = verdict.response
                        keep.append({"jsonrpc": "2.0", "id": msg.id, "method": "ping"})
                    continue
            keep.append(msg.raw)
            forwardable = True
        if not forwardable:                               # nothing needs the upstream: answer here
            answers = state.extra + list(state.replace.values())
            flow.response = self._json_response(flow, answers if parsed.batch else answers[0])
            return
        if dirty:
            flowmeta.set_request_json(flow, keep if parsed.batch else keep[0])
        if state.rewrites:
            flow.metadata[STATE] = state

    def _airlock_tool(self, msg: jsonrpc.Message) -> bool:
        """A tool that Airlock itself serves (e.g. the approvals status tool), when that part runs."""
        svc = self.rt.services.get("approvals")
        if svc is None or not isinstance(msg.params, dict):
            return False
        names = getattr(svc, "local_tools", None)
        if names is None:
            try:
                from proxy.approvals.replies import STATUS_TOOL
                names = (STATUS_TOOL,)
            except ImportError:
                names = ()
        return msg.params.get("name") in names

    async def _call(self, flow, route, msg: jsonrpc.Message, modern: bool,
                    holdable: bool, transport: str) -> tuple[Verdict, bool]:
        name, args = jsonrpc.call_params(msg)
        if name is None:
            self.rt.audit.emit("mcp_invalid", server=route.name, code=jsonrpc.INVALID_PARAMS, reason=args)
            _count("mcp_invalid")
            return Verdict("invalid", jsonrpc.error(msg.id, jsonrpc.INVALID_PARAMS, f"Invalid params: {args}")), False
        stripped = JUSTIFICATION in args
        justification = decide.text_of(args.pop(JUSTIFICATION, None))
        ident = flowmeta.identity(flow)
        engine = self.rt.policy.engine
        ctx = CallContext(
            tool=name, server=route.name, args=args,
            agent=ident.agent if ident else None, subject=ident.subject if ident else None,
            account=ident.account if ident else None, flow=ident.flow if ident else None,
            session_id=(ident.session if ident else None) or flow.request.headers.get("mcp-session-id"),
            justification=justification, tool_changed=await self.watch.is_changed(route.name, name),
            request_host=flow.request.pretty_host, request_path=flow.request.path)
        ev = decide.evaluate(engine, ctx)
        verdict = self._verdict(flow, msg, name, ev, modern, holdable, ctx)
        decide.emit(self.rt.audit, ctx, ev, verdict.outcome, rpc_id=msg.id, transport=transport,
                    policy_version=engine.version)
        return verdict, stripped

    def _verdict(self, flow, msg, name, ev: decide.Evaluated, modern, holdable, ctx) -> Verdict:
        decision = ev.decision
        flow.metadata[flowmeta.DECISION] = decision
        if ev.why is None:
            return Verdict("forwarded")
        if ev.why == "approval" and "approvals" in self.rt.services:
            if holdable:
                flow.metadata[MCP_CALL] = {"rpc_id": msg.id, "tool": name, "server": ctx.server,
                                           "args": ctx.args, "justification": ctx.justification, "context": ctx,
                                           "modern": modern}
                return Verdict("held")
            text = (f"Airlock policy (rule {decision.rule or 'default'}) requires human approval for "
                    f"'{name}': {decision.reason.rstrip('.')}. Approval holds work only for a call sent "
                    "alone over Streamable HTTP, so this call was not run; send it again on its own.")
            reason = "mcp_approval_unholdable"
        else:
            text = decide.refusal(ev, name)
            reason = {"deny": "mcp_deny", "approval": "mcp_approvals_unavailable"}.get(ev.why, f"mcp_{ev.why}")
        flow.metadata[flowmeta.OUTCOME] = reason
        _count(reason)
        return Verdict("refused", replies.tool_result(msg.id, text, modern=modern))

    def _bad_request(self, flow, route, err: tuple[int, str], rid: Any) -> None:
        code, message = err
        self.rt.audit.emit("mcp_invalid", server=route.name, code=code, reason=message)
        _count("mcp_invalid")
        flow.metadata[flowmeta.OUTCOME] = "mcp_invalid"
        flow.response = errors.response("mcp", 400, message, "invalid_jsonrpc", headers=_session_header(flow),
                                        rpc_id=rid, rpc_code=code)

    def _json_response(self, flow, payload: Any) -> http.Response:
        return http.Response.make(200, orjson.dumps(payload),
                                  {"content-type": "application/json", **_session_header(flow)})

    def fail_closed(self, flow, route_name: str, exc: BaseException) -> None:
        log.exception("MCP firewall failed on %s; refusing the request", route_name)
        _count("mcp_internal_error")
        self.rt.audit.emit("mcp_error", server=route_name, error=type(exc).__name__, reason=str(exc)[:300])
        flow.metadata[flowmeta.OUTCOME] = "mcp_internal_error"
        flow.response = errors.response(
            "mcp", 500, "Airlock could not evaluate this MCP request, so it was not forwarded "
            "(fail closed). Retry later or ask the operator to check the Airlock logs.", "internal_error",
            headers=_session_header(flow), rpc_code=jsonrpc.INTERNAL_ERROR)

    # -- responses ---------------------------------------------------------------------------
    def response_headers(self, flow: http.HTTPFlow, route: flowmeta.Route) -> None:
        resp = flow.response
        if resp is None or resp.stream or not resp.headers.get("content-type", "").startswith("text/event-stream"):
            return
        if flow.request.method == "GET":
            resp.stream = self._get_stream(flow, route)
            return
        state = flow.metadata.get(STATE)
        if state is not None:
            resp.stream = sse.SseRewriter(lambda ev: self._rewrite_event(ev, state.list_ids, state.replace,
                                                                          route.name),
                                          lambda: _tail(state))

    def _get_stream(self, flow, route) -> sse.SseRewriter:
        """A GET stream: Streamable HTTP (passed through) or legacy HTTP+SSE (endpoint, tagged results)."""
        def transform(ev: sse.Event) -> bytes | None:
            if not legacy:
                if ev.event != "endpoint" or sse.session_id_of(ev.data) is None:
                    rw.passthrough = True                      # a Streamable HTTP GET stream: nothing to do
                    return None
                legacy.append(True)
                if route.listener != "gateway":
                    return None
                url = sse.map_endpoint(ev.data, route.upstream, route.name)
                return (f"event: endpoint\n" + (f"id: {ev.id}\n" if ev.id else "") + f"data: {url}\n\n").encode()
            if tags.PREFIX not in ev.data:
                return None
            return self._rewrite_event(ev, None, None, route.name)

        legacy: list = []
        rw = sse.SseRewriter(transform)
        return rw

    def _rewrite_event(self, ev: sse.Event, list_ids, replace, server: str) -> bytes | None:
        if ev.event != "message" or '"id"' not in ev.data:
            return None
        obj = ev.json()
        if not isinstance(obj, dict) or "method" in obj or "id" not in obj:
            return None
        try:
            new = self._rewrite_response(obj, list_ids, replace, server, None)
        except Exception as e:                 # fail closed: the client gets an error, not the unchecked result
            log.exception("MCP firewall could not rewrite a result on %s", server)
            _count("mcp_rewrite_error")
            self.rt.audit.emit("mcp_error", server=server, error=type(e).__name__, reason=str(e)[:300])
            new = jsonrpc.error(obj.get("id"), jsonrpc.INTERNAL_ERROR,
                                "Airlock could not check this result, so it was withheld (fail closed).")
        return None if new is None else sse.encode(new, event_id=ev.id)

    def _rewrite_response(self, obj: dict, list_ids, replace, server: str,
                          collect: list | None) -> dict | None:
        """The replacement of one upstream response, or None to keep it."""
        rid = obj.get("id")
        if isinstance(rid, bool) or not isinstance(rid, (str, int)):
            return None
        action = None
        if rid.__class__ is str and rid.startswith(tags.PREFIX):
            action, payload = tags.untag(rid)
            if action == "list":
                obj["id"] = payload
        elif replace is not None and rid in replace:
            action, payload = "replace", replace.pop(rid)
        elif list_ids is not None and rid in list_ids:
            action, payload = "list", None
        if action == "replace":
            return payload
        if action == "list" and "result" not in obj:
            return obj if obj["id"] != rid else None             # an error: only the tagged id is undone
        if action == "list":
            result, originals, hidden = rewrite_result(obj["result"], server, self.rt.policy.engine)
            if hidden:
                self.rt.audit.emit("tools_hidden", server=server, tools=hidden)
            if collect is not None:
                collect.extend(originals)
            elif originals:
                self._spawn(self.watch.observe(server, originals))
            return obj
        return None

    async def response(self, flow: http.HTTPFlow, route: flowmeta.Route) -> None:
        state: FlowState | None = flow.metadata.get(STATE)
        resp = flow.response
        if state is None or resp is None or resp.stream:
            return
        body: Any = None
        if resp.raw_content:                            # JSON whatever the content-type says
            body, err = jsonrpc.loads(resp.get_content(strict=False) or b"")
            if err:
                body = None
        originals: list = []
        if isinstance(body, dict):
            new = self._rewrite_response(body, state.list_ids, state.replace, route.name, originals)
            body = new if new is not None else body
        elif isinstance(body, list):
            body = [(self._rewrite_response(o, state.list_ids, state.replace, route.name, originals) or o)
                    if isinstance(o, dict) else o for o in body]
        leftovers = state.extra + list(state.replace.values())
        state.replace.clear()
        if leftovers:
            if isinstance(body, list):
                body.extend(leftovers)
            elif isinstance(body, dict):
                body = [body, *leftovers]
            elif 200 <= resp.status_code < 300:         # e.g. 202 for the forwarded notifications
                body = leftovers if state.batch else leftovers[0]
                resp.status_code = 200
                resp.headers["content-type"] = "application/json"
        if body is not None and (originals or leftovers or state.list_ids):
            resp.set_content(orjson.dumps(body))
        if originals:
            await self.watch.observe(route.name, originals)

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("tool change detection failed: %r", task.exception())
            _count("mcp_toolwatch_error")


def _tail(state: FlowState) -> list[bytes]:
    out = [sse.encode(x) for x in state.extra + list(state.replace.values())]
    state.extra.clear()
    state.replace.clear()
    return out


def _session_header(flow) -> dict[str, str]:
    sid = flow.request.headers.get("mcp-session-id")
    return {"mcp-session-id": sid} if sid else {}
