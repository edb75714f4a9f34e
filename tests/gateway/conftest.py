"""Fixtures of the gateway tests: one Airlock in front of the replayed recordings."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from proxy.flowmeta import Identity
from proxy.store import MemoryStore
from tests.harness import Airlock, wait_until


@dataclass
class FakeEngine:   # the Engine's gateway attributes, built directly
    models: list = field(default_factory=list)
    budgets: list = field(default_factory=list)
    rate_limits: list = field(default_factory=list)
    prices: dict = field(default_factory=dict)


@pytest.fixture(params=["memory", "redis"])
async def store(request):
    if request.param == "memory":
        s = MemoryStore()
    else:
        from proxy.store.redis import RedisStore
        s = RedisStore(request.getfixturevalue("redis_url"))
        await s.start()
        for k in await s.scan("budget:") + await s.scan("rl:"):
            await s.delete(k)
    yield s
    await s.close()


WHO = Identity(token_id="tok1", account="acme", subject="alice", agent="bot")

# provider name -> recording served by the replay upstream (tests.upstreams)
RECORDED = {
    "rchat": ("openai", "openai-chat-text-include-usage"),
    "rchat177": ("openai", "slow-openai-chat-json-177-tokens"),
    "rresp": ("openai", "openai-responses-text"),
    "rresp5": ("openai", "openai-responses-gpt5-reasoning-usage"),
    "anthropic": ("anthropic", "anthropic-text-basic"),
    "rthink": ("anthropic", "slow-anthropic-thinking-padded"),
    "rjson": ("openai", "json"),
    "rgroq": ("openai", "groq-chat-midstream-error-event"),
}

POLICY = {
    "version": "1.0",
    "models": [
        {"id": "acme-models", "match": {"account": "acme"}, "allow": ["gpt-4o*", "gpt-5*", "claude-*"]},
        {"id": "interns", "match": {"account": "acme", "subject": "intern-*"}, "allow": ["gpt-4o-mini"]},
    ],
    "budgets": [
        # soft (alert only): records tokens per subject so tests can read the settled numbers
        {"name": "tokens-per-subject", "scope": "subject", "period": "day", "limit_tokens": 10_000_000,
         "hard": False},
        {"name": "tight-tokens", "scope": "subject", "period": "total", "limit_tokens": 60, "hard": True,
         "match": {"subject": "tight-*"}},
        {"name": "tiny-tokens", "scope": "subject", "period": "total", "limit_tokens": 5, "hard": True,
         "match": {"subject": "tiny-*"}},
        {"name": "tight-usd", "scope": "subject", "period": "day", "limit_usd": 0.5, "hard": True,
         "match": {"subject": "usd-*"}},
    ],
    "rate_limits": [
        {"id": "slow-agent", "scope": "agent", "requests_per_minute": 2, "match": {"agent": "ratelimited"}},
    ],
    "prices": {"house-model-*": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}},
}


def airlock_config(upstream_url: str, policy_path: Path, extra: dict | None = None,
                   aimock_url: str | None = None) -> dict:
    providers = {name: {"base_url": f"{upstream_url}/{rec}" + ("/v1" if kind == "openai" else ""),
                        "kind": kind, "api_key_env": "TEST_PROVIDER_KEY"}
                 for name, (kind, rec) in RECORDED.items()}
    if aimock_url:
        providers["mock"] = {"base_url": f"{aimock_url}/v1", "kind": "openai", "api_key_env": "TEST_PROVIDER_KEY"}
        providers["mockan"] = {"base_url": aimock_url, "kind": "anthropic", "api_key_env": "TEST_PROVIDER_KEY"}
    return {"providers": providers, "policies": [str(policy_path)],
            "gateway": {"min_output_tokens": 1}, **(extra or {})}


@pytest.fixture(scope="session")
def gw(replay_upstream, aimock, tmp_path_factory):
    work = tmp_path_factory.mktemp("gw")
    policy = work / "policy.yaml"
    policy.write_text(yaml.safe_dump(POLICY, sort_keys=False))
    a = Airlock(airlock_config(replay_upstream.url, policy, aimock_url=aimock.url),
                env={"TEST_PROVIDER_KEY": "sk-test-provider"},
                workdir=work / "airlock")
    a.start()
    a.upstream = replay_upstream
    yield a
    a.stop()


def spend(a: Airlock, budget: str, value: str, unit: str = "tokens") -> float:
    r = a.admin("GET", "/v1/budgets", params={"budget": budget, "scope_value": value})
    r.raise_for_status()
    return sum(row["spent"] for row in r.json()["budgets"] if row["unit"] == unit)


def wait_spend(a: Airlock, budget: str, value: str, expect, unit: str = "tokens", timeout: float = 15.0):
    """Poll the settled spend until ``expect(spend)`` holds (settlement runs after the response)."""
    return wait_until(lambda: expect(spend(a, budget, value, unit)) and spend(a, budget, value, unit) or None,
                      timeout, f"spend of {budget}/{value}")


def usage_rows(a: Airlock, subject: str, n: int = 1, timeout: float = 30.0) -> list[dict]:
    """The model calls of ``subject`` (their ``request`` audit rows, which carry the usage) once at least
    ``n`` are written (polls the admin query API); ``outcome`` is the call's usage status."""
    sql = ("SELECT JSONExtractString(data, 'usage_status') AS outcome, status, tokens_in, tokens_out, cost, model, "
           "provider, data FROM events "
           "WHERE kind = 'request' AND JSONHas(data, 'usage_status') AND subject = {s:String} ORDER BY ts")

    def rows():
        r = a.admin("POST", "/v1/audit/query", {"sql": sql, "params": {"s": subject}})
        r.raise_for_status()
        got = r.json()["rows"]
        return got if len(got) >= n else None
    return wait_until(rows, timeout, f"{n} usage rows of {subject}")
