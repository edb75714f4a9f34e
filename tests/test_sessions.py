"""The sessions service's hot path: ended-session checks, and memory bounded however many
session ids clients send."""
from __future__ import annotations

from proxy import sessions as sess
from proxy.store import MemoryStore
from tests.harness import RecordingAudit


async def test_ended_session_is_refused_and_others_are_not():
    s = sess.Sessions(MemoryStore(), RecordingAudit())
    assert not await s.is_ended("run-1")
    await s.end("run-1", reason="done")
    assert await s.is_ended("run-1")
    assert not await s.is_ended("run-2")


async def test_not_ended_answers_stay_bounded_for_endless_distinct_sessions(monkeypatch):
    monkeypatch.setattr(sess, "_MAX_CACHE", 100)
    store = MemoryStore()
    s = sess.Sessions(store, RecordingAudit())
    for i in range(5000):                      # a client making up a session id per request
        assert not await s.is_ended(f"made-up-{i}")
        assert len(s._fresh) <= 100
    await s.end("made-up-4999")                # a cached "not ended" never hides an end
    assert await s.is_ended("made-up-4999")
