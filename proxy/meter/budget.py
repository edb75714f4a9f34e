"""Budgets and rate limits over the shared Store.

Admission reserves, settlement corrects. Every hard limit is enforced with the
store's atomic ``reserve`` (a Lua script in Redis), so several replicas
reserving at once can never pass a limit together. A call matched by several
limits reserves them one after the other and rolls back what it took if a later
one refuses: no overspend, at worst a brief false refusal under contention.

Keys::

    budget:<name>:<scope-value>:<bucket>:usd|tokens    spend in the period bucket
    rl:<id>:<scope-value>:<minute>:req|tok             per-minute counters

The output allowance of a call is what its reservation leaves for output
tokens; the metering addon ends the stream when the output reaches it, so the
spend of a call never passes what it reserved.
"""
from __future__ import annotations

import fnmatch
import logging
import math
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from .holds import Holds
from .metrics import OVERSHOOTS
from .prices import Rates

log = logging.getLogger(__name__)
SCOPES = ("account", "flow", "subject", "agent", "key")
_PERIOD_TTL = {"hour": 2 * 3600, "day": 2 * 86400, "month": 33 * 86400, "total": None}
EPS = 1e-9


def scope_value(identity, scope: str) -> str | None:
    if identity is None:
        return None
    if scope == "key":
        return getattr(identity, "token_id", None)
    return getattr(identity, scope, None)


def matches(match: dict | None, identity, model: str | None = None) -> bool:
    """True when every key of ``match`` fits the caller (values are globs or lists of globs)."""
    if not match:
        return True
    for k, want in match.items():
        have = model if k == "model" else scope_value(identity, k)
        if have is None:
            return False
        pats = want if isinstance(want, (list, tuple)) else (want,)
        if not any(fnmatch.fnmatchcase(str(have), str(p)) for p in pats):
            return False
    return True


def bucket(period: str, now: float | None = None) -> str:
    t = datetime.fromtimestamp(now if now is not None else time.time(), UTC)
    if period == "hour":
        return t.strftime("%Y%m%d%H")
    if period == "day":
        return t.strftime("%Y%m%d")
    if period == "month":
        return t.strftime("%Y%m")
    return "total"


@dataclass(slots=True)
class Hold:
    key: str
    amount: float
    unit: str               # "usd" | "tokens" | "req" | "tok"
    name: str               # budget name or rate-limit id
    scope: str
    value: str
    limit: float | None
    hard: bool
    ttl: float | None = None


@dataclass(slots=True)
class Admission:
    ok: bool = True
    status: int = 200
    code: str | None = None
    message: str = ""
    retry_after: int | None = None
    rule: str | None = None
    holds: list[Hold] = field(default_factory=list)
    soft: list[Hold] = field(default_factory=list)
    # Output tokens the hard budgets' reservations cover (None: no hard budget). The provider is
    # asked for no more (the cap sent upstream); the stream is cut at ``output_allowance``, set
    # only when the reservation was partial (a full one already covers the request's own cap).
    reserved_output: int | None = None
    output_allowance: int | None = None
    reserved_usd: float = 0.0
    basis: list[tuple[str, float]] = field(default_factory=list)   # (unit, amount) of each hard budget hold
    id: str = ""            # the store holds this call's reservations under it (set at the first one)

    def allowance_for(self, usage, rates: Rates | None) -> int | None:
        """The output allowance once the provider's real input count is known."""
        best: float | None = None
        for unit, got in self.basis:
            if unit == "tokens":
                cap = got - usage.input_tokens
            elif rates is not None and rates.output > 0:
                uncached = max(0, usage.input_tokens - usage.cached_tokens - usage.cache_write_tokens)
                in_cost = (uncached * rates.input + usage.cached_tokens * rates.cached_input
                           + usage.cache_write_tokens * rates.cache_write)
                cap = (got - in_cost) / rates.output
            else:
                continue
            best = cap if best is None else min(best, cap)
        return None if best is None else max(0, int(best))


@dataclass(slots=True)
class Request:
    identity: object
    model: str
    input_tokens: int
    output_cap: int
    rates: Rates | None
    min_output: int = 16
    now: float | None = None


class Ledger:
    def __init__(self, store) -> None:
        self.store = store
        self.holds = Holds(store)

    def needs_estimate(self, engine, identity, model: str | None) -> bool:
        """Does any limit need the input estimate at admission (a hard budget, a tokens rate limit)?"""
        for b in getattr(engine, "budgets", ()) or ():
            if b.hard and matches(b.match, identity, model) and scope_value(identity, b.scope) is not None:
                return True
        for rl in getattr(engine, "rate_limits", ()) or ():
            if rl.tokens_per_minute is not None and matches(rl.match, identity, model) \
                    and scope_value(identity, rl.scope) is not None:
                return True
        return False

    @staticmethod
    def limited(engine) -> bool:
        """Does any budget or rate limit exist under ``engine`` (else admission needs no store)?"""
        return bool(getattr(engine, "budgets", None) or getattr(engine, "rate_limits", None))

    # -- admission -------------------------------------------------------------------------
    async def admit(self, engine, req: Request) -> Admission:
        adm = Admission()
        if not self.limited(engine):
            return adm          # no limit at all: no store round trip
        now = req.now if req.now is not None else time.time()
        try:
            if not await self._rate_limits(engine, req, adm, now):
                await self.release(adm)
                return adm
            if not await self._budgets(engine, req, adm, now):
                await self.release(adm)
                return adm
        except BaseException:
            await self.release(adm)
            raise
        return adm

    async def _rate_limits(self, engine, req: Request, adm: Admission, now: float) -> bool:
        minute = int(now // 60)
        retry = max(1, math.ceil(60 - now % 60))
        for rl in getattr(engine, "rate_limits", ()) or ():
            if not matches(rl.match, req.identity, req.model):
                continue
            value = scope_value(req.identity, rl.scope)
            if value is None:
                continue
            base = f"rl:{rl.id}:{value}:{minute}"
            for unit, limit, amount in (("req", rl.requests_per_minute, 1),
                                        ("tok", rl.tokens_per_minute, req.input_tokens + req.output_cap)):
                if limit is None:
                    continue
                key = f"{base}:{unit}"
                adm.id = adm.id or secrets.token_hex(8)
                ok, got, current = await self.holds.reserve(key, adm.id, amount, amount, float(limit), 120)
                if not ok:
                    what = "requests" if unit == "req" else "tokens"
                    adm.ok, adm.status, adm.code, adm.rule, adm.retry_after = False, 429, "rate_limited", rl.id, retry
                    adm.message = (f"rate limit {rl.id!r} ({limit} {what} per minute per {rl.scope} "
                                   f"{value!r}) reached; retry after {retry}s")
                    if unit == "tok" and amount > limit:
                        adm.message = (f"rate limit {rl.id!r}: this call needs about {amount} tokens, more than "
                                       f"the {limit} tokens per minute allowed; lower max_tokens or the prompt")
                    return False
                adm.holds.append(Hold(key, got, unit, rl.id, rl.scope, value, float(limit), True, 120))
        return True

    async def _budgets(self, engine, req: Request, adm: Admission, now: float) -> bool:
        r = req.rates
        in_cost = out_rate = 0.0
        if r is not None:
            in_cost = req.input_tokens * r.input
            out_rate = r.output
        allowance: float | None = None
        partial = False
        for b in getattr(engine, "budgets", ()) or ():
            if not matches(b.match, req.identity, req.model):
                continue
            value = scope_value(req.identity, b.scope)
            if value is None:
                continue
            base = f"budget:{b.name}:{value}:{bucket(b.period, now)}"
            ttl = _PERIOD_TTL.get(b.period)
            units = []
            if b.limit_usd is not None:
                if r is None:
                    if b.hard:
                        adm.ok, adm.status, adm.code, adm.rule = False, 403, "model_unpriced", b.name
                        adm.message = (f"model {req.model!r} has no known price and budget {b.name!r} has a hard "
                                       f"USD limit; add the model under `prices:` in the policy")
                        return False
                else:
                    units.append(("usd", float(b.limit_usd), in_cost + req.output_cap * out_rate,
                                  in_cost + req.min_output * out_rate, in_cost, out_rate))
            if b.limit_tokens is not None:
                units.append(("tokens", float(b.limit_tokens), float(req.input_tokens + req.output_cap),
                              float(req.input_tokens + req.min_output), float(req.input_tokens), 1.0))
            for unit, limit, amount, minimum, fixed, per_out in units:
                key = f"{base}:{unit}"
                if not b.hard:
                    adm.soft.append(Hold(key, 0.0, unit, b.name, b.scope, value, limit, False, ttl))
                    continue
                # all of ``amount``, or (one call at a time) what is left if that is at least ``minimum``
                adm.id = adm.id or secrets.token_hex(8)
                ok, got, current = await self.holds.reserve(key, adm.id, amount, minimum, limit, ttl)
                if not ok:
                    adm.ok, adm.status, adm.code, adm.rule = False, 429, "budget_exceeded", b.name
                    shown = f"${limit:.4f}" if unit == "usd" else f"{int(limit)} tokens"
                    spent = f"${current:.4f}" if unit == "usd" else f"{int(current)} tokens"
                    adm.message = (f"budget {b.name!r} ({shown} per {b.period} for {b.scope} {value!r}) "
                                   f"would be exceeded: {spent} spent or reserved; this call needs "
                                   + (f"${minimum:.6f}" if unit == "usd" else f"{int(minimum)} tokens") + " at least")
                    if b.period != "total":
                        adm.retry_after = _seconds_to_next(b.period, now)
                    return False
                adm.holds.append(Hold(key, got, unit, b.name, b.scope, value, limit, True, ttl))
                if unit == "usd":
                    adm.reserved_usd += got
                adm.basis.append((unit, got))
                if per_out > 0:     # what the reservation leaves for output caps the call
                    cap = (got - fixed) / per_out
                    allowance = cap if allowance is None else min(allowance, cap)
                    partial = partial or got < amount
        if allowance is not None:
            adm.reserved_output = max(0, int(allowance + EPS))
            if partial:
                adm.output_allowance = adm.reserved_output
        return True

    # -- settle ------------------------------------------------------------------------------
    async def settle(self, adm: Admission, usage_tokens: int, cost_usd: float | None,
                     output_tokens: int = 0) -> list[Hold]:
        """Correct every reservation to the real spend; returns soft budgets now over their limit."""
        over: list[Hold] = []
        for h in adm.holds:
            if h.unit == "usd":
                actual = cost_usd if cost_usd is not None else h.amount
            elif h.unit in ("tokens", "tok"):
                actual = float(usage_tokens)
            else:
                continue        # request counters stay as they are
            if actual > h.amount * (1 + 1e-9) + 1e-12:
                OVERSHOOTS.labels(h.unit).inc()
                log.warning("budget %s: a call settled at %s %s, above the %s it held (the provider went past "
                            "the cap sent to it); no partial reservation on %s %s until the period ends",
                            h.name, actual, h.unit, h.amount, h.scope, h.value)
            if not await self.holds.settle(h.key, adm.id, actual, h.ttl):
                log.warning("budget %s: hold of a call already settled or released; ignored", h.name)
            h.amount = actual
        for h in adm.soft:
            actual = cost_usd if h.unit == "usd" else float(usage_tokens)
            if not actual:
                continue
            total = await self.store.incr(h.key, actual, ttl=h.ttl)
            if h.limit is not None and total > h.limit and total - actual <= h.limit:
                over.append(h)
        return over

    async def release(self, adm: Admission) -> None:
        """Give back everything reserved (a refused or failed call)."""
        holds, adm.holds = adm.holds, []
        for h in holds:
            await self.holds.settle(h.key, adm.id, 0.0, h.ttl)

    # -- reporting ---------------------------------------------------------------------------
    async def snapshot(self, engine=None) -> list[dict]:
        """Current spend of every budget counter in the store (for the admin API)."""
        limits = {}
        for b in getattr(engine, "budgets", ()) or ():
            limits[b.name] = b
        rows = []
        for key in sorted(await self.store.scan("budget:")):
            if key.endswith(":holds"):
                continue
            parts = key.split(":")
            if len(parts) < 5:
                continue
            name, value, bkt, unit = parts[1], ":".join(parts[2:-2]), parts[-2], parts[-1]
            raw = await self.store.get(key)
            try:
                spent = float(raw) if raw is not None else 0.0
            except ValueError:
                continue
            b = limits.get(name)
            limit = None
            if b is not None:
                limit = b.limit_usd if unit == "usd" else b.limit_tokens
            rows.append({"budget": name, "scope": b.scope if b else None, "scope_value": value,
                         "period": b.period if b else None, "bucket": bkt, "unit": unit,
                         "spent": round(spent, 9) if unit == "usd" else int(round(spent)),
                         "limit": limit, "hard": b.hard if b else None,
                         "remaining": (max(0.0, limit - spent) if limit is not None else None)})
        return rows


def _seconds_to_next(period: str, now: float) -> int:
    t = datetime.fromtimestamp(now, UTC)
    if period == "hour":
        nxt = t.replace(minute=0, second=0, microsecond=0).timestamp() + 3600
    elif period == "day":
        nxt = t.replace(hour=0, minute=0, second=0, microsecond=0).timestamp() + 86400
    else:
        y, m = (t.year + 1, 1) if t.month == 12 else (t.year, t.month + 1)
        nxt = datetime(y, m, 1, tzinfo=UTC).timestamp()
    return max(1, math.ceil(nxt - now))
