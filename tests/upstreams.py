"""Upstreams for tests and benchmarks: a byte-exact replay of the recorded provider
streams, and a small JSON echo. Runs in a thread with its own event loop, or as
``python -m tests.upstreams --port P`` for benchmarks.

Routes (the first path segment other than ``v1`` names a recorded stream, without ``.sse``):
  POST [/v1]/<fixture>/...        -> the recording, as text/event-stream, one event per write
  POST [/v1]/slow-<fixture>/...   -> the same, pausing ``pace`` seconds between events
  POST [/v1]/json/...             -> 200 JSON echo of the request (method, path, headers, body size)
  GET|POST [/v1]/status/<code>/.. -> that status with an OpenAI-style error body
Every request is recorded in ``requests`` (headers + body) for assertions.
"""
from __future__ import annotations

import argparse
import asyncio
import ssl
import threading
from pathlib import Path

import orjson
from aiohttp import web

def _streams_dir() -> Path:
    """The recorded streams in shared/ (beside the clone), or $AIRLOCK_SHARED/fixtures/streams."""
    import os
    candidates = [Path(os.environ["AIRLOCK_SHARED"])] if os.environ.get("AIRLOCK_SHARED") else []
    candidates += [Path(__file__).resolve().parents[2] / "shared", Path("/work/shared")]
    for c in candidates:
        if (c / "fixtures" / "streams").is_dir():
            return c / "fixtures" / "streams"
    raise RuntimeError("recorded streams not found: put shared/ beside the clone or set AIRLOCK_SHARED")


STREAMS = _streams_dir()


def stream_bytes(name: str) -> bytes:
    return (STREAMS / f"{name}.sse").read_bytes()


def split_events(raw: bytes) -> list[bytes]:
    """Split a recording into its events, each with its trailing blank line (bytes kept exact)."""
    out, start = [], 0
    norm = raw.replace(b"\r\n", b"\n")
    if norm != raw:           # keep exactness for CRLF recordings: one write
        return [raw]
    while True:
        i = raw.find(b"\n\n", start)
        if i < 0:
            if start < len(raw):
                out.append(raw[start:])
            return out
        out.append(raw[start:i + 2])
        start = i + 2


class Upstream:
    def __init__(self, pace: float = 0.02, tls: ssl.SSLContext | None = None):
        self.pace = pace
        self.tls = tls
        self.requests: list[dict] = []
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.disconnects = 0

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append({"method": request.method, "path": request.path_qs, "headers": {k.lower(): v for k, v in request.headers.items()},
                              "body": body})
        parts = [p for p in request.path.strip("/").split("/") if p and p != "v1"]
        first = parts[0] if parts else ""
        if first == "json":
            return web.json_response({"method": request.method, "path": request.path_qs, "size": len(body),
                                      "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}})
        if first == "status" and len(parts) > 1 and parts[1].isdigit():
            return web.json_response({"error": {"message": "upstream says no", "type": "test"}},
                                     status=int(parts[1]))
        slow = first.startswith("slow-")
        name = first[5:] if slow else first
        if not (STREAMS / f"{name}.sse").exists():
            return web.json_response({"error": {"message": f"no recording {name}"}}, status=404)
        resp = web.StreamResponse(headers={"content-type": "text/event-stream", "cache-control": "no-cache"})
        await resp.prepare(request)
        try:
            for ev in split_events(stream_bytes(name)):
                await resp.write(ev)
                if slow:
                    await asyncio.sleep(self.pace)
        except (ConnectionResetError, asyncio.CancelledError):
            self.disconnects += 1
            raise
        await resp.write_eof()
        return resp

    async def _start(self, port: int = 0, host: str = "127.0.0.1") -> None:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=self.tls)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    def start(self) -> "Upstream":
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        def run():
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._start())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("upstream did not start")
        return self

    def stop(self) -> None:
        if self._loop and self._runner:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--pace", type=float, default=0.0)
    args = ap.parse_args()
    up = Upstream(pace=args.pace)

    async def serve():
        await up._start(args.port)
        print(up.port, flush=True)
        await asyncio.Event().wait()

    try:
        import uvloop
        uvloop.run(serve())
    except ImportError:
        asyncio.run(serve())


if __name__ == "__main__":
    main()
