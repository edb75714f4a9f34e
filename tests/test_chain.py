"""AddonChain: one dispatch for all of Airlock's addons, and fail-closed on a hook's exception."""
from __future__ import annotations

from mitmproxy.test import taddons, tflow

from proxy import flowmeta
from proxy.chain import AddonChain


class Boom:
    def __init__(self):
        self.calls = []

    def request(self, flow):
        self.calls.append("boom")
        raise RuntimeError("bug in an addon")


class After:
    def __init__(self):
        self.calls = []

    async def request(self, flow):
        self.calls.append("after")

    def response(self, flow):
        self.calls.append("response")


async def call(res):
    """Flow hooks return None or an awaitable, as mitmproxy's invoke_addon expects."""
    if res is not None:
        await res


def governed(flow, kind="openai"):
    flow.metadata[flowmeta.ROUTE] = flowmeta.Route("gateway", kind, "openai", "/chat/completions")
    return flow


async def test_exception_in_a_governed_request_denies_and_stops_the_chain():
    after = After()
    chain = AddonChain([Boom(), after])
    with taddons.context(chain):
        f = governed(tflow.tflow())
        await call(chain.request(f))
    assert f.response is not None and f.response.status_code == 500
    assert b"was not forwarded" in f.response.content
    assert f.metadata[flowmeta.OUTCOME] == "addon_error"
    assert after.calls == []                     # later addons never saw an undecided call


def test_exception_in_an_mcp_request_answers_json_rpc():
    chain = AddonChain([Boom()])
    with taddons.context(chain):
        f = governed(tflow.tflow(), "mcp")
        chain.request(f)
    assert f.response.json()["jsonrpc"] == "2.0" and "error" in f.response.json()


async def test_ungoverned_flows_are_left_to_continue():
    after = After()
    chain = AddonChain([Boom(), after])
    with taddons.context(chain):
        f = tflow.tflow()
        await call(chain.request(f))
    assert f.response is None and after.calls == ["after"]


def test_only_hooks_some_child_implements_are_exposed():
    chain = AddonChain([After()])
    assert hasattr(chain, "request") and hasattr(chain, "response")
    assert not hasattr(chain, "responseheaders") and not hasattr(chain, "addons")


async def test_flow_hooks_return_a_coroutine_only_when_a_child_needs_one():
    after = After()
    chain = AddonChain([after])
    f = tflow.tflow()
    assert chain.response(f) is None and after.calls == ["response"]
    pending = chain.request(f)
    assert pending is not None
    await pending
    assert after.calls == ["response", "after"]


class McpOnly:
    route_kinds = frozenset({"mcp"})

    def __init__(self):
        self.seen = []

    def request(self, flow):
        self.seen.append(flowmeta.route(flow).kind if flowmeta.route(flow) else None)


async def test_route_kinds_limit_which_flows_an_addon_sees():
    only = McpOnly()
    chain = AddonChain([only])
    for f in (tflow.tflow(), governed(tflow.tflow(), "openai"), governed(tflow.tflow(), "mcp")):
        await call(chain.request(f))
    assert only.seen == ["mcp"]


def test_non_flow_hooks_keep_mitmproxy_sync_semantics():
    import inspect

    class Conf:
        def configure(self, updated):
            pass

        async def running(self):
            pass

    chain = AddonChain([Conf()])
    assert not inspect.iscoroutinefunction(chain.configure)
    assert inspect.iscoroutinefunction(chain.running)


class SetsRoute:
    def requestheaders(self, flow):
        governed(flow, "mcp")


async def test_route_set_earlier_in_the_same_hook_is_seen_by_later_children():
    only = McpOnly()
    only.requestheaders = only.request            # same recorder, requestheaders hook
    chain = AddonChain([SetsRoute(), only])
    await call(chain.requestheaders(tflow.tflow()))
    assert only.seen == ["mcp"]
