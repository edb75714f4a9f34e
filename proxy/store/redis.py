"""Redis store for several replicas: same behaviour as MemoryStore.

Multi-step updates are Lua scripts (atomic on the server). All pub/sub traffic
of a process goes through ONE pattern subscription (one connection), which
fans messages out to the registered callbacks.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Any

import redis.asyncio as aioredis

from .base import Store, Subscriber

log = logging.getLogger(__name__)

_RESERVE = """
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local amount = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
if cur + amount > limit + 1e-12 then return {0, tostring(cur)} end
local new = redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
if ARGV[3] ~= '' and redis.call('TTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], math.floor(tonumber(ARGV[3]) * 1000))
end
return {1, tostring(new)}
"""

_INCR = """
local new = redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
if ARGV[2] ~= '' and redis.call('TTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], math.floor(tonumber(ARGV[2]) * 1000))
end
return tostring(new)
"""


class RedisStore(Store):
    kind = "redis"

    def __init__(self, url: str, max_connections: int = 64):
        self.url = url
        # A blocking pool waits for a free connection instead of raising MaxConnectionsError
        # (which, inside a hook, would fail open): hundreds of concurrent calls share 64 connections.
        pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=10)
        self.r = aioredis.Redis(connection_pool=pool)
        self._subs: list[tuple[str, Subscriber]] = []
        self._listener: asyncio.Task | None = None
        self._pubsub = None
        self._scripts: dict[str, Any] = {}
        self._pending: set[str] = set()
        self._reserve = self.r.register_script(_RESERVE)
        self._incr = self.r.register_script(_INCR)

    async def start(self) -> None:
        await self.r.ping()

    async def close(self) -> None:
        if self._listener:
            self._listener.cancel()
            try:
                await self._listener
            except (asyncio.CancelledError, Exception):
                pass
        if self._pubsub is not None:
            try:
                await self._pubsub.aclose()
            except Exception:
                pass
        await self.r.aclose()

    async def get(self, key):
        return await self.r.get(key)

    async def set(self, key, value, ttl=None, only_if_absent=False) -> bool:
        px = int(ttl * 1000) if ttl is not None else None
        return bool(await self.r.set(key, value, px=px, nx=only_if_absent))

    async def delete(self, key) -> bool:
        return bool(await self.r.delete(key))

    async def scan(self, prefix) -> list[str]:
        return [k.decode() async for k in self.r.scan_iter(match=_glob_escape(prefix) + "*", count=500)]

    async def hset(self, key, fields, ttl=None) -> None:
        async with self.r.pipeline(transaction=True) as p:
            p.hset(key, mapping=fields)
            if ttl is not None:
                p.pexpire(key, int(ttl * 1000))
            await p.execute()

    async def hgetall(self, key) -> dict[str, bytes]:
        return {k.decode(): v for k, v in (await self.r.hgetall(key)).items()}

    async def incr(self, key, amount=1.0, ttl=None) -> float:
        return float(await self._incr(keys=[key], args=[repr(float(amount)), "" if ttl is None else ttl]))

    async def reserve(self, key, amount, limit, ttl=None) -> tuple[bool, float]:
        ok, value = await self._reserve(keys=[key], args=[repr(float(amount)), repr(float(limit)),
                                                           "" if ttl is None else ttl])
        return bool(ok), float(value)

    async def zadd(self, key, member, score) -> None:
        await self.r.zadd(key, {member: score})

    async def zrangebyscore(self, key, max_score) -> list[str]:
        return [m.decode() for m in await self.r.zrangebyscore(key, "-inf", max_score)]

    async def zrem(self, key, member) -> bool:
        return bool(await self.r.zrem(key, member))

    async def publish(self, channel, message) -> None:
        await self.r.publish(channel, message)

    def subscribe(self, prefix, callback) -> None:
        self._subs.append((prefix, callback))
        self._pending.add(_glob_escape(prefix) + "*")
        if self._pubsub is None:
            self._pubsub = self.r.pubsub()
            self._listener = asyncio.get_running_loop().create_task(self._listen())

    async def _listen(self) -> None:
        # Only this task touches the pub/sub connection: new patterns are subscribed here, in turn.
        while True:
            try:
                if self._pending:
                    patterns, self._pending = self._pending, set()
                    await self._pubsub.psubscribe(*patterns)
                msg = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=0.25)
            except asyncio.CancelledError:
                raise
            except Exception as e:      # connection lost: log, back off, resubscribe
                log.warning("redis subscriber: %s; reconnecting", e)
                self._pending |= {_glob_escape(p) + "*" for p, _ in self._subs}
                await asyncio.sleep(0.5)
                continue
            if not msg or msg.get("type") != "pmessage":
                continue
            channel = msg["channel"].decode()
            for prefix, cb in list(self._subs):
                if channel.startswith(prefix):
                    try:
                        res = cb(channel, msg["data"])
                        if inspect.isawaitable(res):
                            await res
                    except Exception:
                        log.exception("subscriber for %s failed", prefix)

    def register_script(self, name, lua, python) -> None:
        self._scripts[name] = self.r.register_script(lua)

    async def eval(self, name, keys, args):
        return await self._scripts[name](keys=keys, args=args)


def _glob_escape(s: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in s)
