"""Hot reload: validate, swap atomically, keep the last good version on error, audit, count."""
from __future__ import annotations

import asyncio
import time

from prometheus_client import REGISTRY

from proxy.policy import CallContext, PolicyHolder

GOOD = "tools:\n  - {id: r, name: bash, action: deny}\n"
BETTER = "tools:\n  - {id: r, name: bash, action: require_approval}\n"
BAD = "tools:\n  - {id: r, name: bash, action: explode}\n"


def _count(result: str) -> float:
    return REGISTRY.get_sample_value("airlock_policy_reloads_total", {"result": result}) or 0.0


def test_reload_swaps_and_rejects_invalid_versions(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text(GOOD)
    events = []
    h = PolicyHolder([f], on_event=lambda kind, **kw: events.append((kind, kw)))
    v1 = h.engine.version
    assert h.engine.decide(CallContext(tool="bash")).action == "deny"

    f.write_text(BETTER)
    assert h.reload() == (True, None)
    assert h.engine.version != v1
    assert h.engine.decide(CallContext(tool="bash")).action == "require_approval"
    assert events[-1][0] == "policy.reload" and events[-1][1]["ok"] is True

    good = h.engine
    before = _count("error")
    f.write_text(BAD)
    ok, err = h.reload()
    assert not ok and "p.yaml:2" in err and "explode" in err
    assert h.engine is good                                   # last good version stays
    assert _count("error") == before + 1
    kind, ev = events[-1]
    assert kind == "policy.reload" and ev["ok"] is False and ev["version"] == good.version
    assert ev["errors"][0]["line"] == 2
    assert h.status()["last_error"] and h.status()["last_errors"][0]["line"] == 2

    f.write_text(BETTER + "\n# comment only\n")
    assert h.reload() == (True, None) and h.status()["last_error"] is None


def test_initially_invalid_policy_denies_everything(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text(BAD)
    h = PolicyHolder([f])
    assert h.engine.version == "invalid" and h.last_error
    assert h.engine.decide(CallContext(tool="anything")).action == "deny"
    assert h.reload()[0] is False
    f.write_text(GOOD)
    assert h.reload() == (True, None) and h.engine.version != "invalid"


def test_event_handler_failure_does_not_break_reload(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text(GOOD)

    def boom(kind, **kw):
        raise RuntimeError("audit down")
    h = PolicyHolder([f], on_event=boom)
    f.write_text(BETTER)
    assert h.reload() == (True, None)


async def test_watch_picks_up_changes_and_keeps_good_version(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text(GOOD)
    h = PolicyHolder([tmp_path])
    task = asyncio.create_task(h.watch(interval=0.02))

    async def until(pred, what):
        deadline = time.monotonic() + 10
        while not pred():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.01)
    try:
        f.write_text(BETTER)
        await until(lambda: h.engine.decide(CallContext(tool="bash")).action == "require_approval", "reload")
        good = h.engine
        errors_before = h.reloads["error"]
        f.write_text(BAD + "# now broken\n")
        await until(lambda: h.reloads["error"] > errors_before, "rejected reload")
        assert h.engine is good
        (tmp_path / "extra.yaml").write_text("tools:\n  - {id: e, name: ls, action: deny}\n")
        f.write_text(GOOD)
        await until(lambda: h.engine.decide(CallContext(tool="ls")).action == "deny", "new file")
        assert h.engine.decide(CallContext(tool="bash")).action == "deny"
    finally:
        task.cancel()


def test_a_deleted_policy_file_is_rejected_and_the_last_good_version_stays(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text(GOOD)
    h = PolicyHolder([f])
    good = h.engine
    f.unlink()
    assert h.changed()
    ok, err = h.reload()
    assert not ok and "no such policy file" in err and h.engine is good
    assert not h.changed()      # the failed attempt is remembered: no reload storm
