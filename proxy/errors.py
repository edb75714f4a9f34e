"""Errors answered by Airlock itself, in the shape the caller's SDK understands.

One home for the three shapes: OpenAI ``{"error": {...}}``, Anthropic
``{"type": "error", "error": {...}}`` and JSON-RPC for MCP. Every addon that
refuses a request builds its response here.
"""
from __future__ import annotations

from typing import Any

import orjson
from mitmproxy import http

JSON_HEADERS = {"content-type": "application/json"}

# HTTP status -> (OpenAI error type, Anthropic error type)
_TYPES = {
    400: ("invalid_request_error", "invalid_request_error"),
    401: ("authentication_error", "authentication_error"),
    403: ("permission_error", "permission_error"),
    404: ("not_found_error", "not_found_error"),
    413: ("invalid_request_error", "request_too_large"),
    429: ("rate_limit_error", "rate_limit_error"),
    500: ("server_error", "api_error"),
    502: ("upstream_error", "api_error"),
    503: ("server_error", "overloaded_error"),
    504: ("timeout_error", "timeout_error"),
}

# JSON-RPC codes used by Airlock
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INTERNAL_ERROR = -32603
UNAUTHORIZED = -32001


def body(kind: str, status: int, message: str, code: str | None = None,
         rpc_id: Any = None, rpc_code: int | None = None) -> dict[str, Any]:
    """The JSON error body for a route kind ("openai", "anthropic", "mcp", other)."""
    oa_type, an_type = _TYPES.get(status, ("api_error", "api_error"))
    if kind == "anthropic":
        return {"type": "error", "error": {"type": an_type, "message": message}}
    if kind == "mcp":
        err: dict[str, Any] = {"code": rpc_code if rpc_code is not None else _rpc_code(status),
                               "message": message}
        if code:
            err["data"] = {"airlock": code}
        return {"jsonrpc": "2.0", "id": rpc_id, "error": err}
    return {"error": {"message": message, "type": oa_type, "param": None, "code": code}}


def _rpc_code(status: int) -> int:
    if status == 401:
        return UNAUTHORIZED
    if status in (400, 413):
        return INVALID_REQUEST
    return INTERNAL_ERROR


def response(kind: str, status: int, message: str, code: str | None = None,
             headers: dict[str, str] | None = None, rpc_id: Any = None,
             rpc_code: int | None = None) -> http.Response:
    """A complete mitmproxy response carrying the error body."""
    hdrs = dict(JSON_HEADERS)
    if headers:
        hdrs.update(headers)
    payload = body(kind, status, message, code, rpc_id, rpc_code)
    # JSON-RPC errors travel with HTTP 200 except for auth, so MCP clients show the message.
    http_status = status if kind != "mcp" or status in (401, 404, 413) else 200
    return http.Response.make(http_status, orjson.dumps(payload), hdrs)
