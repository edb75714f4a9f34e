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


def governed(flow, kind="openai"):
    flow.metadata[flowmeta.ROUTE] = flowmeta.Route("gateway", kind, "openai", "/chat/completions")
    return flow


async def test_exception_in_a_governed_request_denies_and_stops_the_chain():
    after = After()
    chain = AddonChain([Boom(), after])
    with taddons.context(chain):
        f = governed(tflow.tflow())
        await chain.request(f)
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
        await chain.request(f)
    assert f.response is None and after.calls == ["after"]


def test_only_hooks_some_child_implements_are_exposed():
    chain = AddonChain([After()])
    assert hasattr(chain, "request") and hasattr(chain, "response")
    assert not hasattr(chain, "responseheaders") and not hasattr(chain, "addons")


def test_sync_hooks_stay_sync_for_mitmproxy_sync_dispatch():
    import inspect
    chain = AddonChain([After()])
    assert not inspect.iscoroutinefunction(chain.response)
    assert inspect.iscoroutinefunction(chain.request)
