"""The bench's OpenAI-compatible upstream (aiohttp on uvloop), shared by every target so that direct,
bare mitmproxy, Airlock and the peer gateways all talk to the same server.

    python -m bench.upstream --port P [--events 20] [--pace-ms 0]

``POST .../chat/completions``:
  * ``"stream": true`` -> ``text/event-stream`` of ``chat.completion.chunk`` events, then a usage chunk
    (when ``stream_options.include_usage``) and ``[DONE]``. Each content chunk carries ``"t"``: the
    send time in ``time.perf_counter_ns()`` (CLOCK_MONOTONIC, comparable across processes on one host),
    so a client can compute per-event latency. ``bench_events`` / ``bench_pace_ms`` in the body override
    the server's defaults (gateways that rebuild the body drop them: then the defaults apply);
  * otherwise a ``chat.completion`` JSON of about 1 KB.
Any other path: 404.
"""
from __future__ import annotations

import argparse
import asyncio
import time

import orjson
from aiohttp import web

_CONTENT = "lorem ipsum " * 60                          # ~720 chars: a ~1 KB chat.completion
COMPLETION = orjson.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1700000000, "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": _CONTENT}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 120, "total_tokens": 132}})
# content differs per chunk (" t0", " t1", ...): LiteLLM aborts a stream after 100 identical chunks
_HEAD = (b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,'
         b'"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":" t')
_MID = b'"},"finish_reason":null}],"t":'
_STOP = (b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,'
         b'"model":"gpt-4o-mini","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n')


def _usage(n: int) -> bytes:
    return (b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,'
            b'"model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":'
            + str(n).encode() + b',"total_tokens":' + str(n + 12).encode() + b'}}\n\n')


def make_app(events: int = 20, pace_ms: float = 0.0) -> web.Application:
    async def chat(request: web.Request) -> web.StreamResponse:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return web.json_response({"error": {"message": "bad JSON", "type": "invalid_request_error"}},
                                     status=400)
        if not body.get("stream"):
            return web.Response(body=COMPLETION, content_type="application/json")
        n = int(body.get("bench_events", events))
        pace = float(body.get("bench_pace_ms", pace_ms)) / 1000
        resp = web.StreamResponse(headers={"content-type": "text/event-stream", "cache-control": "no-cache"})
        await resp.prepare(request)
        for i in range(n):
            await resp.write(b"".join((_HEAD, str(i).encode(), _MID, str(time.perf_counter_ns()).encode(),
                                       b"}\n\n")))
            if pace:
                await asyncio.sleep(pace)
        tail = [_STOP]
        if (body.get("stream_options") or {}).get("include_usage"):
            tail.append(_usage(n))
        tail.append(b"data: [DONE]\n\n")
        await resp.write(b"".join(tail))
        await resp.write_eof()
        return resp

    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_post("/{prefix:.*}chat/completions", chat)
    return app


async def serve(port: int, events: int, pace_ms: float) -> None:
    runner = web.AppRunner(make_app(events, pace_ms), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(prog="python -m bench.upstream")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--events", type=int, default=20)
    ap.add_argument("--pace-ms", type=float, default=0.0)
    a = ap.parse_args()
    import uvloop
    uvloop.run(serve(a.port, a.events, a.pace_ms))
