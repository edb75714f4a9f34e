"""addons.audit.Audit with mitmproxy's tflow helpers and a real sink on chDB."""
from __future__ import annotations

import orjson
from mitmproxy.test import tflow, tutils

from addons.audit import Audit
from proxy import flowmeta
from proxy.config import from_dict
from proxy.runtime import Runtime
from proxy.store.memory import MemoryStore
from tests.audit.conftest import flushed


def _rt(sink) -> Runtime:
    return Runtime(config=from_dict({}), store=MemoryStore(), audit=sink)


def _model_flow(path="/openai/v1/chat/completions?key=sk-querySECRET0123456789", status=200):
    req = tutils.treq(method=b"POST", path=path.encode(), content=orjson.dumps({"model": "gpt-4o", "messages": []}))
    f = tflow.tflow(req=req, resp=tutils.tresp(status_code=status, content=b'{"ok": true}'))
    f.metadata[flowmeta.ROUTE] = flowmeta.Route("gateway", "openai", "openai", "/v1/chat/completions")
    f.metadata[flowmeta.IDENTITY] = flowmeta.Identity("0123456789abcdef", "acme", "ci", "alice", "claude", "s-1")
    f.metadata[flowmeta.USAGE] = {"input_tokens": 11, "output_tokens": 4, "cost_usd": 0.002, "model": "gpt-4o",
                                  "provider": "openai"}
    return f


async def test_response_row_is_durable_and_complete(make_sink):
    sink = make_sink(flush_seconds=60)
    await sink.start()
    addon = Audit(_rt(sink))
    f = _model_flow()
    assert addon.response(f) is None               # written to the WAL from the hook itself: no waiting
    assert sink.writer.chain.seq == 2              # audit_start + this row, both in the WAL file already
    wal = b"".join(p.read_bytes() for p in sink.wal_dir.rglob("*.wal*") if p.is_file())
    assert b'"kind":"request"' in wal
    await sink.close()
    s2 = make_sink()
    await s2.start()
    await flushed(s2)
    row = s2.query("SELECT * FROM events WHERE kind = 'request'")[0]
    assert (row["account"], row["session"], row["listener"], row["route_kind"], row["model"]) == \
        ("acme", "s-1", "gateway", "openai", "gpt-4o")
    assert (row["tokens_in"], row["tokens_out"], row["tokens"], row["status"]) == (11, 4, 15, 200)
    assert abs(row["cost"] - 0.002) < 1e-12 and row["path"] == "/v1/chat/completions"
    assert "sk-query" not in repr(row)
    assert s2.query("SELECT count() AS n FROM usage_ledger")[0]["n"] == 1
    await s2.close()


async def test_answers_need_not_wait_for_the_fsync_when_configured(make_sink):
    sink = make_sink(flush_seconds=60)
    await sink.start()
    addon = Audit(Runtime(config=from_dict({"audit": {"durable_answers": False}}), store=MemoryStore(), audit=sink))
    assert addon.response(_model_flow()) is None          # nothing to await: the answer goes out at once
    await flushed(sink)
    assert sink.query("SELECT count() AS n FROM events WHERE kind = 'request'")[0]["n"] == 1
    await sink.close()


def test_durable_answers_must_be_a_boolean():
    import pytest

    from proxy.config import ConfigError
    with pytest.raises(ConfigError, match="audit.durable_answers"):
        from_dict({"audit": {"durable_answers": "sometimes"}})


def test_group_commit_ms_is_checked_and_reaches_the_writer(tmp_path):
    import pytest

    from proxy.audit import open_audit
    from proxy.config import ConfigError
    for bad in ("fast", 0, 5000, True):
        with pytest.raises(ConfigError, match="audit.group_commit_ms"):
            from_dict({"audit": {"group_commit_ms": bad}})
    cfg = from_dict({"audit": {"group_commit_ms": 50, "wal_dir": str(tmp_path / "wal")}})
    assert open_audit(cfg).writer.group_seconds == 0.05
    assert open_audit(from_dict({"audit": {"wal_dir": str(tmp_path / "wal2")}})).writer.group_seconds == 0.01


async def test_error_hook_records_the_failed_flow(make_sink):
    sink = make_sink()
    await sink.start()
    addon = Audit(_rt(sink))
    f = _model_flow()
    f.response = None
    f.error = tflow.terr("server disconnected")
    addon.error(f)
    await flushed(sink)
    row = sink.query("SELECT * FROM events WHERE kind = 'request'")[0]
    assert row["outcome"] == "error" and row["reason"] == "server disconnected" and row["status"] == 0
    await sink.close()


async def test_refused_flow_keeps_the_session_from_headers(make_sink):
    sink = make_sink()
    await sink.start()
    addon = Audit(_rt(sink))
    f = _model_flow(status=401)
    del f.metadata[flowmeta.IDENTITY]
    f.metadata[flowmeta.OUTCOME] = "invalid_token"
    f.request.headers["mcp-session-id"] = "sess-from-header"
    assert addon.response(f) is None
    await flushed(sink)
    row = sink.query("SELECT * FROM events WHERE kind = 'request'")[0]
    assert (row["session"], row["outcome"], row["status"]) == ("sess-from-header", "invalid_token", 401)
    await sink.close()


async def test_fail_closed_refuses_governed_calls_only(make_sink):
    sink = make_sink()
    await sink.start()
    addon = Audit(_rt(sink))
    sink.writer.accepting = False                  # what a WAL write failure with fail_closed sets
    governed = _model_flow()
    governed.response = None
    addon.request(governed)
    assert governed.response.status_code == 503
    assert b"audit_unavailable" in governed.response.content
    assert governed.metadata[flowmeta.OUTCOME] == "audit_unavailable"
    other = tflow.tflow()
    other.metadata[flowmeta.ROUTE] = flowmeta.Route("proxy", "other", "", "/")
    addon.request(other)
    assert other.response is None
    sink.writer.accepting = True
    ok = _model_flow()
    ok.response = None
    addon.request(ok)
    assert ok.response is None
    await sink.close()


async def test_addon_registers_the_sessions_service(make_sink):
    sink = make_sink()
    rt = _rt(sink)
    Audit(rt)
    svc = rt.services["sessions"]
    assert not await svc.is_ended("s-9")
    await sink.start()
    out = await svc.end("s-9", reason="test")
    assert out["already_ended"] is False and await svc.is_ended("s-9")
    assert (await svc.end("s-9"))["already_ended"] is True
    assert await rt.store.get("session:ended:s-9") is not None
    await sink.close()
