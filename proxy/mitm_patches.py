"""The two places where Airlock changes mitmproxy internals (re-check on upgrade).

1. Listeners: asyncio's default backlog of 100 overflows under bursts, and there
   is no SO_REUSEPORT for several workers. ``mode_servers`` calls
   ``asyncio.start_server``; only that module sees the wrapper.
2. Error responses mitmproxy writes itself (upstream down, body too large, bad
   request line) are HTML. Agents' SDKs parse JSON, so they get a body that both
   the OpenAI and the Anthropic SDK read: ``{"type":"error","error":{"type","message"}}``.
"""
from __future__ import annotations

import asyncio
import functools

import orjson

_applied = False
ERROR_COUNTER = None   # set by proxy.metrics: counts errors mitmproxy answered itself


def apply(backlog: int = 4096, reuse_port: bool = False) -> None:
    global _applied
    if _applied:
        return
    _applied = True
    import mitmproxy.proxy.mode_servers as ms
    from mitmproxy import http
    from mitmproxy.net.http import http1
    from mitmproxy.proxy.layers.http import _http1

    orig = asyncio.start_server

    @functools.wraps(orig)
    async def start_server(*a, **kw):
        kw.setdefault("backlog", backlog)
        if reuse_port:
            kw.setdefault("reuse_port", True)
        return await orig(*a, **kw)

    class _AsyncioShim:
        def __getattr__(self, name):
            return start_server if name == "start_server" else getattr(asyncio, name)

    ms.asyncio = _AsyncioShim()

    def make_error_response(status_code: int, message: str = "") -> bytes:
        low = message.lower()
        if status_code == 502 and ("timed out" in low or "timeout" in low):
            status_code = 504
        kind = {400: "invalid_request_error", 413: "request_too_large", 502: "upstream_error",
                504: "timeout_error"}.get(status_code, "api_error")
        text = {502: f"Airlock could not reach the upstream: {message}",
                504: f"the upstream timed out: {message}",
                413: "request body too large for Airlock's limits.max_body_bytes"}.get(status_code, message)
        if ERROR_COUNTER is not None:
            ERROR_COUNTER.labels(str(status_code)).inc()
        body = orjson.dumps({"type": "error", "error": {"type": kind, "message": text, "code": kind}})
        resp = http.Response.make(status_code, body, {"content-type": "application/json",
                                                      "connection": "close"})
        return http1.assemble_response(resp)

    _http1.make_error_response = make_error_response
