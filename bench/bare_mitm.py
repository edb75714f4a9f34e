"""The floor: a bare minimal mitmproxy Master in reverse mode, as the notes measured it
(core, proxyserver, next_layer, tlsconfig; lazy connections; gc.freeze; uvloop), plus the one hook any
LLM proxy needs: stream ``text/event-stream`` responses instead of buffering them (mitmproxy.md §3).

Stock mitmproxy by default (the floor users would otherwise run). ``--patched``: with the same patches to
mitmproxy as Airlock (proxy/mitm_patches.py: listener backlog, per-connection state made lazily, finished
streams freed without the cyclic GC, hook dispatch without suspended context managers), which make
mitmproxy itself cheaper per request; the ratio to that line prices Airlock's addons alone."""
from __future__ import annotations

import argparse
import asyncio
import gc
import signal

import uvloop
from mitmproxy import options
from mitmproxy.addons import core, next_layer, proxyserver, tlsconfig
from mitmproxy.master import Master


class StreamSSE:
    def responseheaders(self, flow) -> None:
        if flow.response.headers.get("content-type", "").startswith("text/event-stream"):
            flow.response.stream = True


async def main(listen: int, upstream: str, patched: bool) -> None:
    from proxy import mitm_patches
    if patched:
        mitm_patches.apply()
    opts = options.Options()
    m = Master(opts)
    m.addons.add(core.Core(), proxyserver.Proxyserver(), next_layer.NextLayer(), tlsconfig.TlsConfig(), StreamSSE())
    opts.update(mode=[f"reverse:{upstream}@127.0.0.1:{listen}"], connection_strategy="lazy")
    loop = asyncio.get_running_loop()
    for s in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(s, m.shutdown)
    if patched:
        mitm_patches.freeze_heap()        # and the same garbage handling (mitm_patches 4.)
    else:
        gc.collect()
        gc.freeze()
    await m.run()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--patched", action="store_true", help="with Airlock's patches to mitmproxy")
    a = ap.parse_args()
    uvloop.run(main(a.port, a.upstream, a.patched))
