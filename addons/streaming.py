"""Streaming: server-sent events pass through chunk by chunk, never buffered whole.

Runs after the addons that install their own stream callables (metering, MCP);
it only switches plain streaming on where nobody did.
"""
from __future__ import annotations

from mitmproxy import http


class Streaming:
    def __init__(self, rt=None):
        pass

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        resp = flow.response
        if resp is None or resp.stream:
            return
        if resp.headers.get("content-type", "").startswith("text/event-stream"):
            resp.stream = True
