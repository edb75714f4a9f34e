"""The store interface: keys, counters, reservations, key/value, pub/sub.

Two implementations with the same behaviour: ``memory.MemoryStore`` (the embedded
default, one process) and ``redis.RedisStore`` (several replicas). Every method
is a coroutine; every multi-step update is atomic (a Lua script in Redis).
The same test suite runs against both (tests/test_store.py).
"""
from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable
from typing import Any

Subscriber = Callable[[str, bytes], Awaitable[None] | None]


class Store(abc.ABC):
    """Shared state. Keys are plain strings; callers namespace them (``budget:...``)."""

    kind: str = "abstract"

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Open connections / start the subscriber task."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    # -- key/value with optional TTL -------------------------------------------------
    @abc.abstractmethod
    async def get(self, key: str) -> bytes | None: ...

    @abc.abstractmethod
    async def set(self, key: str, value: bytes, ttl: float | None = None,
                  only_if_absent: bool = False) -> bool:
        """Store ``value``; with ``only_if_absent`` return False if the key exists."""

    @abc.abstractmethod
    async def delete(self, key: str) -> bool: ...

    @abc.abstractmethod
    async def scan(self, prefix: str) -> list[str]:
        """Every live key starting with ``prefix``."""

    # -- hashes (records with fields) -------------------------------------------------
    @abc.abstractmethod
    async def hset(self, key: str, fields: dict[str, bytes], ttl: float | None = None) -> None: ...

    @abc.abstractmethod
    async def hgetall(self, key: str) -> dict[str, bytes]: ...

    # -- counters ---------------------------------------------------------------------
    @abc.abstractmethod
    async def incr(self, key: str, amount: float = 1.0, ttl: float | None = None) -> float:
        """Add ``amount`` and return the new value; ``ttl`` is set when the key is created."""

    @abc.abstractmethod
    async def reserve(self, key: str, amount: float, limit: float,
                      ttl: float | None = None) -> tuple[bool, float]:
        """Atomically add ``amount`` only if the result stays <= ``limit``.

        Returns (accepted, value after the call). This is the budget primitive: several
        replicas reserving at once can never pass the limit together.
        """

    # -- sorted sets (expiry queues) -------------------------------------------------------
    @abc.abstractmethod
    async def zadd(self, key: str, member: str, score: float) -> None: ...

    @abc.abstractmethod
    async def zrangebyscore(self, key: str, max_score: float) -> list[str]: ...

    @abc.abstractmethod
    async def zrem(self, key: str, member: str) -> bool: ...

    # -- pub/sub (one shared subscriber per process) ----------------------------------------
    @abc.abstractmethod
    async def publish(self, channel: str, message: bytes) -> None: ...

    @abc.abstractmethod
    def subscribe(self, prefix: str, callback: Subscriber) -> None:
        """Call ``callback(channel, message)`` for every message on a channel starting
        with ``prefix``. All subscriptions of a process share one connection."""

    # -- scripts ----------------------------------------------------------------------------
    @abc.abstractmethod
    async def eval(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """Run a named atomic script registered with ``register_script``."""

    @abc.abstractmethod
    def register_script(self, name: str, lua: str, python: Callable[..., Any]) -> None:
        """Register an atomic operation: ``lua`` runs in Redis; ``python(store, keys, args)``
        runs in the memory store under its lock. Both must have the same semantics."""
