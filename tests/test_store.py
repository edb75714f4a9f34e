"""The Store contract, run against both implementations: in-process and a real redis-server."""
from __future__ import annotations

import asyncio

import pytest

from proxy.store import MemoryStore
from proxy.store.redis import RedisStore


@pytest.fixture(params=["memory", "redis"])
async def store(request, tmp_path):
    if request.param == "memory":
        s = MemoryStore(tmp_path / "store.json")
    else:
        url = request.getfixturevalue("redis_url")
        s = RedisStore(url)
        await s.r.flushdb()
    await s.start()
    yield s
    await s.close()


async def test_get_set_delete(store):
    assert await store.get("k") is None
    assert await store.set("k", b"v1")
    assert await store.get("k") == b"v1"
    assert not await store.set("k", b"v2", only_if_absent=True)
    assert await store.get("k") == b"v1"
    assert await store.delete("k")
    assert not await store.delete("k")
    assert await store.get("k") is None


async def test_ttl_expires(store):
    await store.set("short", b"x", ttl=0.05)
    await store.set("long", b"y", ttl=60)
    deadline = asyncio.get_running_loop().time() + 5
    while await store.get("short") is not None:
        assert asyncio.get_running_loop().time() < deadline, "TTL never expired"
        await asyncio.sleep(0.01)
    assert await store.get("long") == b"y"


async def test_scan_prefix(store):
    for k in ("key:a", "key:b", "other:c"):
        await store.set(k, b"1")
    assert sorted(await store.scan("key:")) == ["key:a", "key:b"]


async def test_hashes(store):
    await store.hset("h", {"a": b"1", "b": b"2"})
    await store.hset("h", {"b": b"3"})
    assert await store.hgetall("h") == {"a": b"1", "b": b"3"}
    assert await store.hgetall("missing") == {}


async def test_incr_floats(store):
    assert await store.incr("c", 1.5) == 1.5
    assert await store.incr("c", 2) == 3.5
    assert float(await store.get("c")) == 3.5


async def test_reserve_never_passes_the_limit_under_concurrency(store):
    results = await asyncio.gather(*(store.reserve("budget", 1.0, 50.0) for _ in range(200)))
    accepted = [ok for ok, _ in results if ok]
    assert len(accepted) == 50
    assert float(await store.get("budget")) == 50.0
    ok, value = await store.reserve("budget", 0.5, 50.0)
    assert not ok and value == 50.0


async def test_sorted_set(store):
    await store.zadd("z", "late", 30)
    await store.zadd("z", "early", 10)
    await store.zadd("z", "mid", 20)
    assert await store.zrangebyscore("z", 25) == ["early", "mid"]
    assert await store.zrem("z", "early")
    assert not await store.zrem("z", "early")
    assert await store.zrangebyscore("z", 100) == ["mid", "late"]


async def test_pubsub_one_subscriber_fans_out(store):
    got: list[tuple[str, bytes]] = []
    done = asyncio.Event()

    def on_msg(channel, message):
        got.append((channel, message))
        if len(got) == 2:
            done.set()

    store.subscribe("decided:", on_msg)
    store.subscribe("unrelated:", lambda c, m: got.append(("WRONG", m)))
    # the Redis subscriber connects asynchronously: publish until the first message lands
    deadline = asyncio.get_running_loop().time() + 10
    while not got:
        assert asyncio.get_running_loop().time() < deadline, "subscriber never received"
        await store.publish("decided:1", b"approve")
        await asyncio.sleep(0.02)
    await store.publish("decided:2", b"deny")
    await asyncio.wait_for(done.wait(), 10)
    assert ("decided:2", b"deny") in got
    assert all(c != "WRONG" for c, _ in got)


async def test_registered_script_is_atomic(store):
    lua = """
    local v = tonumber(redis.call('GET', KEYS[1]) or '0')
    if v >= tonumber(ARGV[1]) then return 0 end
    redis.call('SET', KEYS[1], tostring(v + 1))
    return 1
    """

    async def py(s, keys, args):
        v = int(await s.get(keys[0]) or b"0")
        if v >= int(args[0]):
            return 0
        await s.set(keys[0], str(v + 1).encode())
        return 1

    store.register_script("capped_incr", lua, py)
    results = await asyncio.gather(*(store.eval("capped_incr", ["cap"], [10]) for _ in range(40)))
    assert sum(int(r) for r in results) == 10
    assert int(await store.get("cap")) == 10


async def test_memory_store_keeps_durable_keys_across_restart(tmp_path):
    path = tmp_path / "snap.json"
    s = MemoryStore(path)
    await s.hset("key:abc", {"hash": b"h", "record": b"{}"})
    await s.set("budget:x", b"1")             # not durable: counters are not snapshotted
    await s.close()
    s2 = MemoryStore(path)
    assert await s2.hgetall("key:abc") == {"hash": b"h", "record": b"{}"}
    assert await s2.get("budget:x") is None



@pytest.fixture
def clock(monkeypatch):
    """The memory store's wall clock, moved by the test (TTLs of minutes pass at once)."""
    from proxy.store import memory
    now = [1_000_000.0]
    monkeypatch.setattr(memory.time, "time", lambda: now[0])
    return now


async def test_memory_store_drops_expired_keys_nobody_reads_again(clock):
    """A past minute's rate-limit counter is never read again: it must still leave memory."""
    s = MemoryStore()
    for minute in range(5000):                 # 5000 minutes of one limiter, one new key each
        clock[0] += 60
        await s.reserve(f"rl:r:agent:{minute}:req", 1, 100, ttl=120)
    size = s.size()
    assert size["keys"] <= 3 and size["with_ttl"] <= 3 and size["deadlines"] <= 3, size
    assert await s.get("rl:r:agent:4999:req") == b"1"


async def test_memory_store_deadline_heap_stays_bounded_when_ttls_are_renewed(clock):
    from proxy.store.memory import HEAP_SLACK
    s = MemoryStore()
    for _ in range(20_000):                    # one key whose TTL is set again on every write
        clock[0] += 0.01
        await s.set("approval:x", b"1", ttl=3600)
    assert s.size()["deadlines"] <= 2 + HEAP_SLACK
    clock[0] += 3601
    await s.set("other", b"1", ttl=10)
    assert await s.get("approval:x") is None and s.size()["keys"] == 1
