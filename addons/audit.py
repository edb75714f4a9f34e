"""Audit: one ``request`` row per flow, and fail-closed when rows cannot be kept.

``response`` and ``error`` hand the row to the audit writer's queue. For
governed flows (model and MCP routes) the hook writes the row (and every row
queued before it, such as the call's usage and decision rows) to the WAL file
itself before the answer goes out, so a crash of Airlock never loses the row of
an answered call; the writer thread fsyncs it within ~10 ms
(``audit.durable_answers``, on by default; off, the row is queued for the group
commit instead). ``request`` refuses governed calls while
the WAL cannot be written and ``audit.fail_closed`` is on.
"""
from __future__ import annotations

import asyncio
import logging

from mitmproxy import http

from proxy import errors, flowmeta
from proxy.audit.flows import request_fields
from proxy.runtime import Runtime

log = logging.getLogger(__name__)
DURABLE_WAIT_SECONDS = 10.0


class Audit:
    def __init__(self, rt: Runtime):
        self.rt = rt
        self.sink = rt.audit
        durable = (rt.config.extra.get("audit") or {}).get("durable_answers", True)
        self._write = getattr(rt.audit, "write", None) if durable else None
        self._emit = _by_dict(rt.audit, "emit")
        self._write_now = _by_dict(rt.audit, "write_now") if durable else None
        try:  # the sessions service the identity addon asks about ended sessions
            from proxy.sessions import service
            service(rt)
        except Exception:  # noqa: BLE001
            log.exception("sessions service unavailable")

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None or getattr(self.sink, "accepting", True):
            return
        route = flowmeta.route(flow)
        if route is None or not route.governed:
            return
        flow.metadata[flowmeta.OUTCOME] = "audit_unavailable"
        flow.response = errors.response(route.kind, 503, "Airlock cannot record this call in its audit trail "
                                        "(audit WAL not writable), so it refuses governed calls until it can",
                                        "audit_unavailable")

    def response(self, flow: http.HTTPFlow):
        try:
            fields = request_fields(flow)
        except Exception as e:  # noqa: BLE001 - still record that the flow happened
            log.exception("audit: building the request row failed")
            fields = {"reason": f"audit row build failed: {type(e).__name__}", "method": flow.request.method}
        route = flowmeta.route(flow)
        if self._write is None or route is None or not route.governed:
            self._emit("request", fields)
            return None
        ok = self._write_now("request", fields) if self._write_now is not None else None
        if ok is None:                   # written from here is not possible right now: wait for the writer
            return self._durable(flow, fields)
        if not ok:
            log.error("audit: the row of %s %s could not be written to the WAL", flow.request.method,
                      fields.get("path"))
        return None

    async def _durable(self, flow: http.HTTPFlow, fields: dict) -> None:
        """Hold the answer until its row is fsynced in the WAL."""
        try:
            ok = await asyncio.wait_for(self._write("request", **fields), DURABLE_WAIT_SECONDS)
        except asyncio.TimeoutError:
            ok = False
        if not ok:
            log.error("audit: the row of %s %s was not confirmed durable", flow.request.method, fields.get("path"))

    def error(self, flow: http.HTTPFlow) -> None:
        try:
            fields = request_fields(flow, error=flow.error.msg if flow.error else "error")
        except Exception as e:  # noqa: BLE001
            log.exception("audit: building the error row failed")
            fields = {"reason": f"audit row build failed: {type(e).__name__}", "outcome": "error"}
        self._emit("request", fields)


def _by_dict(sink, name: str):
    """``sink.<name>_fields(kind, fields)`` (the row's dict queued as it is, no ``**`` copies on the event
    loop), or a wrapper of ``sink.<name>(kind, **fields)`` for sinks without it; None if it has neither."""
    direct = getattr(sink, f"{name}_fields", None)
    if direct is not None:
        return direct
    method = getattr(sink, name, None)
    if method is None:
        return None
    return lambda kind, fields: method(kind, **fields)
