"""A real MCP server (the official SDK's MCPServer) that onboarded agent entries point at.

Usage: python mcp_upstream.py stdio
       python mcp_upstream.py http PORT
"""
from __future__ import annotations

import sys

from mcp.server.mcpserver import MCPServer

server = MCPServer("discover-upstream")


@server.tool()
def echo(text: str) -> str:
    """Echo text back."""
    return f"echo: {text}"


@server.tool()
def delete_repo(name: str) -> str:
    """Delete a repository (the test policy denies it)."""
    return f"deleted {name}"


def main() -> None:
    if sys.argv[1] == "stdio":
        server.run("stdio")
        return
    import uvicorn
    uvicorn.run(server.streamable_http_app(host="127.0.0.1"), host="127.0.0.1", port=int(sys.argv[2]),
                log_level="warning")


if __name__ == "__main__":
    main()
