"""Reservations against a hard limit, each held once under its own id (atomic in the store).

A counter key (``budget:...:usd``, ``rl:...:req``) keeps the spend plus what is
reserved; next to it a hash ``<counter>:holds`` keeps every open reservation by
id. Both scripts run atomically (Lua in Redis, one synchronous function in the
memory store) and are idempotent, so a retried command (redis-py retries on a
lost connection) or a second settle/release of the same call changes nothing:

* ``reserve(id, amount, minimum, limit)``: hold ``amount`` if it fits; else,
  when at least ``minimum`` is left, hold what is left (a partial reservation:
  the caller caps the output to it). At most one partial reservation is open per
  counter, and none is granted after a call settled above what it held
  (``!over``: the provider billed past the cap sent to it). So at most one call
  at a time can spend past what it held, and only once per period: the settled
  spend stays within the limit plus one call's reservation.
* ``settle(id, actual)``: replace the hold by the real spend (0 to release)
  and forget the hold. A hold already settled or released is left alone.
"""
from __future__ import annotations

from typing import Any

RESERVE = "airlock.budget.reserve"
SETTLE = "airlock.budget.settle"
PARTIAL = "!partial"      # field of the holds hash: the id of the open partial reservation
OVER = "!over"            # field of the holds hash: a call settled above its hold this period
SLACK = 1e-9              # a partial reservation leaves this fraction of the room unused (float rounding)
TOLERANCE = 1e-12

_RESERVE_LUA = """
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local held = redis.call('HGET', KEYS[2], ARGV[1])
if held then return {1, held, tostring(cur)} end
local amount = tonumber(ARGV[2])
local limit = tonumber(ARGV[4])
local got = ARGV[2]
if cur + amount > limit + 1e-12 then
  local minimum = tonumber(ARGV[3])
  local room = (limit - cur) * (1 - 1e-9)
  if minimum >= amount or room < minimum or redis.call('HEXISTS', KEYS[2], '!partial') == 1
     or redis.call('HEXISTS', KEYS[2], '!over') == 1 then
    return {0, '0', tostring(cur)}
  end
  got = string.format('%.17g', room)
  redis.call('HSET', KEYS[2], '!partial', ARGV[1])
end
local new = redis.call('INCRBYFLOAT', KEYS[1], got)
redis.call('HSET', KEYS[2], ARGV[1], got)
if ARGV[5] ~= '' then
  if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[5]) end
  if redis.call('PTTL', KEYS[2]) < 0 then redis.call('PEXPIRE', KEYS[2], ARGV[5]) end
end
return {1, got, tostring(new)}
"""

_SETTLE_LUA = """
local held = redis.call('HGET', KEYS[2], ARGV[1])
if not held then return {0, tostring(redis.call('GET', KEYS[1]) or '0')} end
redis.call('HDEL', KEYS[2], ARGV[1])
if redis.call('HGET', KEYS[2], '!partial') == ARGV[1] then redis.call('HDEL', KEYS[2], '!partial') end
if tonumber(ARGV[2]) > tonumber(held) * (1 + 1e-9) + 1e-12 then
  redis.call('HSET', KEYS[2], '!over', '1')
  if ARGV[3] ~= '' and redis.call('PTTL', KEYS[2]) < 0 then redis.call('PEXPIRE', KEYS[2], ARGV[3]) end
end
if tonumber(held) ~= 0 then redis.call('INCRBYFLOAT', KEYS[1], '-' .. held) end
return {1, redis.call('INCRBYFLOAT', KEYS[1], ARGV[2])}
"""


def holds_key(counter: str) -> str:
    return counter + ":holds"


def _ttl_ms(ttl: float | None) -> str:
    return "" if ttl is None else str(int(ttl * 1000))


def _str(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


# -- the memory store's versions (same semantics; no await inside, so atomic on the event loop) --
def _hash(store: Any, key: str, create: bool, ttl_ms: str) -> dict | None:
    h = store._data.get(key) if store._alive(key) else None
    if not isinstance(h, dict):
        if not create:
            return None
        h = store._data[key] = {}
    if ttl_ms and key not in store._expiry:
        store._set_ttl(key, int(ttl_ms) / 1000)
    return h


def _add(store: Any, key: str, amount: float, ttl_ms: str = "") -> float:
    value = store._num(key) + amount
    store._data[key] = value
    if ttl_ms and key not in store._expiry:
        store._set_ttl(key, int(ttl_ms) / 1000)
    return value


def reserve_py(store: Any, keys: list[str], args: list[Any]) -> list:
    counter, hkey = keys
    hid, amount_s, minimum, limit, ttl_ms = (_str(a) for a in args)
    cur = store._num(counter)
    h = _hash(store, hkey, False, "")
    if h is not None and hid in h:
        return [1, h[hid], repr(cur)]
    amount, limit_f = float(amount_s), float(limit)
    got = amount
    partial = False
    if cur + amount > limit_f + TOLERANCE:
        room = (limit_f - cur) * (1 - SLACK)
        if float(minimum) >= amount or room < float(minimum) or (h is not None and (PARTIAL in h or OVER in h)):
            return [0, "0", repr(cur)]
        got, partial = float("%.17g" % room), True
    new = _add(store, counter, got, ttl_ms)
    h = _hash(store, hkey, True, ttl_ms)
    h[hid] = repr(got).encode()
    if partial:
        h[PARTIAL] = hid.encode()
    return [1, h[hid], repr(new)]


def settle_py(store: Any, keys: list[str], args: list[Any]) -> list:
    counter, hkey = keys
    hid, actual_s, ttl_ms = (_str(a) for a in args)
    h = _hash(store, hkey, False, "")
    if h is None or hid not in h:
        return [0, repr(store._num(counter))]
    held = float(h.pop(hid))
    if h.get(PARTIAL) == hid.encode():
        del h[PARTIAL]
    actual = float(actual_s)
    if actual > held * (1 + SLACK) + TOLERANCE:
        h[OVER] = b"1"
        _hash(store, hkey, True, ttl_ms)
    elif not h:
        store._data.pop(hkey, None)
        store._expiry.pop(hkey, None)
    return [1, repr(_add(store, counter, actual - held))]


class Holds:
    """The two scripts over one store."""

    def __init__(self, store) -> None:
        self.store = store
        store.register_script(RESERVE, _RESERVE_LUA, reserve_py)
        store.register_script(SETTLE, _SETTLE_LUA, settle_py)

    async def reserve(self, counter: str, hold_id: str, amount: float, minimum: float, limit: float,
                      ttl: float | None) -> tuple[bool, float, float]:
        """(accepted, amount held, the counter's value after the call)."""
        ok, got, value = await self.store.eval(RESERVE, [counter, holds_key(counter)],
                                           [hold_id, repr(float(amount)), repr(float(minimum)),
                                            repr(float(limit)), _ttl_ms(ttl)])
        return bool(int(ok)), float(_str(got)), float(_str(value))

    async def settle(self, counter: str, hold_id: str, actual: float, ttl: float | None = None) -> bool:
        """Replace the hold by ``actual``; False when it was settled or released already."""
        done, _ = await self.store.eval(SETTLE, [counter, holds_key(counter)],
                                        [hold_id, repr(float(actual)), _ttl_ms(ttl)])
        return bool(int(done))
