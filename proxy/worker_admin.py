"""The supervisor's admin listener (``airlock run --workers N``): one address for N workers.

``/metrics`` merges the workers' expositions, ``POST /v1/policy/reload`` goes to every worker,
``/healthz`` / ``/readyz`` / ``/v1/workers`` answer here, everything else is forwarded to one live
worker's private admin socket (the worker checks the token itself: some of its routes are public or
take gateway tokens). The supervisor's own routes except ``/healthz`` need the admin token, as on a
single process.
"""
from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from .admin.app import ADMIN_TOKEN_REQUIRED, is_admin, json_error

if TYPE_CHECKING:
    from .workers import Supervisor, Worker

log = logging.getLogger("airlock.workers")
_HOP = {"connection", "keep-alive", "transfer-encoding", "upgrade", "host", "content-length", "te", "trailer"}


_OWN = {"/readyz", "/metrics", "/v1/workers", "/v1/policy/reload"}     # answered here, admin token only


def _headers(headers) -> dict[str, str]:
    """Headers to pass on between the caller and a worker (no hop-by-hop ones)."""
    return {k: v for k, v in headers.items() if k.lower() not in _HOP}


def build_app(sup: "Supervisor") -> web.Application:
    @web.middleware
    async def auth(request: web.Request, handler):
        if request.path in _OWN and not is_admin(request, sup.token):
            return json_error(401, ADMIN_TOKEN_REQUIRED)
        return await handler(request)

    async def healthz(_):
        return web.json_response({"status": "ok", "workers": sup.n})

    async def readyz(_):
        ready = [w.ready and w.alive() for w in sup.workers]
        ok = all(ready) and not sup.stopping
        return web.json_response({"ready": ok, "checks": {f"worker-{i}": r for i, r in enumerate(ready)}},
                                 status=200 if ok else 503)

    async def workers(_):
        ing = sup.ingester
        return web.json_response({"workers": [
            {"index": w.index, "pid": w.proc.pid if w.proc else None, "alive": w.alive(), "ready": w.ready,
             "restarts": w.restarts} for w in sup.workers],
            "ingester": await asyncio.to_thread(ing.state) if ing is not None else None})

    async def metrics(_):
        live = _live(sup)
        texts = await asyncio.gather(*[_fetch(sup, w, "/metrics") for w in live])
        body = merge_metrics([(w.index, t) for w, t in zip(live, texts) if t is not None])
        return web.Response(text=body, content_type="text/plain", charset="utf-8",
                            headers={"x-airlock-workers": str(sum(t is not None for t in texts))})

    async def policy_reload(request):
        body = await request.read()
        results = await asyncio.gather(*[_call(sup, w, request, body) for w in _live(sup)])
        outs = [r for r in results if isinstance(r, dict)]
        if not outs:
            return json_error(503, "no worker answered the reload")
        first = outs[0]
        ok = all(o.get("ok") for o in outs) and len(outs) == sup.n
        errors = [e for o in outs for e in (o.get("errors") or [])]
        return web.json_response({**first, "ok": ok, "errors": errors, "workers": len(outs),
                                  "versions": sorted({o.get("version") for o in outs if o.get("version")})})

    async def forward(request: web.Request):
        w = sup._pick()
        if w is None:
            return json_error(503, "no worker is ready; see /v1/workers")
        body = await request.read()
        try:
            s = sup._session(w)
            async with s.request(request.method, f"http://worker{request.rel_url}",
                                 headers=_headers(request.headers), data=body or None) as r:
                out = web.StreamResponse(status=r.status, headers=_headers(r.headers))
                await out.prepare(request)
                async for chunk in r.content.iter_any():
                    await out.write(chunk)
                await out.write_eof()
                return out
        except (OSError, asyncio.TimeoutError) as e:
            log.error("admin: forwarding %s %s to worker %d failed: %s", request.method, request.path, w.index, e)
            return json_error(502, f"worker {w.index} did not answer ({type(e).__name__}); try again")

    app = web.Application(middlewares=[auth], client_max_size=16 * 1024 * 1024)
    app.add_routes([web.get("/healthz", healthz), web.get("/readyz", readyz), web.get("/v1/workers", workers),
                    web.get("/metrics", metrics), web.post("/v1/policy/reload", policy_reload),
                    web.route("*", "/{tail:.*}", forward)])
    return app


def _live(sup: "Supervisor") -> list["Worker"]:
    return [w for w in sup.workers if w.alive() and w.ready]


async def _fetch(sup: "Supervisor", w: "Worker", path: str) -> str | None:
    try:
        async with sup._session(w).get(f"http://worker{path}", headers=sup._auth()) as r:
            return await r.text() if r.status == 200 else None
    except (OSError, asyncio.TimeoutError) as e:
        log.warning("admin: worker %d did not answer %s: %s", w.index, path, e)
        return None


async def _call(sup: "Supervisor", w: "Worker", request: web.Request, body: bytes) -> dict | None:
    try:
        async with sup._session(w).request(request.method, f"http://worker{request.rel_url}",
                                           headers=_headers(request.headers), data=body or None) as r:
            return await r.json()
    except Exception as e:  # noqa: BLE001 - reported as a missing worker in the merged answer
        log.warning("admin: worker %d did not answer %s: %s", w.index, request.path, e)
        return None


def _labels(labels: dict) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
    return "{" + inner + "}"


def _escape(v: str) -> str:
    return str(v).replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _num(v: float) -> str:
    if v != v:
        return "NaN"
    if v in (float("inf"), float("-inf")):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v)) if not float(v).is_integer() else f"{v:.1f}"


def merge_metrics(texts: list[tuple[int, str]]) -> str:
    """One exposition from several workers': counters, histograms and summaries are summed per
    label set; gauges are per process, so each keeps a ``worker`` label."""
    order: list[str] = []
    meta: dict[str, tuple[str, str]] = {}
    samples: dict[str, dict[tuple, float]] = {}
    for index, text in texts:
        for fam in text_string_to_metric_families(text):
            if fam.name not in meta:
                order.append(fam.name)
                meta[fam.name] = (fam.type, fam.documentation)
                samples[fam.name] = {}
            acc = samples[fam.name]
            for s in fam.samples:
                labels = dict(s.labels)
                if fam.type in ("gauge", "unknown", "info", "stateset"):
                    labels["worker"] = str(index)
                key = (s.name, tuple(sorted(labels.items())))
                if key not in acc:
                    acc[key] = s.value
                elif s.name.endswith("_created"):        # a timestamp: the earliest worker's
                    acc[key] = min(acc[key], s.value)
                else:
                    acc[key] += s.value
    out: list[str] = []
    for name in order:
        typ, doc = meta[name]
        out.append(f"# HELP {name} {doc}")
        out.append(f"# TYPE {name} {typ}")
        for (sname, labels), value in samples[name].items():
            out.append(f"{sname}{_labels(dict(labels))} {_num(value)}")
    return "\n".join(out) + "\n"
