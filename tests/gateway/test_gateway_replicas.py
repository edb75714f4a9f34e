"""Two Airlock processes sharing one Redis: 200 concurrent calls against a USD budget that
fits 50 reservations; the settled spend never passes the budget plus one call's reservation.

The replayed answer always reports 7 output tokens, even when a partial reservation lowered
``max_tokens`` below that: the provider passing the cap sent to it. That used to overspend by
one such call per partial reservation (issue 5); now one partial is open at a time and none is
granted after a call spent past what it held."""
from __future__ import annotations

import asyncio

import httpx
import yaml

from proxy.meter import prices, tokens
from tests.gateway.conftest import airlock_config, spend
from tests.harness import Airlock, wait_until

MAX_TOKENS = 7
BODY = {"model": "gpt-4o-mini", "max_tokens": MAX_TOKENS, "messages": [{"role": "user", "content": "x"}]}


def test_two_replicas_share_one_budget(replay_upstream, redis_url, tmp_path):
    import redis as redis_lib
    r = redis_lib.Redis.from_url(redis_url)
    for k in r.scan_iter("budget:shared*"):
        r.delete(k)
    rates = prices.rates("gpt-4o-mini", "openai")
    est = tokens.estimate_input(BODY, "gpt-4o-mini", "openai", "/chat/completions")
    reservation = est * rates.input + MAX_TOKENS * rates.output
    limit = round(50 * reservation, 12)
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump({"version": "1.0", "budgets": [
        {"name": "shared", "scope": "account", "period": "day", "limit_usd": limit, "hard": True}]}))
    cfg = airlock_config(replay_upstream.url, policy, {"store": {"redis": redis_url}})
    env = {"TEST_PROVIDER_KEY": "sk-test"}
    a = Airlock(cfg, env=env, workdir=tmp_path / "a").start()
    try:
        b = Airlock(dict(cfg, listen={}), env={**env, "AIRLOCK_ADMIN_TOKEN": a.admin_token},
                    workdir=tmp_path / "b").start()
        try:
            tok = a.mint("shared-acct")

            async def main():
                async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=200)) as c:
                    async def one(i):
                        url = (a if i % 2 else b).gateway_url + "/rjson/v1/chat/completions"
                        return (await c.post(url, json=BODY, headers={"authorization": f"Bearer {tok}"})).status_code
                    return await asyncio.gather(*[one(i) for i in range(200)])

            codes = asyncio.run(main())
            ok, refused = codes.count(200), codes.count(429)
            assert ok + refused == 200, codes
            assert ok >= 50 and refused >= 50
            settled = wait_until(lambda: (s := spend(a, "shared", "shared-acct", "usd")) and
                                 abs(s - ok * 4.95e-6) < 1e-9 and s, 20, "settlement of every call")
            assert settled <= limit + reservation
        finally:
            b.stop()
    finally:
        a.stop()
