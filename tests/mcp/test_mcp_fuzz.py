"""Property-based tests: random bytes and JSON never crash the parser, the SSE rewriter or the addon."""
from __future__ import annotations

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mitmproxy.test import tutils

from addons.mcp import Mcp
from proxy.mcp import jsonrpc, sse
from mcp_helpers import mkflow

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**53, 2**53) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30)

message_like = st.fixed_dictionaries(
    {"jsonrpc": st.sampled_from(["2.0", "1.0", 2]),
     "method": st.sampled_from(["tools/call", "tools/list", "ping", "", 7, "x/y"])},
    optional={"id": st.one_of(st.integers(-2**63, 2**63 - 1), st.text(max_size=5), st.none(), st.booleans()),
              "params": st.one_of(json_values, st.fixed_dictionaries(
                  {"name": st.one_of(st.sampled_from(["echo", "delete_repo", "deploy"]), json_values)},
                  optional={"arguments": json_values}))})


@given(st.binary(max_size=300))
def test_parse_random_bytes_never_raises(raw):
    parsed = jsonrpc.parse(raw)
    assert parsed.error is None or parsed.error[0] in (jsonrpc.PARSE_ERROR, jsonrpc.INVALID_REQUEST)
    for m in parsed.messages:
        assert m.kind in ("request", "notification", "response", "invalid")


@given(st.one_of(json_values, message_like, st.lists(message_like, max_size=4)))
def test_parse_random_json_never_raises(value):
    parsed = jsonrpc.parse(orjson.dumps(value))
    for m in parsed.messages:
        if m.is_call:
            jsonrpc.call_params(m)          # must not raise either


@given(st.lists(st.binary(max_size=40), max_size=8))
def test_sse_rewriter_is_lossless_when_nothing_changes(chunks):
    rw = sse.SseRewriter(lambda ev: None)
    out = b"".join(b"".join(rw(c)) for c in chunks if c) + b"".join(rw(b""))
    assert out == b"".join(chunks)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(st.binary(max_size=200), st.builds(orjson.dumps, message_like),
                      st.builds(orjson.dumps, st.lists(message_like, min_size=1, max_size=4))))
async def test_addon_never_raises_and_never_fails_open(rt, body):
    m = Mcp(rt)
    f = mkflow(body)
    await m.request(f)
    if f.response is not None:
        out = orjson.loads(f.response.content)
        assert isinstance(out, (dict, list))
        assert "Airlock could not evaluate" not in f.response.text      # no internal error on any input
    else:
        sent = jsonrpc.parse(f.request.content)
        for msg in sent.messages:                                       # every forwarded call was allowed
            if msg.is_call and isinstance(msg.params, dict):
                assert msg.params.get("name") not in ("delete_repo",)
                args = msg.params.get("arguments")
                assert not (isinstance(args, dict) and "justification" in args)
        f.response = tutils.tresp(content=b"[]")
        f.response.headers["content-type"] = "application/json"
        await m.response(f)


@given(st.text(max_size=80))
def test_untag_random_ids_never_raises(text):
    from proxy.mcp import tags
    action, _ = tags.untag("airlock:r:" + text)
    assert action in (None, "replace")
    action, _ = tags.untag("airlock:l:" + text)
    assert action in (None, "list")


@given(st.one_of(st.integers(-2**53, 2**53), st.text(max_size=30)))
def test_list_tags_round_trip(rpc_id):
    from proxy.mcp import tags
    assert tags.untag(tags.list_tag(rpc_id)) == ("list", rpc_id)
