"""Helpers shared by the MCP firewall tests."""
from __future__ import annotations

import orjson
from mitmproxy.test import tflow, tutils

from proxy import flowmeta
from proxy.flowmeta import Identity, Route


def mkflow(body, method="POST", path="/mcp", headers=None, listener="gateway"):
    req = tutils.treq(method=method.encode(), path=path.encode(), host="127.0.0.1", port=9,
                      content=body if isinstance(body, bytes) else orjson.dumps(body))
    for k, v in (headers or {}).items():
        req.headers[k] = v
    f = tflow.tflow(req=req)
    f.metadata[flowmeta.ROUTE] = Route(listener, "mcp", "srv", "/", "http://127.0.0.1:9/mcp")
    f.metadata[flowmeta.IDENTITY] = Identity("tok1", "acme", subject="alice", agent="claude")
    return f


def call(name, args, rid=1):
    return {"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": {"name": name, "arguments": args}}
