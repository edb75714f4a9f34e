"""One timer for the deadlines of every call held in this process.

A heap of ``(when, seq, future)`` and a single loop timer armed for the earliest
entry, instead of an ``asyncio.timeout`` (a Timeout object and a timer handle) per
held call: 10,000 held calls then cost 10,000 small tuples. When a deadline passes,
its future gets ``None`` (a decision is never ``None``). Entries of calls released
before their deadline are dropped lazily: the heap is rebuilt once they are more
than half of it.
"""
from __future__ import annotations

import asyncio
import heapq
import itertools


class Deadlines:
    __slots__ = ("_heap", "_seq", "_timer", "_at", "_released")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, asyncio.Future]] = []
        self._seq = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._at = 0.0
        self._released = 0

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, seconds: float, fut: asyncio.Future) -> None:
        """Resolve ``fut`` with ``None`` in ``seconds`` unless it is done by then."""
        loop = asyncio.get_running_loop()
        when = loop.time() + max(0.0, seconds)
        heapq.heappush(self._heap, (when, next(self._seq), fut))
        if self._timer is None or when < self._at:
            self._arm(loop, when)

    def released(self) -> None:
        """A future given to ``add`` is done (decided, failed, cancelled): its entry may go."""
        self._released += 1
        if self._released > 64 and self._released * 2 > len(self._heap):
            self._heap = [e for e in self._heap if not e[2].done()]
            heapq.heapify(self._heap)
            self._released = 0

    def _arm(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._at = when
        self._timer = loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        heap = self._heap
        while heap and heap[0][0] <= now:
            fut = heapq.heappop(heap)[2]
            if not fut.done():
                fut.set_result(None)
            elif self._released:
                self._released -= 1
        if heap:
            self._arm(loop, heap[0][0])

    def clear(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._heap.clear()
        self._released = 0
