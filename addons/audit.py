"""Audit: one ``request`` row per flow, and fail-closed when rows cannot be kept.

``response`` and ``error`` hand the row to the audit writer's queue. For
governed flows (model and MCP routes) the hook writes the row (and every row
queued before it, such as the call's decision rows) to the WAL file
itself before the answer goes out, so a crash of Airlock never loses the row of
an answered call; the writer thread fsyncs it within ~10 ms
(``audit.durable_answers``, on by default; off, the row is queued for the group
commit instead). ``request`` refuses governed calls while
the WAL cannot be written and ``audit.fail_closed`` is on.

With Airlock's own sink the row is built here, straight from the flow (``request_row``); a sink without
rows gets the row's fields (``request_fields``) instead.
"""
from __future__ import annotations

import asyncio
import logging

from mitmproxy import http

from proxy import errors, flowmeta
from proxy.audit.events import build_row, strip_query
from proxy.audit.flows import request_fields, request_row
from proxy.runtime import Runtime

log = logging.getLogger(__name__)
DURABLE_WAIT_SECONDS = 10.0


class Audit:
    def __init__(self, rt: Runtime):
        self.rt = rt
        self.sink = sink = rt.audit
        durable = (rt.config.extra.get("audit") or {}).get("durable_answers", True)
        self._redactor = getattr(sink, "redactor", None)
        self._rows = rows = self._redactor is not None and all(
            hasattr(sink, n) for n in ("emit_row", "write_now_row", "write_row"))
        if rows:
            self._emit = sink.emit_row
            self._write_now = sink.write_now_row if durable else None
            self._write = sink.write_row if durable else None
        else:
            self._emit = _by_dict(sink, "emit")
            self._write_now = _by_dict(sink, "write_now") if durable else None
            write = getattr(sink, "write", None) if durable else None
            self._write = (lambda fields: write("request", **fields)) if write is not None else None
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
        row = self._row(flow, None, "request")
        route = flow.metadata.get(flowmeta.ROUTE)
        if self._write is None or route is None or not route.governed:
            self._emit(row)
            return None
        ok = self._write_now(row) if self._write_now is not None else None
        if ok is None:                   # written from here is not possible right now: wait for the writer
            return self._durable(flow, row)
        if not ok:
            log.error("audit: the row of %s %s could not be written to the WAL", flow.request.method,
                      strip_query(flow.request.path))
        return None

    async def _durable(self, flow: http.HTTPFlow, row: dict) -> None:
        """Hold the answer until its row is fsynced in the WAL."""
        try:
            ok = await asyncio.wait_for(self._write(row), DURABLE_WAIT_SECONDS)
        except asyncio.TimeoutError:
            ok = False
        if not ok:
            log.error("audit: the row of %s %s was not confirmed durable", flow.request.method,
                      strip_query(flow.request.path))

    def error(self, flow: http.HTTPFlow) -> None:
        self._emit(self._row(flow, flow.error.msg if flow.error else "error", "error"))

    def _row(self, flow: http.HTTPFlow, error: str | None, what: str) -> dict:
        """The flow's row (Airlock's sink) or its fields (any other sink); never raises."""
        try:
            if self._rows:
                return request_row(flow, self._redactor, error)
            return request_fields(flow, error)
        except Exception as e:  # noqa: BLE001 - still record that the flow happened
            log.exception("audit: building the %s row failed", what)
            fields = {"reason": f"audit row build failed: {type(e).__name__}", "method": flow.request.method,
                      **({"outcome": "error"} if error is not None else {})}
            return build_row("request", fields, self._redactor) if self._rows else fields


def _by_dict(sink, name: str):
    """``sink.<name>_fields(kind, fields)`` (the row's dict queued as it is, no ``**`` copies on the event
    loop), or a wrapper of ``sink.<name>(kind, **fields)`` for sinks without it; None if it has neither.
    The wrapper takes the fields only: the kind is always ``request`` here."""
    direct = getattr(sink, f"{name}_fields", None)
    if direct is not None:
        return lambda fields: direct("request", fields)
    method = getattr(sink, name, None)
    if method is None:
        return None
    return lambda fields: method("request", **fields)
