"""Gateway tokens against both stores: mint, verify, expiry, revocation, hashing."""
from __future__ import annotations

import time

import pytest

from proxy.identity import Keys, TokenError, parse_ttl, token_hash
from proxy.store import MemoryStore
from proxy.store.redis import RedisStore


@pytest.fixture(params=["memory", "redis"])
async def keys(request, tmp_path):
    if request.param == "memory":
        store = MemoryStore(tmp_path / "s.json")
    else:
        store = RedisStore(request.getfixturevalue("redis_url"))
        await store.r.flushdb()
    k = Keys(store)
    yield k
    await store.close()


async def test_mint_and_verify(keys):
    out = await keys.mint("acme", flow="ci", subject="alice", agent="claude-code", ttl="2h")
    assert out["token"].startswith("alk_") and out["account"] == "acme"
    ident = await keys.verify(out["token"], session="s1")
    assert (ident.account, ident.flow, ident.subject, ident.agent, ident.session) == \
        ("acme", "ci", "alice", "claude-code", "s1")
    # stored hashed: the raw token is nowhere in the store
    raw = await keys.store.hgetall(f"key:{out['id']}")
    assert out["token"].encode() not in b"".join(raw.values())
    assert raw["hash"].decode() == token_hash(out["token"])


@pytest.mark.parametrize("token, why", [(None, "missing"), ("sk-not-ours", "unknown"),
                                        ("alk_0123456789abcdef_" + "x" * 32, "unknown")])
async def test_bad_tokens(keys, token, why):
    with pytest.raises(TokenError, match=why):
        await keys.verify(token)


async def test_tampered_secret_is_refused(keys):
    out = await keys.mint("acme")
    bad = out["token"][:-4] + ("AAAA" if not out["token"].endswith("AAAA") else "BBBB")
    with pytest.raises(TokenError, match="unknown"):
        await keys.verify(bad)


async def test_expired(keys):
    out = await keys.mint("acme", ttl=0.05)
    deadline = time.monotonic() + 5
    while True:
        try:
            await keys.verify(out["token"])
        except TokenError as e:
            assert "expired" in str(e)
            break
        assert time.monotonic() < deadline
        time.sleep(0.01)


async def test_revoke_is_immediate_even_when_cached(keys):
    out = await keys.mint("acme")
    await keys.verify(out["token"])                     # now cached
    rec = await keys.revoke(out["id"])
    assert rec["revoked"] is True
    with pytest.raises(TokenError, match="revoked"):
        await keys.verify(out["token"])
    listed = await keys.list()
    assert [r["id"] for r in listed] == [out["id"]] and listed[0]["revoked"]


def test_parse_ttl():
    assert parse_ttl("90s") == 90 and parse_ttl("2h") == 7200 and parse_ttl("7d") == 7 * 86400
    with pytest.raises(ValueError):
        parse_ttl("soon")
