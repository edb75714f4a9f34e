"""The approvals admin API and link pages, served by aiohttp over a real in-process store."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from proxy.admin import approvals as admin_approvals
from proxy.approvals.gate import Gate
from proxy.config import from_dict
from proxy.policy import Workflow
from proxy.runtime import Runtime
from proxy.store.memory import MemoryStore

WF = Workflow(name="two", timeout_seconds=60, required_approvals=2, approvers=("alice", "bob"))


@pytest.fixture
async def api(tmp_path, audit):
    cfg = from_dict({"data_dir": str(tmp_path)})
    rt = Runtime(config=cfg, store=MemoryStore(), audit=audit,
                 policy=SimpleNamespace(engine=SimpleNamespace(workflows={"two": WF})))
    gate = Gate(rt)
    rt.services["approvals"] = gate
    app = web.Application()
    app.add_routes(admin_approvals.routes(rt))
    client = TestClient(TestServer(app))
    await client.start_server()
    await gate.ready()
    yield client, gate
    await client.close()
    await gate.close()


async def test_api_decides_and_refuses_clearly(api):
    client, gate = api
    req = await gate.service.create(tool="deploy", server="ops", workflow=WF, subject="dev", arguments={"env": "p"})
    r = await client.get("/v1/approvals")
    assert [a["id"] for a in (await r.json())["approvals"]] == [req.id]
    assert (await client.get("/v1/approvals?state=bogus")).status == 400
    assert (await client.get("/v1/approvals/apr_missing")).status == 404
    assert (await client.post(f"/v1/approvals/{req.id}/approve", json={})).status == 400
    assert (await client.post(f"/v1/approvals/{req.id}/approve", json={"approver": "mallory"})).status == 403
    assert (await client.post(f"/v1/approvals/{req.id}/approve", data=b"{not json",
                              headers={"content-type": "application/json"})).status == 400
    r = await client.post(f"/v1/approvals/{req.id}/approve", json={"approver": "alice", "comment": "ok"})
    body = await r.json()
    assert r.status == 200 and body["result"] == "recorded" and body["state"] == "pending"
    r = await client.post(f"/v1/approvals/{req.id}/approve", json={"approver": "alice"})
    assert r.status == 409 and "already voted" in (await r.json())["error"]["message"]
    r = await client.post(f"/v1/approvals/{req.id}/deny", json={"approver": "bob", "comment": "no"})
    assert (await r.json())["state"] == "denied"
    assert (await client.post(f"/v1/approvals/{req.id}/cancel", json={})).status == 409
    r = await client.get("/v1/approvals?state=denied")
    assert [a["id"] for a in (await r.json())["approvals"]] == [req.id]


async def test_link_get_never_decides_post_once(api):
    client, gate = api
    req = await gate.service.create(tool="deploy", server="ops", workflow=WF, subject="dev")
    url = gate.links.url(req.id, "approve", "alice", req.expires_at)
    path = url[url.index("/approvals/link/"):]
    for _ in range(3):                                            # previews, refreshes
        r = await client.get(path)
        assert r.status == 200 and "Approve this call?" in await r.text()
    assert (await gate.service.get(req.id)).state == "pending"
    r = await client.post(path, data={"comment": "from my phone"})
    assert r.status == 200 and "vote recorded" in await r.text()
    r = await client.post(path, data={})
    assert r.status == 409 and "already used" in await r.text()
    bad = path[:-4] + ("AAAA" if not path.endswith("AAAA") else "BBBB")
    assert (await client.get(bad)).status == 410
    # an unbound link asks for a name; a refused name gives the link back
    open_url = gate.links.url(req.id, "approve", None, req.expires_at)
    open_path = open_url[open_url.index("/approvals/link/"):]
    assert 'name="approver"' in await (await client.get(open_path)).text()
    assert (await client.post(open_path, data={})).status == 400
    assert (await client.post(open_path, data={"approver": "dev"})).status == 403      # own call
    r = await client.post(open_path, json={"user_name": "bob", "context": {}})           # a Mattermost button
    body = await r.json()
    assert body["ok"] and "approved" in body["ephemeral_text"]
    assert (await gate.service.get(req.id)).state == "approved"


async def test_page_is_served_without_data(api):
    client, _ = api
    r = await client.get("/approvals")
    text = await r.text()
    assert r.status == 200 and 'id="token"' in text and "viewport" in text
    assert r.headers["cache-control"] == "no-store"
