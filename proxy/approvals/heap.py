"""Keep held calls out of the garbage collector's full passes.

``airlock run`` calls ``gc.freeze()`` once after start-up so full (gen2) collections
skip the start-up heap. Held calls are a second long-lived population that grows
afterwards: each one is a few hundred tracked objects (mitmproxy's connection,
layers, flow, streams, tasks), so 10,000 held calls put ~3M objects in gen2, and
every full collection rescans all of them (0.3-1 s with the event loop stopped:
the decision-to-release tail while many calls are held).

So, while calls are held, every ``FREEZE_STEP`` new holds the current heap is moved
to the permanent generation as well (``gc.freeze()``, O(1)). Frozen objects are
still freed by reference counting when a call is released; only reference cycles
among them wait. To give those back, once the number held has fallen to half of
what it was at the last freeze (or to zero), the permanent generation is returned
to the collector, one full collection runs, and what is left is frozen again, as at
start-up. That pause scans what is still held, once per halving, instead of on
every full collection; the memory of released calls' cycles is bounded by it.
"""
from __future__ import annotations

import gc
import logging
import time

from . import metrics

log = logging.getLogger("airlock.approvals")

FREEZE_STEP = 200          # new holds between two freezes (a full pass over 200 held calls: a few ms)
# A steady population of held calls never halves, so cycles frozen along the way (other traffic's
# garbage too) would wait forever: every this many freezes, collect and refreeze anyway.
REFREEZE_EVERY = 50


class HeldHeap:
    """Called by the gate when a hold starts and ends (both O(1) unless a step is due)."""

    __slots__ = ("held", "frozen_at", "since_freeze", "freezes")

    def __init__(self) -> None:
        self.held = 0               # calls held now in this process
        self.frozen_at = 0          # calls held at the last freeze (0: nothing of ours is frozen)
        self.since_freeze = 0       # holds started since the last freeze
        self.freezes = 0            # freezes since the last full collection

    def started(self) -> None:
        self.held += 1
        self.since_freeze += 1
        if self.since_freeze >= FREEZE_STEP:
            if self.freezes >= REFREEZE_EVERY:
                self.refreeze()
                return
            self.since_freeze = 0
            self.frozen_at = self.held
            self.freezes += 1
            gc.collect(1)           # young garbage is collected, not frozen (cheap: gen0 + gen1 only)
            gc.freeze()

    def ended(self) -> None:
        self.held -= 1
        if self.frozen_at and self.held * 2 <= self.frozen_at:
            self.refreeze()

    def refreeze(self) -> None:
        """Collect the cycles of released calls, then freeze what is left again."""
        t0 = time.perf_counter()
        gc.unfreeze()
        found = gc.collect()
        gc.freeze()
        self.frozen_at = self.held if self.held >= FREEZE_STEP else 0
        self.since_freeze = 0
        self.freezes = 0
        ms = (time.perf_counter() - t0) * 1000
        metrics.GC_REFREEZE.observe(ms / 1000)
        log.debug("approvals: refroze the heap (%d held, %d unreachable objects collected) in %.1f ms",
                  self.held, found, ms)
