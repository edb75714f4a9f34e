"""Admin API of the audit trail. With chDB the data directory belongs to the running
proxy, so the CLI reads the trail through these routes (all read-only):

- ``POST /v1/audit/query {"sql", "params"?, "limit"?}`` -> ``{"rows", "count", "truncated"}``
- ``GET /v1/audit/tail?after=CURSOR&limit=N&kind=K`` -> ``{"rows", "cursor"}``
- ``GET /v1/audit/export?from=T&to=T&format=jsonl|csv|parquet`` -> the rows, streamed
- ``GET /v1/audit/verify[?stream=S]`` -> the hash-chain report
- ``GET /v1/audit/status`` -> writer figures (queue, WAL, backlog)
"""
from __future__ import annotations

import asyncio
import datetime as _dt
import decimal
import uuid

import orjson
from aiohttp import web

from ..audit import query as q

_CONTENT_TYPES = {"jsonl": "application/x-ndjson", "csv": "text/csv", "parquet": "application/vnd.apache.parquet"}


def _default(v):
    if isinstance(v, (decimal.Decimal,)):
        return float(v)
    if isinstance(v, (uuid.UUID, _dt.date, _dt.time)):
        return str(v)
    if isinstance(v, bytes):
        return v.decode(errors="replace")
    return str(v)


def dumps(obj) -> bytes:
    return orjson.dumps(obj, default=_default, option=orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z |
                        orjson.OPT_NON_STR_KEYS)


def json_response(obj, status: int = 200) -> web.Response:
    return web.Response(body=dumps(obj), status=status, content_type="application/json")


def error(status: int, message: str) -> web.Response:
    return json_response({"error": {"message": message, "status": status}}, status)


def _sink(rt):
    sink = rt.audit
    if not hasattr(sink, "query") or not hasattr(sink, "raw"):
        raise web.HTTPServiceUnavailable(text='{"error": {"message": "no audit writer in this process"}}',
                                         content_type="application/json")
    return sink


async def _call(fn, *args):
    """Run a blocking ClickHouse call off the loop; turn its errors into 400/503 answers."""
    try:
        return await asyncio.to_thread(fn, *args), None
    except q.QueryError as e:
        return None, error(400, str(e))
    except Exception as e:  # noqa: BLE001 - driver errors carry the ClickHouse message
        text = str(e).strip().splitlines()[0][:500] if str(e).strip() else type(e).__name__
        status = 400 if "Code:" in text or "DB::Exception" in text else 503
        return None, error(status, f"audit query failed: {text}")


def routes(rt) -> list[web.RouteDef]:
    async def run_query(request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except Exception:  # noqa: BLE001
            return error(400, 'body must be JSON: {"sql": "SELECT ..."}')
        if not isinstance(body, dict) or not isinstance(body.get("sql"), str):
            return error(400, '"sql" (a SELECT statement) is required')
        params = body.get("params") or None
        if params is not None and not isinstance(params, dict):
            return error(400, '"params" must be an object of {name: value}')
        limit = body.get("limit", 10_000)
        if not isinstance(limit, int) or limit < 1:
            return error(400, '"limit" must be a positive integer')
        out, err = await _call(q.run_query, _sink(rt), body["sql"], params, limit)
        return err or json_response(out)

    async def tail(request: web.Request) -> web.Response:
        try:
            limit = int(request.query.get("limit", "100"))
        except ValueError:
            return error(400, "limit must be an integer")
        out, err = await _call(q.tail, _sink(rt), request.query.get("after"), limit, request.query.get("kind"))
        return err or json_response(out)

    async def verify(request: web.Request) -> web.Response:
        out, err = await _call(q.verify, _sink(rt), request.query.get("stream"))
        return err or json_response(out)

    async def status(_request: web.Request) -> web.Response:
        sink = _sink(rt)
        return json_response(sink.stats() if hasattr(sink, "stats") else {})

    async def export(request: web.Request) -> web.StreamResponse:
        fmt = request.query.get("format", "jsonl")
        if fmt not in q.EXPORT_FORMATS:
            return error(400, f"unknown format {fmt!r}: use jsonl, csv or parquet")
        try:
            frm, to = q.parse_time(request.query.get("from")), q.parse_time(request.query.get("to"))
        except q.QueryError as e:
            return error(400, str(e))
        sink = _sink(rt)
        total, err = await _call(q.export_count, sink, frm, to)
        if err:
            return err
        chunks = q.export(sink, fmt, frm, to)
        first, err = await _call(next, chunks, None)
        if err:
            return err
        resp = web.StreamResponse(headers={"content-type": _CONTENT_TYPES[fmt], "x-airlock-rows": str(total)})
        await resp.prepare(request)
        while first is not None:
            await resp.write(first)
            first, err = await _call(next, chunks, None)
            if err:          # headers are gone: end the body; the client sees fewer rows than announced
                break
        await resp.write_eof()
        return resp

    return [web.post("/v1/audit/query", run_query), web.get("/v1/audit/tail", tail),
            web.get("/v1/audit/export", export), web.get("/v1/audit/verify", verify),
            web.get("/v1/audit/status", status)]
