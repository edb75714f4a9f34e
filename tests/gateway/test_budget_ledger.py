"""The budget ledger on both stores (in-process and a real redis-server): atomic reservations,
partial reservations, settlement, rate limits, periods."""
from __future__ import annotations

import asyncio

import pytest

from proxy.flowmeta import Identity
from proxy.meter import prices
from proxy.meter.admission import Gatekeeper, Settings, api_of, filter_models, model_rule, output_cap
from proxy.meter.budget import Ledger, Request, bucket
from proxy.policy import Budget, ModelRule, RateLimit
from tests.gateway.conftest import WHO, FakeEngine


async def test_concurrent_reservations_never_pass_the_limit(store):
    eng = FakeEngine(budgets=[Budget("b", "subject", "day", None, 500, True, {})])
    ledger = Ledger(store)
    req = Request(WHO, "gpt-4o-mini", 2, 8, None, min_output=8)     # 10 tokens each -> 50 fit
    results = await asyncio.gather(*[ledger.admit(eng, req) for _ in range(200)])
    ok = [a for a in results if a.ok]
    assert len(ok) == 50
    assert all(a.status == 429 and a.code == "budget_exceeded" and "'b'" in a.message
               for a in results if not a.ok)
    snap = await ledger.snapshot(eng)
    assert snap[0]["spent"] == 500 and snap[0]["remaining"] == 0
    # settle below the reservation: the unused part comes back
    for a in ok[:10]:
        await ledger.settle(a, 4, None)
    snap = await ledger.snapshot(eng)
    assert snap[0]["spent"] == 500 - 10 * 6


async def test_partial_reservation_caps_output(store):
    r = prices.rates("gpt-4o-mini", "openai")
    limit = 1000 * r.input + 100 * r.output     # room for 1000 input + 100 output tokens
    eng = FakeEngine(budgets=[Budget("usd", "account", "month", limit, None, True, {})])
    ledger = Ledger(store)
    a = await ledger.admit(eng, Request(WHO, "gpt-4o-mini", 1000, 4096, r))
    assert a.ok and 99 <= a.output_allowance <= 100 and a.reserved_output == a.output_allowance
    b = await ledger.admit(eng, Request(WHO, "gpt-4o-mini", 1000, 4096, r))
    assert not b.ok and b.code == "budget_exceeded" and b.retry_after and b.retry_after > 0
    await ledger.release(a)
    c = await ledger.admit(eng, Request(WHO, "gpt-4o-mini", 10, 50, r))
    # a full reservation covers the call's own cap: no mid-stream cut, the cap goes upstream
    assert c.ok and c.reserved_output == 50 and c.output_allowance is None


async def test_unpriced_model_under_hard_usd_budget(store):
    eng = FakeEngine(budgets=[Budget("usd", "account", "day", 5.0, None, True, {})])
    a = await Ledger(store).admit(eng, Request(WHO, "mystery-model", 10, 10, None))
    assert not a.ok and a.status == 403 and a.code == "model_unpriced" and "prices" in a.message
    soft = FakeEngine(budgets=[Budget("usd", "account", "day", 5.0, None, False, {})])
    assert (await Ledger(store).admit(soft, Request(WHO, "mystery-model", 10, 10, None))).ok


async def test_rate_limits_requests_and_tokens(store):
    eng = FakeEngine(rate_limits=[RateLimit("rpm", "agent", 3, None, {}),
                                  RateLimit("tpm", "account", None, 100, {"account": "acme"})])
    ledger = Ledger(store)
    now = 1_800_000_000.0 + 15      # 15 s into a minute
    adms = [await ledger.admit(eng, Request(WHO, "m", 1, 1, None, now=now)) for _ in range(4)]
    assert [a.ok for a in adms] == [True, True, True, False]
    assert adms[3].status == 429 and adms[3].retry_after == 45 and adms[3].rule == "rpm"
    big = await ledger.admit(eng, Request(Identity("t2", "acme", agent="other"), "m", 90, 50, None, now=now))
    assert not big.ok and big.rule == "tpm" and "lower max_tokens" in big.message
    # another agent is not limited by "rpm"; the next minute starts fresh
    assert (await ledger.admit(eng, Request(Identity("t3", "acme", agent="b2"), "m", 1, 1, None, now=now))).ok
    assert (await ledger.admit(eng, Request(WHO, "m", 1, 1, None, now=now + 60))).ok


async def test_soft_budget_alert_once(store):
    eng = FakeEngine(budgets=[Budget("soft", "subject", "total", None, 100, False, {})])
    ledger = Ledger(store)
    a = await ledger.admit(eng, Request(WHO, "m", 1, 1, None))
    assert a.ok and a.output_allowance is None       # soft budgets never cut a stream
    assert await ledger.settle(a, 60, None) == []
    b = await ledger.admit(eng, Request(WHO, "m", 1, 1, None))
    over = await ledger.settle(b, 60, None)
    assert [h.name for h in over] == ["soft"]
    c = await ledger.admit(eng, Request(WHO, "m", 1, 1, None))
    assert await ledger.settle(c, 60, None) == []     # alerted once, when it crossed


async def test_match_narrows_budgets_and_models(store):
    eng = FakeEngine(
        models=[ModelRule({"account": "acme"}, ("gpt-4o*", "claude-*"), "acme"),
                ModelRule({"subject": ("intern-*",)}, ("gpt-4o-mini",), "interns")],
        budgets=[Budget("interns", "subject", "day", None, 5, True, {"subject": "intern-*"})])
    assert model_rule(eng, WHO, "gpt-4o") is None
    assert model_rule(eng, WHO, "o3") == "acme"
    intern = Identity("t", "acme", subject="intern-7")
    assert model_rule(eng, intern, "gpt-4o") == "interns"
    assert model_rule(eng, intern, "gpt-4o-mini") is None
    assert filter_models(eng, intern, {"object": "list", "data": [{"id": "gpt-4o"}, {"id": "gpt-4o-mini"}]}) \
        == {"object": "list", "data": [{"id": "gpt-4o-mini"}]}
    ledger = Ledger(store)
    assert (await ledger.admit(eng, Request(WHO, "m", 100, 100, None))).ok        # not an intern: no budget
    assert not (await ledger.admit(eng, Request(intern, "m", 100, 100, None))).ok


async def test_gatekeeper_admission(store):
    eng = FakeEngine(budgets=[Budget("t", "account", "day", None, 10_000, True, {})])
    keeper = Gatekeeper(store, Settings(default_max_tokens=256))
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello there"}], "stream": True}
    call, refusal = await keeper.admit(eng, WHO, "openai", "openai", "/chat/completions", body)
    assert refusal is None and call.stream and not call.client_wants_usage and call.output_cap == 256
    assert 5 <= call.input_estimate <= 12
    assert keeper.wants_usage_injection(call, body)["stream_options"] == {"include_usage": True}
    call, refusal = await keeper.admit(eng, WHO, "openai", "openai", "/chat/completions", ["nope"])
    assert refusal.status == 400
    call, refusal = await keeper.admit(eng, WHO, "anthropic", "anthropic", "/v1/messages",
                                       {"model": "claude-sonnet-4-5", "max_tokens": 99, "messages": []})
    assert refusal is None and call.output_cap == 99 and call.rates is not None


def test_api_paths_and_caps():
    assert api_of("openai", "/chat/completions") == "chat"
    assert api_of("openai", "/responses/") == "responses"
    assert api_of("anthropic", "/v1/messages") == "anthropic"
    assert api_of("anthropic", "/v1/messages/count_tokens") == "count_tokens"
    assert api_of("openai", "/files") == "other"
    assert output_cap("chat", {"max_completion_tokens": 10, "n": 3}, 1) == 30
    assert output_cap("responses", {"max_output_tokens": 7}, 1) == 7
    assert output_cap("embeddings", {}, 99) == 0
    assert bucket("day", 1_800_000_000) == "20270115" and bucket("total") == "total"


async def test_output_cap_sent_upstream_follows_the_reservation(store):
    eng = FakeEngine(budgets=[Budget("t", "subject", "total", None, 100, True, {})])
    keeper = Gatekeeper(store, Settings(default_max_tokens=4096, min_output_tokens=1))
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    call, refusal = await keeper.admit(eng, WHO, "openai", "openai", "/chat/completions", body)
    assert refusal is None and call.admission.output_allowance < 100
    sent = keeper.upstream_body(call, body)
    assert sent["max_tokens"] == call.admission.reserved_output and "max_tokens" not in body
    # a lower cap of the client's own is kept; an Anthropic cap above the allowance is lowered
    other = Identity("t2", "acme", subject="bob")
    call, _ = await keeper.admit(eng, other, "openai", "openai", "/chat/completions", {**body, "max_tokens": 5})
    assert keeper.upstream_body(call, {**body, "max_tokens": 5}) is None
    third = Identity("t3", "acme", subject="carol")
    abody = {"model": "claude-sonnet-4-5", "max_tokens": 1000, "messages": [{"role": "user", "content": "hi"}]}
    call, _ = await keeper.admit(eng, third, "anthropic", "anthropic", "/v1/messages", abody)
    assert keeper.upstream_body(call, abody)["max_tokens"] == call.admission.output_allowance
    # reasoning models get max_completion_tokens; no budget -> body unchanged
    call, _ = await keeper.admit(eng, Identity("t4", "acme", subject="dan"), "openai", "openai",
                                 "/chat/completions", {**body, "model": "o3"})
    assert "max_completion_tokens" in keeper.upstream_body(call, {**body, "model": "o3"})
    call, _ = await keeper.admit(FakeEngine(), WHO, "openai", "openai", "/chat/completions", body)
    assert keeper.upstream_body(call, body) is None


async def test_input_counted_only_when_a_limit_needs_it(store):
    keeper = Gatekeeper(store)
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello there " * 50}]}
    call, refusal = await keeper.admit(FakeEngine(), WHO, "openai", "openai", "/chat/completions", body)
    assert refusal is None and call.input_estimate == 0 and call.estimated_cost is None
    usage, source = call.billable()          # no provider usage (client gone): counted now
    assert source == "counted" and usage.input_tokens > 50
    tpm = FakeEngine(rate_limits=[RateLimit("tpm", "account", None, 10**9, {})])
    call, _ = await keeper.admit(tpm, WHO, "openai", "openai", "/chat/completions", body)
    assert call.input_estimate > 50 and call.pending_body is None
    big = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "word " * 20000}]}   # off-loop count
    call, _ = await keeper.admit(tpm, WHO, "openai", "openai", "/chat/completions", big)
    assert 19_000 < call.input_estimate < 21_000


async def test_full_reservation_sends_default_cap_and_never_cuts(store):
    eng = FakeEngine(budgets=[Budget("roomy", "subject", "day", None, 10**9, True, {})])
    keeper = Gatekeeper(store, Settings(default_max_tokens=300))
    body = {"model": "claude-sonnet-4-5", "max_tokens": 1000, "messages": [{"role": "user", "content": "hi"}]}
    call, _ = await keeper.admit(eng, WHO, "anthropic", "anthropic", "/v1/messages", body)
    assert call.admission.output_allowance is None          # the x1.3 estimate never cuts a roomy call
    assert keeper.upstream_body(call, body) is None          # its own cap is covered
    obody = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    call, _ = await keeper.admit(eng, WHO, "openai", "openai", "/chat/completions", obody)
    assert keeper.upstream_body(call, obody)["max_tokens"] == 300   # the reserved default cap goes upstream
