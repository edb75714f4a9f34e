"""JSON-RPC 2.0 as MCP uses it: strict parsing of one POST body into messages.

A body is one message or (2025-03-26 and TS servers) a batch array. Parsing never
raises: the outcome is a ``Parsed`` whose ``error`` is set for a body that cannot be
handled at all (-32700 parse error, -32600 invalid request) and whose messages each
carry their own ``error`` when one element of a batch is invalid.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

MODERN = "2026-07-28"     # first stateless protocol version: results carry "resultType"
MAX_DEPTH = 64            # nesting of tools/call arguments (CEL and redaction walk them)
MAX_BATCH = 256           # elements in one batch
_ID_TYPES = (str, int)


@dataclass(slots=True)
class Message:
    """One element of a body. ``kind``: request | notification | response | invalid."""

    kind: str
    raw: Any
    id: Any = None
    method: str | None = None
    params: Any = None
    error: tuple[int, str] | None = None   # why the element is invalid

    @property
    def is_call(self) -> bool:
        return self.kind == "request" and self.method == "tools/call"


@dataclass(slots=True)
class Parsed:
    messages: list[Message] = field(default_factory=list)
    batch: bool = False
    error: tuple[int, str] | None = None   # the body as a whole is unusable


def loads(raw: bytes | str) -> tuple[Any, tuple[int, str] | None]:
    """``orjson.loads`` that reports instead of raising (invalid UTF-8 is a parse error)."""
    try:
        return orjson.loads(raw), None
    except (orjson.JSONDecodeError, ValueError, TypeError, RecursionError) as e:
        return None, (PARSE_ERROR, f"Parse error: body is not valid JSON ({_short(e)})")


def _short(e: Exception) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text[:160]


def classify(obj: Any) -> Message:
    """Validate one decoded JSON-RPC message."""
    if not isinstance(obj, dict):
        return Message("invalid", obj, error=(INVALID_REQUEST, "Invalid Request: a message must be a JSON object"))
    if obj.get("jsonrpc") != "2.0":
        return Message("invalid", obj, id=_safe_id(obj),
                       error=(INVALID_REQUEST, 'Invalid Request: "jsonrpc" must be "2.0"'))
    has_id = "id" in obj
    rid = obj.get("id")
    if has_id and (isinstance(rid, bool) or not isinstance(rid, _ID_TYPES)):
        if not ("method" not in obj and rid is None and "error" in obj):   # error responses may carry id null
            return Message("invalid", obj,
                           error=(INVALID_REQUEST, 'Invalid Request: "id" must be a string or an integer'))
    if "method" in obj:
        method = obj["method"]
        if not isinstance(method, str) or not method:
            return Message("invalid", obj, id=_safe_id(obj),
                           error=(INVALID_REQUEST, 'Invalid Request: "method" must be a non-empty string'))
        params = obj.get("params")
        if params is not None and not isinstance(params, (dict, list)):
            return Message("invalid", obj, id=_safe_id(obj),
                           error=(INVALID_REQUEST, 'Invalid Request: "params" must be an object or an array'))
        return Message("request" if has_id else "notification", obj, rid, method, params)
    if has_id and (("result" in obj) != ("error" in obj)):
        return Message("response", obj, rid)
    return Message("invalid", obj, id=_safe_id(obj),
                   error=(INVALID_REQUEST, 'Invalid Request: needs "method", or exactly one of "result"/"error"'))


def _safe_id(obj: dict) -> Any:
    rid = obj.get("id")
    return rid if isinstance(rid, _ID_TYPES) and not isinstance(rid, bool) else None


def parse_value(value: Any) -> Parsed:
    """Messages of an already decoded body."""
    if isinstance(value, list):
        if not value:
            return Parsed(batch=True, error=(INVALID_REQUEST, "Invalid Request: empty batch"))
        if len(value) > MAX_BATCH:
            return Parsed(batch=True, error=(INVALID_REQUEST,
                                             f"Invalid Request: batch of {len(value)} messages (limit {MAX_BATCH})"))
        return Parsed([classify(v) for v in value], batch=True)
    msg = classify(value)
    if msg.kind == "invalid":
        return Parsed([msg], error=msg.error)
    return Parsed([msg])


def parse(raw: bytes | str) -> Parsed:
    """Parse a body (bytes) into messages; never raises."""
    if not raw:
        return Parsed(error=(INVALID_REQUEST, "Invalid Request: empty body"))
    value, err = loads(raw)
    if err:
        return Parsed(error=err)
    return parse_value(value)


def depth_exceeds(value: Any, limit: int = MAX_DEPTH) -> bool:
    """True if containers nest deeper than ``limit`` (iterative: no recursion limit)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            if d > limit:
                return True
            stack.extend((x, d + 1) for x in v.values() if isinstance(x, (dict, list)))
        elif isinstance(v, list):
            if d > limit:
                return True
            stack.extend((x, d + 1) for x in v if isinstance(x, (dict, list)))
    return False


def call_params(msg: Message) -> tuple[str, dict] | tuple[None, str]:
    """``(tool name, arguments)`` of a tools/call, or ``(None, problem)``."""
    p = msg.params
    if not isinstance(p, dict):
        return None, 'tools/call needs "params" with "name"'
    name = p.get("name")
    if not isinstance(name, str) or not name:
        return None, 'tools/call needs "params.name" (the tool name)'
    args = p.get("arguments")
    if args is None:
        args = {}
    if not isinstance(args, dict):
        return None, '"params.arguments" must be an object'
    if depth_exceeds(args):
        return None, f'"params.arguments" nests deeper than {MAX_DEPTH} levels'
    return name, args


def is_modern(msg: Message) -> bool:
    """2026-07-28+ requests name their version in ``params._meta`` (their results need resultType)."""
    meta = msg.params.get("_meta") if isinstance(msg.params, dict) else None
    version = meta.get("io.modelcontextprotocol/protocolVersion") if isinstance(meta, dict) else None
    return isinstance(version, str) and version >= MODERN


def error(rpc_id: Any, code: int, message: str, data: Any = None) -> dict:
    err: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        err["data"] = data
    return {"jsonrpc": "2.0", "id": rpc_id, "error": err}


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)
