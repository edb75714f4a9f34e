"""Metering: model streams counted event by event, cut at the budget, settled.

For a metered call (``flow.metadata[CALL]`` set by the gateway addon), an SSE
response gets ``proxy.meter.stream.StreamMeter`` as its stream callable: bytes
forwarded exactly, output tokens counted as deltas arrive, the stream ended
properly (and the upstream closed) when the reservation is used up. At the end
(``response``) or on failure or client disconnect (``error``) the call is
settled on the provider's usage (or on what was counted), the unused
reservation released and ``flow.metadata[USAGE]`` set: the audit addon writes it
into the call's one ``request`` row.
"""
from __future__ import annotations

import asyncio
import logging

from mitmproxy import ctx, http

from proxy import flowmeta
from proxy.metrics import child
from proxy.meter import metrics
from proxy.meter.record import settle_values, usage_row
from proxy.meter.stream import CALL, StreamMeter
from proxy.meter.usage import Usage, from_anthropic, from_openai, usage_of_json
from proxy.runtime import Runtime

log = logging.getLogger(__name__)
_STREAMED = frozenset({"chat", "responses", "anthropic"})
_BILLED = frozenset({"chat", "responses", "anthropic", "embeddings"})


class Metering:
    # AddonChain calls this addon's flow hooks only for these route kinds
    route_kinds = frozenset({"openai", "anthropic"})

    def __init__(self, rt: Runtime):
        self.rt = rt
        self._tasks: set[asyncio.Task] = set()

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        call = flow.metadata.get(CALL)
        if call is None or call.api not in _STREAMED or call.settled:
            return
        resp = flow.response
        if resp.status_code != 200 or not resp.headers.get("content-type", "").startswith("text/event-stream"):
            return
        if resp.headers.get("content-encoding", "identity").lower() not in ("", "identity"):
            # we asked for identity; an upstream that compresses anyway is passed through, billed by estimate
            log.warning("metering: %s sent a compressed event stream; not metered", call.provider)
            metrics.FAILURES.labels("compressed_stream").inc()
            resp.stream = True
            return
        try:
            resp.stream = StreamMeter(call, on_cut=lambda: self._close_upstream(flow))
        except Exception:
            log.exception("metering: could not meter this stream; it passes through counted as estimated")
            metrics.FAILURES.labels("stream_setup").inc()
            resp.stream = True
            return
        adm = call.admission
        if adm is not None and adm.output_allowance is not None and flow.request.http_version.startswith("HTTP/1"):
            # A cut must end the body cleanly: without chunked framing the client reads to EOF,
            # so closing the connection after the terminal events is a proper end of stream.
            resp.headers.pop("transfer-encoding", None)
            resp.headers["connection"] = "close"

    def response(self, flow: http.HTTPFlow) -> None:
        call = flow.metadata.get(CALL)
        if call is None or call.settled or call.api not in _BILLED:
            return
        resp = flow.response
        if resp.status_code >= 400:
            self._finish(flow, call, "upstream_error", zero=True)
            return
        if call.meter is None:                       # a whole JSON answer
            try:
                u, model = usage_of_json(resp.get_content(strict=False) or b"")
            except ValueError:
                u, model = None, None
            call.usage = from_anthropic(u) if call.kind == "anthropic" else from_openai(u)
            if call.usage is None:
                log.warning("metering: %s answer without usage; billed by estimate", call.provider)
            self._finish(flow, call, "ok", response_model=model)
            return
        p = call.meter.parser
        if call.cut_reason:
            status = "cut"
        elif p is not None and p.error is not None:
            status = "upstream_error"
        elif p is not None and not p.finished:
            status = "incomplete"
        else:
            status = "ok"
        self._finish(flow, call, status, response_model=getattr(p, "model", None))

    def error(self, flow: http.HTTPFlow) -> None:
        call = flow.metadata.get(CALL)
        if call is None or call.settled or call.api not in _BILLED:
            return
        msg = (flow.error.msg if flow.error else "") or ""
        if call.cut_reason:
            status = "cut"
        elif "client" in msg.lower() or flow.metadata.get(flowmeta.OUTCOME) == "client_disconnected":
            status = "client_disconnected"
        else:
            status = "upstream_error"
        # no response at all: nothing was generated that we could see
        self._finish(flow, call, status, zero=flow.response is None, reason=msg or None,
                     response_model=getattr(call.meter.parser, "model", None) if call.meter else None)

    # -- settle --------------------------------------------------------------------------------
    def _finish(self, flow: http.HTTPFlow, call, status: str, zero: bool = False,
                response_model: str | None = None, reason: str | None = None) -> None:
        call.settled = True
        identity = flow.metadata.get(flowmeta.IDENTITY)
        try:
            if zero:
                usage, source, cost = Usage(), "none", 0.0
            else:
                usage, source, cost = settle_values(call, response_model)
        except Exception:
            log.exception("metering: settling failed; billing the reservation")
            metrics.FAILURES.labels("settle").inc()
            usage, source, cost = Usage(call.input_estimate, call.output_cap), "reserved", call.estimated_cost
        row = usage_row(call, identity, status, usage=usage, cost=cost, source=source,
                        http_status=flow.response.status_code if flow.response else None, reason=reason)
        flow.metadata[flowmeta.USAGE] = row          # recorded in the call's request row (addons.audit)
        child(metrics.CALLS, call.provider, call.api, status).inc()
        if call.cut_reason:
            metrics.CUTS.labels(call.cut_reason).inc()
        model = call.model or "-"
        if usage.input_tokens:
            child(metrics.TOKENS, call.provider, model, "input").inc(usage.input_tokens)
        if usage.output_tokens:
            child(metrics.TOKENS, call.provider, model, "output").inc(usage.output_tokens)
        if cost:
            child(metrics.COST, call.provider).inc(cost)
        if call.admission is not None:
            task = asyncio.get_running_loop().create_task(self._settle(call, usage, cost, identity))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _settle(self, call, usage: Usage, cost: float | None, identity) -> None:
        try:
            over = await self.rt.services["gateway"].ledger.settle(
                call.admission, usage.input_tokens + usage.output_tokens, cost)
        except Exception:
            log.exception("metering: could not settle a reservation (it stays held until its period ends)")
            metrics.FAILURES.labels("settle_store").inc()
            return
        for h in over:
            metrics.BUDGET_ALERTS.labels(h.name).inc()
            self.rt.audit.emit("budget_alert", budget=h.name, scope=h.scope, scope_value=h.value, unit=h.unit,
                               limit=h.limit, account=getattr(identity, "account", None))
            log.warning("soft budget %s over its limit for %s %s", h.name, h.scope, h.value)

    async def done(self) -> None:
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- cut -----------------------------------------------------------------------------------
    def _close_upstream(self, flow: http.HTTPFlow) -> None:
        """Stop the provider generating (and billing): close the upstream connection soon,
        after the terminal events already returned have been sent."""
        asyncio.get_running_loop().call_soon(_close_server_conn, flow)


def _close_server_conn(flow: http.HTTPFlow) -> None:
    try:
        ps = ctx.master.addons.get("proxyserver")
        conns = getattr(ps, "connections", {}) if ps is not None else {}
        handler = conns.get(flow.client_conn.id) or conns.get((flow.client_conn.peername,
                                                               flow.client_conn.sockname))
        conn = flow.server_conn
        if handler is not None and conn is not None and conn in getattr(handler, "transports", {}):
            handler.close_connection(conn)          # else the upstream already finished: nothing to stop
    except Exception:
        log.exception("metering: could not close the upstream of a cut stream")
        metrics.FAILURES.labels("cut_close").inc()
