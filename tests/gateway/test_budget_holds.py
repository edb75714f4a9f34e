"""Reservations held by id (proxy.meter.holds) on both stores: settled or released once only,
at most one partial reservation open per limit, none after a call spent past what it held."""
from __future__ import annotations

import asyncio

from proxy.meter import prices
from proxy.meter.budget import Ledger, Request
from proxy.policy import Budget
from tests.gateway.conftest import WHO, FakeEngine

TOKENS = FakeEngine(budgets=[Budget("t", "subject", "day", None, 100, True, {})])


async def spent(ledger: Ledger) -> float:
    return sum(r["spent"] for r in await ledger.snapshot(TOKENS))


async def test_settle_and_release_count_once(store):
    ledger = Ledger(store)
    a = await ledger.admit(TOKENS, Request(WHO, "gpt-4o-mini", 10, 20, None))
    assert a.ok and await spent(ledger) == 30
    holds = list(a.holds)
    await ledger.settle(a, 25, None)
    await ledger.settle(a, 25, None)                 # a second settle (retry, two hooks) changes nothing
    assert await spent(ledger) == 25
    a.holds = holds
    await ledger.release(a)                          # release after settle: nothing left to give back
    assert await spent(ledger) == 25
    b = await ledger.admit(TOKENS, Request(WHO, "gpt-4o-mini", 10, 20, None))
    held = list(b.holds)
    await ledger.release(b)
    b.holds = held
    await ledger.settle(b, 30, None)                 # settle after release: the store has no hold left
    assert await spent(ledger) == 25


async def test_one_partial_reservation_at_a_time(store):
    ledger = Ledger(store)
    full = await ledger.admit(TOKENS, Request(WHO, "gpt-4o-mini", 10, 60, None, min_output=1))
    assert full.ok and full.output_allowance is None                     # 70 of 100
    p1, p2 = await asyncio.gather(*[ledger.admit(TOKENS, Request(WHO, "gpt-4o-mini", 5, 50, None, min_output=1))
                                    for _ in range(2)])
    assert [p1.ok, p2.ok].count(True) == 1                              # 30 left: one partial, not two
    first = p1 if p1.ok else p2
    assert first.output_allowance is not None and first.output_allowance < 50
    await ledger.settle(first, 10, None)                                # within its hold: partials allowed again
    again = await ledger.admit(TOKENS, Request(WHO, "gpt-4o-mini", 5, 50, None, min_output=1))
    assert again.ok and again.output_allowance is not None
    await ledger.release(again)


async def test_no_partial_after_an_overshoot(store):
    r = prices.rates("gpt-4o-mini", "openai")
    limit = 100 * r.input + 100 * r.output
    eng = FakeEngine(budgets=[Budget("usd", "account", "day", limit, None, True, {})])
    ledger = Ledger(store)
    a = await ledger.admit(eng, Request(WHO, "gpt-4o-mini", 100, 60, r, min_output=1))
    b = await ledger.admit(eng, Request(WHO, "gpt-4o-mini", 10, 100, r, min_output=1))
    assert a.ok and b.ok and b.output_allowance is not None              # b is partial
    await ledger.settle(b, 0, 10 * r.input + 100 * r.output)             # the provider ignored b's cap
    await ledger.settle(a, 0, 10 * r.input)                              # a used little: room again
    c = await ledger.admit(eng, Request(WHO, "gpt-4o-mini", 10, 1000, r, min_output=1))
    assert not c.ok and c.code == "budget_exceeded"                      # no second partial this period
    d = await ledger.admit(eng, Request(WHO, "gpt-4o-mini", 10, 10, r, min_output=1))
    assert d.ok and d.output_allowance is None                           # a whole reservation still fits
