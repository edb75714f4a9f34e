"""A real MCP server (the official SDK's MCPServer, Streamable HTTP) for the approvals tests.

Usage: python mcp_upstream.py PORT RECORD_FILE [json]
Each tools/call it runs is appended to RECORD_FILE as one JSON line, so tests can
assert what the upstream ran (a held or denied call must never show up; an approved
async call exactly once).
"""
from __future__ import annotations

import json
import sys

from mcp.server.mcpserver import MCPServer

server = MCPServer("approvals-test-server")
RECORD = sys.argv[2] if len(sys.argv) > 2 else None


def _record(tool: str, args: dict) -> None:
    if RECORD:
        with open(RECORD, "a") as f:
            f.write(json.dumps({"tool": tool, "args": args}) + "\n")


@server.tool()
def deploy(env: str) -> str:
    """Deploy the service to an environment."""
    _record("deploy", {"env": env})
    return f"deployed to {env}"


@server.tool()
def drop_table(name: str) -> str:
    """Drop a database table."""
    _record("drop_table", {"name": name})
    return f"dropped {name}"


@server.tool()
def echo(text: str) -> str:
    """Echo text back."""
    _record("echo", {"text": text})
    return text


if __name__ == "__main__":
    server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[1]),
               **({"json_response": True} if sys.argv[3:] == ["json"] else {}))
