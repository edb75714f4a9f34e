"""Routing: decides which route a flow takes and points it at the upstream.

Gateway listener: path prefix -> provider / MCP server (unknown prefix -> 404
JSON listing the valid ones). Proxy and sidecar listeners: requests to a
configured provider or MCP host are governed; TLS to any other host is passed
through without interception (``tls_clienthello``). Oversized bodies -> 413.
"""
from __future__ import annotations

import logging

from mitmproxy import http, tls
from mitmproxy.proxy.mode_specs import ReverseMode

from proxy import errors, flowmeta
from proxy.metrics import REFUSED
from proxy.routing import Router, listener_of
from proxy.runtime import Runtime

log = logging.getLogger(__name__)


class Routing:
    def __init__(self, rt: Runtime):
        self.rt = rt
        self.router = Router(rt.config)
        self.max_body = rt.config.max_body_bytes

    def tls_clienthello(self, data: tls.ClientHelloData) -> None:
        mode = data.context.client.proxy_mode
        if isinstance(mode, ReverseMode):
            return
        host = data.client_hello.sni or (data.context.server.address or ("",))[0]
        if host not in self.router.governed_hosts:
            data.ignore_connection = True          # not ours: pass through untouched

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        listener = listener_of(flow.client_conn.proxy_mode)
        req = flow.request
        if listener == "gateway":
            path = req.path.split("?", 1)[0]
            found = self.router.gateway(path)
            if found is None:
                REFUSED.labels("no_route").inc()
                flow.metadata[flowmeta.OUTCOME] = "no_route"
                flow.response = http.Response.make(404, _no_route(self.router, path),
                                                   errors.JSON_HEADERS)
                return
            target, upstream_path, route_path = found
            query = req.path[len(path):]
            # set the request's fields directly: the property setters re-derive the Host header each time
            data = req.data
            data.scheme, data.host, data.port = target.scheme.encode(), target.host, target.port
            data.path = (upstream_path + query).encode()
            req.host_header = target.host_header
        else:
            target = self.router.proxied(req.pretty_host, req.port, req.path)
            if target is None:
                return                               # not governed: forwarded as is
            route_path = self.router.route_path(target, req.path)
        route = self.router.route_for(target, listener, route_path)
        flow.metadata[flowmeta.ROUTE] = route
        size = flowmeta.headers(flow).get("content-length")
        if size and size.isdigit() and int(size) > self.max_body:
            REFUSED.labels("too_large").inc()
            flow.metadata[flowmeta.OUTCOME] = "too_large"
            flow.response = errors.response(
                route.kind, 413, f"request body too large: {size} bytes is over Airlock's limit of {self.max_body} "
                f"bytes (limits.max_body_bytes)",
                "request_too_large")


def _no_route(router: Router, path: str) -> bytes:
    import orjson
    return orjson.dumps({"error": {
        "type": "not_found_error", "code": "no_route",
        "message": f"no Airlock route for {path!r}; valid prefixes: {', '.join(router.valid_prefixes())}",
        "valid_prefixes": router.valid_prefixes()}})
