"""proxy.mitm_patches, part 4 (garbage per request): a finished HTTP stream, its flow and what addons hung
on it are freed by reference counting, without the cyclic garbage collector.

The scenario runs under ``python -O``, as Airlock does: without it mitmproxy's ``__debug__`` type checks
raise and catch exceptions whose tracebacks make cycles of their own."""
from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import weakref
from pathlib import Path

import httpx
from aiohttp import web
from mitmproxy import options
from mitmproxy.addons import core, next_layer, proxyserver, tlsconfig
from mitmproxy.master import Master

from proxy import mitm_patches
from tests.harness import free_port

mitm_patches.apply()


class Keep:
    """Remembers each flow weakly, and hangs an object with a back-reference on it (as addons do)."""

    def __init__(self):
        self.flows: list[weakref.ref] = []

    def response(self, flow) -> None:
        flow.metadata["addon"] = {"flow_id": flow.id, "note": ["x"] * 10}
        self.flows.append(weakref.ref(flow))


async def _upstream() -> tuple[web.AppRunner, int]:
    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "got": len(await request.read())})
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", ok)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


async def _until(pred, what: str, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not pred():
        assert asyncio.get_running_loop().time() < deadline, what
        await asyncio.sleep(0.01)


def test_finished_flows_are_freed_without_the_cyclic_gc():
    out = subprocess.run([sys.executable, "-O", "-c", "import asyncio, tests.test_mitm_gc as t; "
                          "asyncio.run(t.keep_alive_flows_freed())"], cwd=Path(__file__).resolve().parents[1],
                         capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert "freed" in out.stdout


async def keep_alive_flows_freed() -> None:
    assert not __debug__, "run under python -O"
    runner, up = await _upstream()
    keep, listen = Keep(), free_port()
    opts = options.Options()
    m = Master(opts)
    m.addons.add(core.Core(), proxyserver.Proxyserver(), next_layer.NextLayer(), tlsconfig.TlsConfig(), keep)
    opts.update(mode=[f"reverse:http://127.0.0.1:{up}@127.0.0.1:{listen}"], connection_strategy="lazy")
    run = asyncio.create_task(m.run())
    gc.collect()
    gc.disable()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{listen}") as client:
            for _ in range(60):
                try:
                    await client.get("/ready")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
            for i in range(5):                              # keep-alive: one connection, five streams
                r = await client.post("/v1/x", content=b"a" * 1000)
                assert r.status_code == 200 and r.json()["got"] == 1000
            # every finished stream's flow is gone although the connection is still open and gc is off
            await _until(lambda: len(keep.flows) >= 6 and sum(w() is not None for w in keep.flows) <= 1,
                         f"flows still alive: {sum(w() is not None for w in keep.flows)} of {len(keep.flows)}")
            print("freed")
    finally:
        gc.enable()
        m.shutdown()
        await run
        await runner.cleanup()
