"""Metrics: requests by listener / route / status and their latency."""
from __future__ import annotations

from mitmproxy import http

from proxy import flowmeta
from proxy.metrics import ERRORS, IN_FLIGHT, LATENCY, REQUESTS, child
from proxy.routing import listener_of


class Metrics:
    def __init__(self, rt=None):
        pass

    def client_connected(self, client) -> None:
        IN_FLIGHT.inc()

    def client_disconnected(self, client) -> None:
        IN_FLIGHT.dec()

    def response(self, flow: http.HTTPFlow) -> None:
        route = flow.metadata.get(flowmeta.ROUTE)
        if route is not None:
            listener, kind = route.listener, route.kind
        else:
            listener, kind = listener_of(flow.client_conn.proxy_mode), "other"
        child(REQUESTS, listener, kind, str(flow.response.status_code)).inc()
        end = flow.response.timestamp_end or flow.response.timestamp_start
        if end and flow.request.timestamp_start:
            child(LATENCY, listener, kind).observe(max(0.0, end - flow.request.timestamp_start))

    def error(self, flow: http.HTTPFlow) -> None:
        route = flowmeta.route(flow)
        listener = route.listener if route else listener_of(flow.client_conn.proxy_mode)
        msg = (flow.error.msg if flow.error else "").lower()
        kind = "client_disconnected" if "client" in msg and "disconnect" in msg else \
            "upstream" if "server" in msg or "connect" in msg else "other"
        ERRORS.labels(listener, route.kind if route else "other", kind).inc()
