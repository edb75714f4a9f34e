"""Keep-alive for held MCP calls: an in-process aiohttp responder on the proxy's loop.

mitmproxy cannot stream a response from a hook, and MCP clients give up after about
60 s. For a held Streamable HTTP ``tools/call`` whose client accepts
``text/event-stream`` and sent ``_meta.progressToken``, the addon re-points the
flow at this responder (127.0.0.1, random port, unguessable path). It answers
``200 text/event-stream`` at once, sends MCP ``notifications/progress`` every
``keepalive_seconds`` while the request waits, then either performs the real
upstream call and relays its answer as SSE, or sends the refusal as the result.
A client that goes away cancels the approval request.
"""
from __future__ import annotations

import asyncio
import logging
import secrets
import ssl
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from . import metrics, replies
from .model import APPROVED
from .service import ApprovalError

log = logging.getLogger(__name__)
_HOP = {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "proxy-authorization",
        "proxy-connection", "te", "upgrade", "accept-encoding"}


@dataclass(slots=True)
class Hold:
    approval_id: str
    tool: str
    rpc_id: Any
    url: str
    headers: list[tuple[str, str]]
    body: bytes
    progress_token: Any
    modern: bool
    created: float
    expires_at: float


def sse(data: Any) -> bytes:
    return b"event: message\ndata: " + orjson.dumps(data) + b"\n\n"


class Responder:
    def __init__(self, gate: Any, keepalive: float, ssl_insecure: bool = False):
        self.gate = gate
        self.keepalive = keepalive
        self.ssl: Any = False if ssl_insecure else ssl.create_default_context()
        self.holds: dict[str, Hold] = {}
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/hold/{token}", self.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, backlog=4096)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    def reroute(self, flow: Any, approval: Any, rpc_id: Any, progress_token: Any, modern: bool) -> None:
        """Point the held flow at this responder; the responder answers and relays."""
        req = flow.request
        token = secrets.token_urlsafe(18)
        url = f"{req.scheme}://{req.host}:{req.port}{req.path}"
        headers = [(k, v) for k, v in req.headers.items(multi=True) if k.lower() not in _HOP]
        self.holds[token] = Hold(approval.id, approval.tool, rpc_id, url, headers, req.raw_content or b"",
                                 progress_token, modern, time.time(), approval.expires_at)
        req.scheme, req.host, req.port = "http", "127.0.0.1", self.port
        req.path = f"/hold/{token}"
        req.headers["accept-encoding"] = "identity"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        hold = self.holds.pop(request.match_info["token"], None)
        if hold is None:
            return web.json_response({"error": "unknown hold"}, status=404)
        resp = web.StreamResponse(headers={"content-type": "text/event-stream", "cache-control": "no-cache",
                                           "x-accel-buffering": "no"})
        svc = self.gate.service
        waiter = asyncio.ensure_future(svc.wait(hold.approval_id, max(0.0, hold.expires_at - time.time())))
        metrics.HELD.inc()
        state = None
        try:
            await resp.prepare(request)
            n = 0
            while True:
                done, _ = await asyncio.wait({waiter}, timeout=self.keepalive)
                if done:
                    break
                n += 1
                await resp.write(sse({"jsonrpc": "2.0", "method": "notifications/progress", "params": {
                    "progressToken": hold.progress_token, "progress": n,
                    "message": f"Waiting for human approval ({hold.approval_id}), "
                               f"{int(time.time() - hold.created)} s so far"}}))
            try:
                state = waiter.result()
            except ApprovalError as e:
                self.gate.failed(hold.approval_id, hold.tool, e)
                await resp.write(sse(replies.failure(hold.rpc_id, hold.tool, str(e), hold.modern)))
                return resp
            if state == APPROVED:
                await self.relay(hold, resp)
            else:
                req = await svc.get(hold.approval_id)
                metrics.DECIDED.labels(state).inc()
                if req is not None:
                    await resp.write(sse(replies.refusal(hold.rpc_id, req, hold.modern)))
            await resp.write_eof()
        except (ConnectionResetError, aiohttp.ClientConnectionError, asyncio.CancelledError) as e:
            if state is None:
                self.gate.spawn(svc.cancel(hold.approval_id, "client disconnected while held"))
            if isinstance(e, asyncio.CancelledError):
                raise
        finally:
            metrics.HELD.dec()
            if not waiter.done():
                waiter.cancel()
        return resp

    async def relay(self, hold: Hold, resp: web.StreamResponse) -> None:
        """Run the approved call upstream and pass its answer on as SSE events."""
        metrics.DECIDED.labels(APPROVED).inc()
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_read=600))
        try:
            async with self._session.post(hold.url, data=hold.body, headers=hold.headers, ssl=self.ssl) as up:
                ctype = up.headers.get("content-type", "")
                if ctype.startswith("text/event-stream"):
                    async for chunk in up.content.iter_any():
                        await resp.write(chunk)
                else:
                    raw = await up.read()
                    try:
                        await resp.write(sse(orjson.loads(raw)))
                    except orjson.JSONDecodeError:
                        await resp.write(sse(replies.upstream_failed(hold.rpc_id, hold.tool, f"HTTP {up.status}",
                                                                     hold.modern)))
                outcome = f"forwarded: HTTP {up.status}"
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
            outcome = f"upstream error: {type(e).__name__}"
            await resp.write(sse(replies.upstream_failed(hold.rpc_id, hold.tool, type(e).__name__, hold.modern)))
        self.gate.spawn(self.gate.service.set_outcome(hold.approval_id, outcome))
