"""The gateway and metering addons alone, with mitmproxy's test helpers (no network)."""
from __future__ import annotations

import orjson
from mitmproxy.test import taddons, tflow, tutils

from addons.gateway import Gateway
from addons.metering import Metering
from proxy import flowmeta
from proxy.audit.flows import request_fields
from proxy.config import Config
from proxy.flowmeta import Identity, Route
from proxy.meter.stream import CALL
from proxy.policy import Budget
from proxy.runtime import Runtime
from proxy.store import MemoryStore


class Audit:
    def __init__(self):
        self.rows = []

    def emit(self, kind, **fields):
        self.rows.append((kind, fields))


class Policy:
    def __init__(self, engine):
        self.engine = engine


class Engine:
    models: list = []
    rate_limits: list = []
    prices: dict = {}

    def __init__(self, budgets=()):
        self.budgets = list(budgets)


class BrokenStore(MemoryStore):
    async def eval(self, *a, **kw):              # the ledger's reservations are store scripts
        raise ConnectionError("redis is down")


def model_flow(body: dict, path="/chat/completions"):
    f = tflow.tflow(req=tutils.treq(method=b"POST", path=b"/v1" + path.encode(), content=orjson.dumps(body),
                                    headers=((b"content-type", b"application/json"),)))
    f.metadata[flowmeta.ROUTE] = Route("gateway", "openai", "openai", path)
    f.metadata[flowmeta.IDENTITY] = Identity("tok1", "acme", subject="alice")
    f.client_conn.timestamp_end = None          # the client is still connected
    return f


async def admit(gw, f):
    """The gateway's request hook as the chain runs it: awaited only when it returns an awaitable."""
    res = gw.request(f)
    if res is not None:
        await res


def runtime(store, budgets=()):
    return Runtime(Config(), store, Audit(), Policy(Engine(budgets)))


async def test_admission_failure_fails_closed(tmp_path):
    rt = runtime(BrokenStore(), [Budget("b", "account", "day", None, 1000, True, {})])
    rt.config.data_dir = str(tmp_path)
    gw = Gateway(rt)
    with taddons.context(gw):
        f = model_flow({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
        await admit(gw, f)
    assert f.response is not None and f.response.status_code == 500
    assert orjson.loads(f.response.content)["error"]["code"] == "gateway_error"


async def test_non_model_flows_are_not_touched(tmp_path):
    rt = runtime(MemoryStore())
    rt.config.data_dir = str(tmp_path)
    gw, meter = Gateway(rt), Metering(rt)
    f = tflow.tflow(resp=True)
    f.metadata[flowmeta.ROUTE] = Route("gateway", "mcp", "github", "/")
    await admit(gw, f)
    meter.responseheaders(f)
    meter.response(f)
    assert CALL not in f.metadata and flowmeta.USAGE not in f.metadata and not rt.audit.rows


def test_without_limits_admission_is_decided_without_a_coroutine(tmp_path):
    rt = runtime(MemoryStore())
    rt.config.data_dir = str(tmp_path)
    gw = Gateway(rt)
    f = model_flow({"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    assert gw.request(f) is None and f.response is None
    call = f.metadata[CALL]
    assert (call.model, call.stream, call.admission, call.pending_body["model"]) == ("gpt-4o-mini", True, None,
                                                                                     "gpt-4o-mini")
    # a Chat stream still asks the upstream for its usage
    assert orjson.loads(f.request.content)["stream_options"] == {"include_usage": True}
    refused = model_flow({"messages": []})
    assert gw.request(refused) is None and refused.response.status_code == 400


async def test_json_answer_settled_and_row_emitted(tmp_path):
    rt = runtime(MemoryStore(), [Budget("b", "subject", "day", None, 10_000, True, {})])
    rt.config.data_dir = str(tmp_path)
    gw, meter = Gateway(rt), Metering(rt)
    with taddons.context(gw, meter):
        f = model_flow({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
        await admit(gw, f)
        assert f.response is None and orjson.loads(f.request.content)["max_tokens"] > 0
        f.response = tutils.tresp(content=orjson.dumps({"model": "gpt-4o-mini", "usage": {
            "prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}}))
        meter.response(f)
        await meter.done()
    row = f.metadata[flowmeta.USAGE]
    assert (row["status"], row["input_tokens"], row["output_tokens"], row["usage_source"]) == ("ok", 9, 4, "provider")
    assert row["cost_usd"] == round(9 * 0.15e-6 + 4 * 0.6e-6, 9)
    assert not [k for k, _ in rt.audit.rows if k == "usage"]   # the call's request row carries the usage
    fields = request_fields(f)
    assert (fields["usage_status"], fields["tokens_in"], fields["tokens_out"], fields["usage_source"]) == \
        ("ok", 9, 4, "provider")
    assert fields["cost"] == row["cost_usd"] and fields["api"] == "chat"
    assert "tok1" not in str(row)                     # the token id never reaches the row
    assert float(await rt.store.get(next(iter(await rt.store.scan("budget:b:alice"))))) == 13


async def test_reservation_released_when_the_client_left_during_admission(tmp_path):
    rt = runtime(MemoryStore(), [Budget("b", "subject", "day", None, 10_000, True, {})])
    rt.config.data_dir = str(tmp_path)
    gw = Gateway(rt)
    f = model_flow({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    f.client_conn.timestamp_end = 1.0
    await admit(gw, f)
    assert f.metadata[CALL].admission is None
    assert [float(await rt.store.get(k)) for k in await rt.store.scan("budget:")] == [0.0]
    # not forwarded: the provider would bill a call that no reservation covers
    assert f.error is not None and f.metadata[flowmeta.OUTCOME] == "client_disconnected"
