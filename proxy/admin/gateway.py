"""Admin API of the model gateway: current spend per budget and scope value.

``GET /v1/budgets`` -> ``{"budgets": [{"budget", "scope", "scope_value", "period", "bucket",
"unit", "spent", "limit", "hard", "remaining"}, ...]}``; filters: ``?budget=NAME``,
``?scope_value=V``. Spend includes reservations of calls still running.
"""
from __future__ import annotations

from aiohttp import web

from ..meter.budget import Ledger


def routes(rt) -> list:
    async def budgets(request: web.Request) -> web.Response:
        keeper = rt.services.get("gateway")
        ledger = keeper.ledger if keeper is not None else Ledger(rt.store)
        engine = getattr(rt.policy, "engine", None) if rt.policy is not None else None
        rows = await ledger.snapshot(engine)
        name = request.query.get("budget")
        value = request.query.get("scope_value")
        rows = [r for r in rows if (not name or r["budget"] == name) and (not value or r["scope_value"] == value)]
        return web.json_response({"budgets": rows})

    return [web.get("/v1/budgets", budgets)]
