"""The calls held in this process, by approval id: whom to wake when a decision is published.

One entry per key: the value itself, or a tuple when a key has several (a list per held call would
be 10,000 lists). A waiter is future-like (``done``, ``set_result``, ``set_exception``): an asyncio
future, or the gate's held call.
"""
from __future__ import annotations

from typing import Any


class Multimap(dict):
    """key -> values (none of them a tuple), stored as one value or a tuple of several."""
    __slots__ = ()

    def of(self, key: str) -> tuple:
        v = self.get(key)
        return () if v is None else v if type(v) is tuple else (v,)

    def add(self, key: str, value: Any) -> None:
        self[key] = value if key not in self else (*self.of(key), value)

    def discard(self, key: str, value: Any) -> None:
        rest = tuple(v for v in self.of(key) if v != value)
        if not rest:
            self.pop(key, None)
        else:
            self[key] = rest if len(rest) > 1 else rest[0]

    def take(self, key: str) -> tuple:
        values = self.of(key)
        self.pop(key, None)
        return values


class Waiters(Multimap):
    __slots__ = ()

    def resolve(self, approval_id: str, state: Any) -> None:
        for w in self.of(approval_id):
            if not w.done():
                w.set_result(state)

    def fail_all(self, exc: BaseException) -> None:
        for approval_id in list(self):
            for w in self.of(approval_id):
                if not w.done():
                    w.set_exception(exc)
