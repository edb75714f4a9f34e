"""PolicyHolder: the current engine, swapped atomically on reload (skeleton)."""
from __future__ import annotations

import asyncio

from .engine import Engine
from .load import load_engine
from .model import PolicyError


class PolicyHolder:
    def __init__(self, paths, on_event=None):
        self.paths = list(paths or [])
        self.on_event = on_event
        self.engine: Engine = load_engine(self.paths)

    def reload(self) -> tuple[bool, str | None]:
        try:
            self.engine = load_engine(self.paths)
        except PolicyError as e:
            return False, str(e)
        return True, None

    async def watch(self, interval: float = 1.0):
        while True:
            await asyncio.sleep(interval)
