"""MCP firewall addon: decides tools/call, filters and annotates tools/list.

Thin: every flow whose route is not MCP returns at the first line; the work is in
``proxy.mcp.firewall``. Any exception on a governed request refuses it (fail closed):
mitmproxy would otherwise forward a request whose hook raised.
"""
from __future__ import annotations

from mitmproxy import http

from proxy.flowmeta import ROUTE
from proxy.mcp.firewall import Firewall
from proxy.runtime import Runtime


class Mcp:
    # AddonChain calls this addon's flow hooks only for these route kinds
    route_kinds = frozenset({"mcp"})

    def __init__(self, rt: Runtime):
        self.fw = Firewall(rt)
        rt.services.setdefault("mcp", self.fw)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        route = flow.metadata.get(ROUTE)
        if route is None or route.kind != "mcp" or flow.response is not None:
            return
        flow.request.headers["accept-encoding"] = "identity"    # SSE must arrive uncompressed to be rewritten
        if flow.request.method != "POST":
            return
        try:
            self.fw.request_headers(flow, route)
        except Exception as e:
            self.fw.fail_closed(flow, route.name, e)

    async def request(self, flow: http.HTTPFlow) -> None:
        route = flow.metadata.get(ROUTE)
        if route is None or route.kind != "mcp" or flow.response is not None:
            return
        try:
            await self.fw.request(flow, route)
        except Exception as e:          # fail closed: never forward what we could not decide
            self.fw.fail_closed(flow, route.name, e)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        route = flow.metadata.get(ROUTE)
        if route is None or route.kind != "mcp":
            return
        try:
            self.fw.response_headers(flow, route)
        except Exception as e:
            self.fw.fail_closed(flow, route.name, e)

    async def response(self, flow: http.HTTPFlow) -> None:
        route = flow.metadata.get(ROUTE)
        if route is None or route.kind != "mcp":
            return
        try:
            await self.fw.response(flow, route)
        except Exception as e:
            self.fw.fail_closed(flow, route.name, e)
