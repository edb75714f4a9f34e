"""Per-process MCP state stays bounded however many tools or requests a server and client produce."""
from __future__ import annotations

import orjson

from proxy.mcp import stdio, tools
from proxy.store import MemoryStore
from tests.harness import RecordingAudit


async def test_tool_watch_memo_is_bounded_and_still_flags_changes(monkeypatch):
    monkeypatch.setattr(tools, "SEEN_MAX", 100)
    audit = RecordingAudit()
    watch = tools.ToolWatch(MemoryStore(), audit)
    first = {"name": "t0", "description": "v1", "inputSchema": {"type": "object"}}
    assert await watch.observe("srv", [first]) == []
    for i in range(1, 1000):                   # a server inventing tool names
        await watch.observe("srv", [{"name": f"t{i}", "description": "x", "inputSchema": {"type": "object"}}])
    assert len(watch._seen) <= 100
    # t0 left the memo long ago; its baseline is in the store, so a changed definition is still caught
    assert await watch.observe("srv", [dict(first, description="v2")]) == ["t0"]
    assert audit.kinds()[-1] == "tool_changed"


class _Decider:
    """Airlock's decider interface answering every tools/list with the list unchanged."""

    async def tools_list(self, server, result):
        return {"result": result}


async def test_wrap_forgets_tools_list_ids_the_server_answers_with_an_error():
    w = stdio.Wrapper(_Decider(), "local", {})
    for i in range(500):
        line = orjson.dumps({"jsonrpc": "2.0", "id": i, "method": "tools/list"}) + b"\n"
        assert await w.from_client(line) == line
        err = orjson.dumps({"jsonrpc": "2.0", "id": i, "error": {"code": -32601, "message": "no"}}) + b"\n"
        assert await w.from_server(err) == err
    assert w.list_ids == set()


async def test_wrap_passes_a_reply_with_an_object_id_untouched():
    w = stdio.Wrapper(_Decider(), "local", {})
    await w.from_client(b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}\n')
    odd = b'{"jsonrpc":"2.0","id":{"x":1},"result":{"tools":[]}}\n'
    assert await w.from_server(odd) == odd
    ok = b'{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}\n'
    assert orjson.loads(await w.from_server(ok)) == {"jsonrpc": "2.0", "id": 1, "result": {"tools": []}}
    assert w.list_ids == set()
