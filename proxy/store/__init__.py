"""Shared state: ``open_store(None)`` is the in-process default, ``open_store("redis://...")`` Redis."""
from __future__ import annotations

from pathlib import Path

from .base import Store
from .memory import MemoryStore


def open_store(url: str | None, persist_path: str | Path | None = None) -> Store:
    if not url:
        return MemoryStore(persist_path)
    from .redis import RedisStore
    return RedisStore(url)


__all__ = ["Store", "MemoryStore", "open_store"]
