"""A held call in the addon chain: intercepted while held, the addons after approvals see the request
once, after the decision; denied, cancelled and shut-down holds are answered and resumed."""
from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import pytest
from mitmproxy.test import tflow

from addons.approvals import Approvals
from proxy import flowmeta, mitm_hooks, mitm_patches
from proxy.approvals.gate import FORWARDED, HELD, MCP_CALL
from proxy.chain import AddonChain
from proxy.config import from_dict
from proxy.policy import Workflow
from proxy.runtime import Runtime
from proxy.store.memory import MemoryStore

WF = Workflow(name="one", timeout_seconds=60)


class Later:
    """Two addons after approvals (as audit, metering, ... are): what each saw in its request hook.
    ``seen`` lists it once per flow when both saw the same."""

    def __init__(self):
        self.seen: list[tuple] = []
        self.second: list[tuple] = []

    def request(self, flow) -> None:
        self.seen.append((flow.metadata.get(FORWARDED), flow.response is not None))


class AlsoLater:
    def __init__(self, first: Later):
        self.first = first

    def request(self, flow) -> None:
        self.first.second.append((flow.metadata.get(FORWARDED), flow.response is not None))


@pytest.fixture(params=["stock", "lean"])
async def held(request, tmp_path, audit, monkeypatch):
    """(chain, approvals addon, later addon, make_flow); with mitmproxy's intercept as shipped and with
    Airlock's future-based one (mitm_hooks._lean_flow_resume)."""
    if request.param == "lean":
        from mitmproxy import flow as mflow
        for name in ("intercept", "resume", "wait_for_resume"):
            monkeypatch.setattr(mflow.Flow, name, getattr(mflow.Flow, name))   # restored after the test
        mitm_hooks._lean_flow_resume()
    rt = Runtime(config=from_dict({"data_dir": str(tmp_path)}), store=MemoryStore(), audit=audit,
                 policy=SimpleNamespace(engine=SimpleNamespace(workflows={"one": WF})))
    approvals, later = Approvals(rt), Later()
    chain = AddonChain([approvals, later, AlsoLater(later)])
    await approvals.running()

    def make_flow(n: int = 1):
        f = tflow.tflow(req=tflow.treq(method=b"POST", content=b'{"jsonrpc":"2.0","id":7}'))
        f.client_conn.timestamp_end = None
        f.metadata[flowmeta.ROUTE] = SimpleNamespace(kind="mcp", governed=True, name="up", path="/mcp")
        f.metadata[flowmeta.DECISION] = SimpleNamespace(action="require_approval", approval_workflow="one",
                                                        rule="r1", reason="needs a human")
        f.metadata[MCP_CALL] = {"rpc_id": 7, "tool": "deploy", "server": "up", "args": {"n": n},
                                "justification": None, "context": SimpleNamespace(agent="pytest", subject="dev")}
        return f
    yield chain, approvals, later, make_flow
    await approvals.done()
    assert later.second == later.seen


async def hold(chain, flow):
    """What mitmproxy does with the request hook: run it, then wait until the flow is resumed."""
    res = chain.request(flow)
    if res is not None:
        await res
    assert flow.intercepted and flow.response is None
    return asyncio.ensure_future(flow.wait_for_resume())


async def test_approved_call_reaches_later_addons_once_after_the_decision(held):
    chain, approvals, later, make_flow = held
    flow = make_flow()
    resumed = await hold(chain, flow)
    await asyncio.sleep(0)
    assert later.seen == [] and not resumed.done() and approvals.gate.service.waiting == 1
    vote = await approvals.gate.service.vote(flow.metadata[HELD], "alice", "approve")
    assert vote.state == "approved"
    await asyncio.wait_for(resumed, 5)
    assert later.seen == [(True, False)] and not flow.intercepted and flow.response is None
    assert approvals.gate.service.waiting == 0 and approvals.gate.by_client == {}


async def test_denied_call_is_answered_then_seen_once(held):
    chain, approvals, later, make_flow = held
    flow = make_flow()
    resumed = await hold(chain, flow)
    await approvals.gate.service.vote(flow.metadata[HELD], "alice", "deny", comment="not today")
    await asyncio.wait_for(resumed, 5)
    assert later.seen == [(None, True)]
    assert flow.metadata[flowmeta.OUTCOME] == "approval_denied"
    assert b"denied" in flow.response.content and b"not today" in flow.response.content


async def test_client_gone_cancels_and_resumes(held, audit):
    chain, approvals, later, make_flow = held
    flow = make_flow()
    resumed = await hold(chain, flow)
    rid = flow.metadata[HELD]
    flow.client_conn.timestamp_end = time.time()
    approvals.client_disconnected(flow.client_conn)
    await asyncio.wait_for(resumed, 5)
    assert flow.metadata[flowmeta.OUTCOME] == "approval_client_gone" and not flow.metadata.get(FORWARDED)
    assert (await approvals.gate.service.get(rid)).state == "cancelled"
    assert later.seen == [(None, False)]


async def test_decided_before_the_hook_returns_still_parks_then_resumes(held):
    """A decision that arrives while the hold registers (the store is read after listening)."""
    chain, approvals, later, make_flow = held
    gate = approvals.gate
    orig = gate.service.watch

    async def watch(rid, timeout, waiter):
        await gate.service.cancel(rid, "decided early")          # published before the state is read
        return await orig(rid, timeout, waiter)
    gate.service.watch = watch
    flow = make_flow()
    resumed = await hold(chain, flow)
    await asyncio.wait_for(resumed, 5)
    assert flow.metadata[flowmeta.OUTCOME] == "approval_cancelled" and later.seen == [(None, True)]


async def test_shutdown_denies_every_held_call(held):
    chain, approvals, later, make_flow = held
    flows = [make_flow(n) for n in range(3)]
    waits = [await hold(chain, f) for f in flows]
    await approvals.done()
    await asyncio.wait_for(asyncio.gather(*waits), 5)
    for f in flows:
        assert f.metadata[flowmeta.OUTCOME] == "approval_error" and b"shutting down" in f.response.content
    assert later.seen == [(None, True)] * 3


@pytest.mark.parametrize("intercepts", [True, False])
async def test_intercepted_hook_ends_its_task_and_the_resume_completes_it(monkeypatch, intercepts):
    """mitm_patches 5: the hook's task does not wait for an intercepted flow; resuming it completes the
    hook (HookCompleted, after the watchdog is armed again), as mitmproxy's waiting task did."""
    from mitmproxy import flow as mflow
    from mitmproxy.proxy.layers.http import HttpRequestHook
    from mitmproxy.proxy.mode_servers import ProxyConnectionHandler
    for name in ("intercept", "resume", "wait_for_resume"):
        monkeypatch.setattr(mflow.Flow, name, getattr(mflow.Flow, name))
    monkeypatch.setattr(ProxyConnectionHandler, "hook_task", ProxyConnectionHandler.hook_task)
    mitm_hooks._lean_flow_resume()
    f = tflow.tflow()
    seen: list[tuple] = []
    watchdog = mitm_patches._Watchdog(60, None)
    completed = asyncio.get_running_loop().create_future()

    async def handle_lifecycle(hook):
        seen.append(("addons", watchdog.blocker))
        if intercepts:
            hook.args()[0].intercept()

    async def server_event(event):
        seen.append((type(event).__name__, watchdog.blocker))
        completed.set_result(None)
    handler = SimpleNamespace(timeout_watchdog=watchdog, server_event=server_event,
                              master=SimpleNamespace(addons=SimpleNamespace(handle_lifecycle=handle_lifecycle)))
    await ProxyConnectionHandler.hook_task(handler, HttpRequestHook(f))
    if intercepts:
        assert seen == [("addons", 1)] and watchdog.blocker == 1        # task over, hook not completed
        f.resume()
    await asyncio.wait_for(completed, 5)
    assert seen == [("addons", 1), ("HookCompleted", 0)] and not f.intercepted
