"""What addons share about a flow, kept in ``flow.metadata`` under these keys.

Addons never import each other; they read and write these keys instead. The
request body is parsed once per flow (``request_json``) and the result shared.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

IDENTITY = "airlock.identity"   # Identity of the caller (set by addons.identity)
ROUTE = "airlock.route"         # Route (set by addons.routing)
JSON = "airlock.json"           # parsed request body, or _INVALID
DECISION = "airlock.decision"   # policy decision for an MCP tool call (addons.mcp)
USAGE = "airlock.usage"         # metering result for a model call (addons.metering)
OUTCOME = "airlock.outcome"     # short text saying why Airlock answered itself (deny, 401, ...)
STARTED = "airlock.started"     # perf_counter() when the request was complete
HEADERS = "airlock.headers"     # the client's request headers as a lowercase dict (first value wins)

_INVALID = object()


@dataclass(frozen=True, slots=True)
class Identity:
    token_id: str
    account: str
    flow: str | None = None
    subject: str | None = None
    agent: str | None = None
    session: str | None = None
    expires_at: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"token_id": self.token_id, "account": self.account, "flow": self.flow,
                "subject": self.subject, "agent": self.agent, "session": self.session}


@dataclass(slots=True)
class Route:
    listener: str          # "gateway" | "proxy" | "sidecar"
    kind: str              # "openai" | "anthropic" | "mcp" | "other"
    name: str              # provider name or MCP server name ("" for other)
    path: str              # path below the route prefix, without the query string
    upstream: str = ""     # base URL the flow is sent to
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def governed(self) -> bool:
        return self.kind != "other"


def request_json(flow) -> Any | None:
    """The request body parsed as JSON once per flow; None if empty or not JSON."""
    cached = flow.metadata.get(JSON, None)
    if cached is not None:
        return None if cached is _INVALID else cached
    raw = flow.request.raw_content or b""
    try:
        value = orjson.loads(flow.request.get_content(strict=False) or b"") if raw else _INVALID
    except (orjson.JSONDecodeError, ValueError, UnicodeDecodeError):
        value = _INVALID
    flow.metadata[JSON] = value
    return None if value is _INVALID else value


def forget_request_json(flow) -> None:
    """Drop the parsed body ``request_json`` cached (it parses the body again when next asked): a call
    held for approval need not keep it. The body itself is in step (``set_request_json``)."""
    flow.metadata.pop(JSON, None)


def headers(flow) -> dict[str, str]:
    """The client's request headers, lower-cased, built in one pass and cached per flow.

    mitmproxy's ``Headers.get`` scans every field with a case fold on each call; addons
    that look up several headers per request read this map instead. It reflects the
    headers as the client sent them (later edits by addons are not seen here)."""
    cached = flow.metadata.get(HEADERS)
    if cached is None:
        cached = {}
        for k, v in flow.request.headers.fields:
            key = k.decode("latin-1").lower()
            if key not in cached:
                cached[key] = v.decode("utf-8", "surrogateescape")
        flow.metadata[HEADERS] = cached
    return cached


def set_request_json(flow, value: Any) -> None:
    """Replace the request body with ``value`` (serialised) and keep the cache in step."""
    flow.request.content = orjson.dumps(value)
    flow.metadata[JSON] = value


def identity(flow) -> Identity | None:
    return flow.metadata.get(IDENTITY)


def route(flow) -> Route | None:
    return flow.metadata.get(ROUTE)
