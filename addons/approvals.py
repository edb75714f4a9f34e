"""Human approvals addon: hold ``require_approval`` MCP calls until people decide.

Thin: flows the MCP firewall did not hand over (no ``airlock.mcp_call`` with a
require_approval decision) return at the first check; the work is in
``proxy.approvals.gate``. Any exception on a held call denies it (fail closed):
mitmproxy would otherwise forward a request whose hook raised.
"""
from __future__ import annotations

import logging

import orjson
from mitmproxy import connection, http

from proxy import flowmeta
from proxy.approvals import replies
from proxy.approvals.gate import HELD, MCP_CALL, RELAYED, Gate
from proxy.mcp import sse
from proxy.runtime import Runtime

log = logging.getLogger("airlock.approvals")
_LIST = "airlock.approval_list"        # flow.metadata: this tools/list gets the status tool
_DONE = "airlock.approval_done"        # flow.metadata: the outcome of the held call is recorded


class Approvals:
    # AddonChain calls this addon's flow hooks only for these route kinds
    route_kinds = frozenset({"mcp"})

    def __init__(self, rt: Runtime):
        self.rt = rt
        self.gate = Gate(rt)                    # a bad approvals: section raises ConfigError: start-up stops (exit 2)
        rt.services["approvals"] = self.gate

    async def running(self) -> None:
        await self.gate.ready()

    async def done(self) -> None:
        await self.gate.close()

    def request(self, flow: http.HTTPFlow):
        """Sync for flows we don't govern (no coroutine per flow); a coroutine when we hold or answer."""
        if flow.response is not None:
            return None
        call = flow.metadata.get(MCP_CALL)
        if call is None:
            route = flow.metadata.get(flowmeta.ROUTE)
            if route is not None and route.kind == "mcp" and flow.request.method == "POST":
                self._mcp_other(flow)
                if flow.metadata.get(_LIST) == "status":
                    return self._status(flow)
            return None
        decision = flow.metadata.get(flowmeta.DECISION)
        if decision is None or getattr(decision, "action", None) != "require_approval":
            return None
        return self.gate.hold(flow, call, decision)          # fails closed itself, whatever goes wrong

    def _mcp_other(self, flow: http.HTTPFlow) -> None:
        body = flowmeta.request_json(flow)
        if not isinstance(body, dict):
            return
        method = body.get("method")
        if method == "tools/list" and self._any_async():
            params = body.get("params")
            if not (isinstance(params, dict) and params.get("cursor")):
                flow.metadata[_LIST] = "list"
        elif method == "tools/call":
            params = body.get("params")
            if isinstance(params, dict) and params.get("name") == replies.STATUS_TOOL:
                flow.metadata[_LIST] = "status"

    async def _status(self, flow: http.HTTPFlow) -> None:
        try:
            await self.gate.status(flow, flowmeta.request_json(flow))
        except Exception as e:
            self.gate.fail(flow, {"tool": replies.STATUS_TOOL, "rpc_id": flowmeta.request_json(flow).get("id")}, e)

    def _any_async(self) -> bool:
        engine = getattr(self.rt.policy, "engine", None)
        return any(w.async_approval for w in (getattr(engine, "workflows", None) or {}).values())

    # -- responses: add the status tool to tools/list, record outcomes ------------------------------
    def responseheaders(self, flow: http.HTTPFlow) -> None:
        if flow.metadata.get(RELAYED):
            flow.response.stream = True          # the keep-alive responder's SSE, event by event
            return
        if flow.metadata.get(HELD) is not None:  # the upstream answered the approved call: record it now
            self._finished(flow, f"forwarded: HTTP {flow.response.status_code}")   # (a stream may end in error())
            return
        if flow.metadata.get(_LIST) != "list" or flow.response is None:
            return
        if flow.response.headers.get("content-type", "").startswith("text/event-stream"):
            mine = sse.SseRewriter(_inject_event)
            theirs = flow.response.stream
            flow.response.stream = _chain(theirs, mine) if callable(theirs) else mine

    def response(self, flow: http.HTTPFlow) -> None:
        if flow.metadata.get(HELD) is not None:
            self._finished(flow, f"forwarded: HTTP {flow.response.status_code}")
            return
        if flow.metadata.get(_LIST) != "list" or flow.response.stream:
            return
        resp = flow.response
        if not resp.headers.get("content-type", "").startswith("application/json"):
            return
        try:
            body = orjson.loads(resp.get_content(strict=False) or b"")
        except orjson.JSONDecodeError:
            return
        if isinstance(body, dict) and replies.inject_tool(body.get("result")):
            resp.set_content(orjson.dumps(body))

    def error(self, flow: http.HTTPFlow) -> None:
        if flow.metadata.get(HELD) is not None:
            self._finished(flow, f"error: {flow.error.msg if flow.error else 'unknown'}"[:200])

    def _finished(self, flow: http.HTTPFlow, outcome: str) -> None:
        if not flow.metadata.get(_DONE):             # once per flow
            flow.metadata[_DONE] = True
            self.gate.finished(flow, outcome)

    def client_disconnected(self, client: connection.Client) -> None:
        if self.gate.by_client:
            self.gate.client_gone(client.id)


def _inject_event(ev: sse.Event) -> bytes | None:
    if ev.event != "message" or '"tools"' not in ev.data:
        return None
    obj = ev.json()
    if isinstance(obj, dict) and "result" in obj and replies.inject_tool(obj["result"]):
        return sse.encode(obj, event_id=ev.id)
    return None


def _chain(first, second):
    """Two ``response.stream`` callables in a row (``first``'s output feeds ``second``)."""
    def run(chunk: bytes) -> list[bytes]:
        out = first(chunk)
        pieces = [out] if isinstance(out, bytes) else list(out or [])
        res: list[bytes] = []
        for p in pieces:
            if p:
                res.extend(second(p))
        if not chunk:
            res.extend(second(b""))
        return res
    return run
