"""Atomic steps on one approval hash: a Lua body for Redis, the same logic in Python
for the in-process store (which runs it without awaiting, so it is atomic too).

``approvals.vote``  KEYS: [hash]  ARGV: [approver, decision, vote_json, now]
    -> [status, state]; status is one of
       recorded | decided | missing | closed | expired | self | not_allowed | duplicate
``approvals.close`` KEYS: [hash]  ARGV: [new_state, now, by, reason]
    -> [1, new_state] if the request was pending and is now closed, else [0, current_state]
``approvals.allow`` KEYS: [hash]  ARGV: [name...]  (escalation: more people may approve)
    -> number of names added
"""
from __future__ import annotations

from typing import Any

VOTE = "approvals.vote"
CLOSE = "approvals.close"
ALLOW = "approvals.allow"

VOTE_LUA = """
local st = redis.call('HGET', KEYS[1], 'state')
if not st then return {'missing', ''} end
if st ~= 'pending' then return {'closed', st} end
local now = tonumber(ARGV[4])
local exp = tonumber(redis.call('HGET', KEYS[1], 'expires_at') or '0')
if exp > 0 and exp <= now then return {'expired', st} end
local who = ARGV[1]
if redis.call('HEXISTS', KEYS[1], 'req:' .. who) == 1 then return {'self', st} end
if redis.call('HEXISTS', KEYS[1], 'open') == 0 and redis.call('HEXISTS', KEYS[1], 'ok:' .. who) == 0 then
  return {'not_allowed', st}
end
if redis.call('HEXISTS', KEYS[1], 'v:' .. who) == 1 then return {'duplicate', st} end
redis.call('HSET', KEYS[1], 'v:' .. who, ARGV[3])
local new = nil
if ARGV[2] == 'deny' then
  new = 'denied'
else
  local n = redis.call('HINCRBY', KEYS[1], 'approvals', 1)
  if n >= tonumber(redis.call('HGET', KEYS[1], 'required') or '1') then new = 'approved' end
end
if new then
  redis.call('HSET', KEYS[1], 'state', new, 'decided_at', ARGV[4], 'decided_by', who)
  return {'decided', new}
end
return {'recorded', st}
"""

CLOSE_LUA = """
local st = redis.call('HGET', KEYS[1], 'state')
if not st then return {0, ''} end
if st ~= 'pending' then return {0, st} end
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'decided_at', ARGV[2], 'decided_by', ARGV[3],
           'decision_reason', ARGV[4])
return {1, ARGV[1]}
"""

ALLOW_LUA = """
local n = 0
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
for i = 1, #ARGV do n = n + redis.call('HSETNX', KEYS[1], 'ok:' .. ARGV[i], '1') end
return n
"""


def _hash(store: Any, key: str) -> dict | None:
    """The live hash of the in-process store (internal access, same lock-free atomicity)."""
    if not store._alive(key):
        return None
    h = store._data.get(key)
    return h if isinstance(h, dict) else None


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def vote_py(store: Any, keys: list[str], args: list[Any]) -> list:
    h = _hash(store, keys[0])
    if h is None or "state" not in h:
        return ["missing", ""]
    st = _s(h["state"])
    if st != "pending":
        return ["closed", st]
    who, decision, vote_json, now = _s(args[0]), _s(args[1]), args[2], float(args[3])
    exp = float(_s(h.get("expires_at", b"0")))
    if 0 < exp <= now:
        return ["expired", st]
    if "req:" + who in h:
        return ["self", st]
    if "open" not in h and "ok:" + who not in h:
        return ["not_allowed", st]
    if "v:" + who in h:
        return ["duplicate", st]
    h["v:" + who] = vote_json if isinstance(vote_json, bytes) else str(vote_json).encode()
    new = None
    if decision == "deny":
        new = "denied"
    else:
        n = int(_s(h.get("approvals", b"0"))) + 1
        h["approvals"] = str(n).encode()
        if n >= int(_s(h.get("required", b"1"))):
            new = "approved"
    store._touch(keys[0])
    if new:
        h.update({"state": new.encode(), "decided_at": _s(args[3]).encode(), "decided_by": who.encode()})
        return ["decided", new]
    return ["recorded", st]


def close_py(store: Any, keys: list[str], args: list[Any]) -> list:
    h = _hash(store, keys[0])
    if h is None or "state" not in h:
        return [0, ""]
    st = _s(h["state"])
    if st != "pending":
        return [0, st]
    h.update({"state": _s(args[0]).encode(), "decided_at": _s(args[1]).encode(),
              "decided_by": _s(args[2]).encode(), "decision_reason": _s(args[3]).encode()})
    store._touch(keys[0])
    return [1, _s(args[0])]


def allow_py(store: Any, keys: list[str], args: list[Any]) -> int:
    h = _hash(store, keys[0])
    if h is None:
        return 0
    n = 0
    for name in args:
        f = "ok:" + _s(name)
        if f not in h:
            h[f] = b"1"
            n += 1
    store._touch(keys[0])
    return n


def register(store: Any) -> None:
    store.register_script(VOTE, VOTE_LUA, vote_py)
    store.register_script(CLOSE, CLOSE_LUA, close_py)
    store.register_script(ALLOW, ALLOW_LUA, allow_py)


def pair(result: Any) -> tuple[Any, str]:
    """Normalise a script's two-element reply (Redis gives bytes, the memory store str)."""
    a, b = result[0], result[1]
    if isinstance(a, bytes):
        a = a.decode()
    return a, _s(b)
