"""The held-call bookkeeping that keeps 10,000 holds cheap: one deadline timer, frozen heap."""
from __future__ import annotations

import asyncio
import gc
import weakref

import pytest

from proxy.approvals import heap
from proxy.approvals.deadlines import Deadlines
from proxy.approvals.heap import HeldHeap

from tests.approvals.approvals_helpers import WORKFLOWS, wait_for


async def test_deadlines_resolve_in_order_with_one_timer():
    d = Deadlines()
    loop = asyncio.get_running_loop()
    late, early, decided = loop.create_future(), loop.create_future(), loop.create_future()
    d.add(0.2, late)
    d.add(0.05, early)
    d.add(0.05, decided)
    decided.set_result("approved")                 # decided before its deadline: left alone
    assert await asyncio.wait_for(early, 5) is None
    assert not late.done()
    assert await asyncio.wait_for(late, 5) is None
    assert decided.result() == "approved"
    assert len(d) == 0


async def test_deadlines_drop_released_entries():
    d = Deadlines()
    loop = asyncio.get_running_loop()
    futs = [loop.create_future() for _ in range(200)]
    for f in futs:
        d.add(3600, f)
    for f in futs[:150]:
        f.set_result("denied")
        d.released()
    assert len(d) <= 100                            # rebuilt once most entries were released
    d.clear()
    assert len(d) == 0


@pytest.fixture
def frozen_state():
    """Leave the collector as we found it (other tests run in this process)."""
    before = gc.get_freeze_count()
    yield
    if gc.get_freeze_count() != before:
        gc.unfreeze()
        gc.collect()
        if before:
            gc.freeze()


def test_heap_freezes_every_step_and_refreezes_after_half_released(monkeypatch, frozen_state):
    monkeypatch.setattr(heap, "FREEZE_STEP", 4)
    gc.unfreeze()
    h = HeldHeap()
    for _ in range(3):
        h.started()
    assert gc.get_freeze_count() == 0 and h.frozen_at == 0
    h.started()                                     # the 4th hold: the heap goes to the permanent generation
    assert gc.get_freeze_count() > 0 and h.frozen_at == 4
    h.ended()
    assert h.frozen_at == 4                         # 3 of 4 still held: nothing to give back yet
    node = _Node()                                  # a released call's cycle, frozen with the heap
    node.me = node
    gone = weakref.ref(node)
    gc.freeze()
    del node
    assert gone() is not None                       # frozen cycles wait ...
    h.ended()                                       # ... until half is released: collect, freeze again
    assert gone() is None
    assert h.held == 2 and h.frozen_at == 0         # below one step: nothing of ours counts as frozen
    assert gc.get_freeze_count() > 0                # what is left stays frozen, as after start-up


def test_a_steady_hold_population_still_gives_frozen_cycles_back(monkeypatch, frozen_state):
    monkeypatch.setattr(heap, "FREEZE_STEP", 2)
    monkeypatch.setattr(heap, "REFREEZE_EVERY", 3)
    gc.unfreeze()
    h = HeldHeap()
    h.held = h.frozen_at = 10                       # a population of held calls ...
    node = _Node()
    node.me = node
    gone = weakref.ref(node)
    gc.freeze()                                     # ... a cycle frozen with the heap ...
    del node
    for _ in range(6):                              # ... and as many calls end as start: never half
        h.started()
        h.ended()
    assert gone() is not None and h.freezes == 3
    for _ in range(2):
        h.started()
        h.ended()
    assert gone() is None                           # the periodic full collection gave it back
    assert h.freezes == 0 and h.held == 10
    assert gc.get_freeze_count() > 0


class _Node:
    me: object = None


async def test_wait_released_by_decision(service):
    req = await service.create(tool="t", server=None, workflow=WORKFLOWS["one"])
    waiter = asyncio.create_task(service.wait(req.id, 60))
    assert await wait_for(lambda: service.waiting == 1)
    await service.vote(req.id, "alice@example.com", "approve")
    assert await asyncio.wait_for(waiter, 5) == "approved"
    assert service.waiting == 0
    assert len(service._deadlines) <= 1             # at most the released entry, dropped lazily
