"""Pending approvals survive a restart of the embedded store: snapshot + journal of later changes."""
from __future__ import annotations

from proxy.approvals.service import ApprovalService
from proxy.approvals.settings import Settings
from proxy.store import memory
from proxy.store.memory import MemoryStore

from tests.approvals.approvals_helpers import WORKFLOWS, wait_for
from tests.harness import RecordingAudit


async def _service(path):
    store = MemoryStore(path)
    svc = ApprovalService(store, RecordingAudit(), Settings(sweep_seconds=3600))
    await svc.start()
    return store, svc


async def test_decisions_after_the_snapshot_come_back_from_the_journal(tmp_path):
    path = tmp_path / "store.json"
    store, svc = await _service(path)
    reqs = [await svc.create(tool="t", server=None, workflow=WORKFLOWS["one"]) for _ in range(20)]
    store._snapshot()                                       # a full snapshot, then only journal lines
    await svc.vote(reqs[0].id, "alice", "approve")
    await svc.vote(reqs[1].id, "alice", "deny")
    await store.delete("approvals:r:" + reqs[2].id)
    assert await wait_for(lambda: not store._dirty and store._journal_bytes > 0)
    size = path.stat().st_size
    await svc.close()                                       # no close() of the store: as after a crash
    assert path.stat().st_size == size                      # the snapshot was not rewritten per decision

    again = MemoryStore(path)
    svc2 = ApprovalService(again, RecordingAudit())
    assert (await svc2.get(reqs[0].id)).state == "approved"
    assert (await svc2.get(reqs[1].id)).state == "denied"
    assert await svc2.get(reqs[2].id) is None
    assert (await svc2.get(reqs[3].id)).state == "pending"
    pending = await svc2.list()
    assert {r.id for r in pending} == {r.id for r in reqs[3:]}
    await again.close()                                     # folds the journal into the snapshot
    assert not again._journal.exists()
    assert (await MemoryStore(path).hgetall("approvals:r:" + reqs[0].id))["state"] == b"approved"


async def test_a_torn_journal_line_is_dropped(tmp_path):
    path = tmp_path / "store.json"
    store, svc = await _service(path)
    req = await svc.create(tool="t", server=None, workflow=WORKFLOWS["one"])
    store._snapshot()
    await svc.vote(req.id, "alice", "approve")
    assert await wait_for(lambda: not store._dirty and store._journal_bytes > 0)
    await svc.close()
    with open(store._journal, "ab") as f:
        f.write(b'{"approvals:r:x": ["b", "AA')            # cut short by a crash
    again = MemoryStore(path)
    assert (await again.hgetall(req.key))["state"] == b"approved"


async def test_the_journal_is_folded_once_it_outgrows_the_snapshot(tmp_path, monkeypatch):
    monkeypatch.setattr(memory, "JOURNAL_MIN_BYTES", 1)
    path = tmp_path / "store.json"
    store, svc = await _service(path)
    req = await svc.create(tool="t", server=None, workflow=WORKFLOWS["one"])
    store._snapshot()
    for i in range(30):
        await store.hset(req.key, {"outcome": str(i).encode() * 200})
        assert await wait_for(lambda: not store._dirty)
    # ``_dirty`` clears when the flusher takes the changes, before its thread has written them: wait for the
    # flusher itself (it ends once nothing is left to write)
    await store._flusher
    assert store._journal_bytes <= store._snapshot_bytes + 2000
    await svc.close()
    assert (await MemoryStore(path).hgetall(req.key))["outcome"] == b"29" * 200
