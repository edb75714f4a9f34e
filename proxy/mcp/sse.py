"""Server-sent events on MCP flows: incremental parsing, per-event rewriting, legacy sessions.

``SseRewriter`` is what the addon sets as ``flow.response.stream``: mitmproxy calls it
with each chunk from upstream and once with ``b""`` at the end; it returns a *list* of
chunks (``[]`` to send nothing: an empty chunk would end a chunked body). Complete
events are passed to ``transform(event) -> bytes | None`` (None keeps the raw bytes);
the partial tail waits for the next chunk, so no event is ever split or dropped.

Legacy HTTP+SSE (2024-11-05): the GET stream's first event ``endpoint`` names the
POST URL with the session id; every result travels on that GET stream (``tags.py`` says
how the POST side tells the stream side what to rewrite).
"""
from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

log = logging.getLogger("airlock.mcp")
_BOUNDARY = re.compile(rb"\r\n\r\n|\n\n|\r\r")
MAX_EVENT_BYTES = 16 * 1024 * 1024          # a single event larger than this is passed through unparsed


@dataclass(slots=True)
class Event:
    raw: bytes                      # the event block including its terminating blank line
    event: str = "message"
    data: str = ""
    id: str | None = None

    def json(self) -> Any:
        if not self.data:
            return None
        try:
            return orjson.loads(self.data)
        except orjson.JSONDecodeError:
            return None


def parse_block(block: bytes, raw: bytes) -> Event:
    ev = Event(raw)
    data: list[str] = []
    for line in re.split(rb"\r\n|\n|\r", block):
        if not line or line.startswith(b":"):
            continue
        name, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        text = value.decode("utf-8", "replace")
        if name == b"data":
            data.append(text)
        elif name == b"event":
            ev.event = text
        elif name == b"id":
            ev.id = text
    ev.data = "\n".join(data)
    return ev


def encode(data: Any, event: str = "message", event_id: str | None = None) -> bytes:
    """One SSE event carrying ``data`` as compact JSON (never contains a newline)."""
    head = f"event: {event}\n" + (f"id: {event_id}\n" if event_id is not None else "")
    return head.encode() + b"data: " + orjson.dumps(data) + b"\n\n"


class SseRewriter:
    """A ``flow.response.stream`` callable that rewrites whole events."""

    __slots__ = ("transform", "tail", "buf", "passthrough")

    def __init__(self, transform: Callable[[Event], bytes | None],
                 tail: Callable[[], list[bytes]] | None = None):
        self.transform, self.tail = transform, tail
        self.buf = b""
        self.passthrough = False       # set by the transform when nothing more can need rewriting

    def __call__(self, chunk: bytes) -> list[bytes]:
        if self.passthrough and not self.buf:
            return [chunk] if chunk else (self.tail() if self.tail else [])
        if not chunk:                                    # end of stream
            out = [self.buf] if self.buf else []
            self.buf = b""
            if self.tail:
                out.extend(self.tail())
            return out
        self.buf += chunk
        out: list[bytes] = []
        pos = 0
        while True:
            m = _BOUNDARY.search(self.buf, pos)
            if not m:
                break
            raw = self.buf[pos:m.end()]
            ev = parse_block(self.buf[pos:m.start()], raw)
            try:
                new = self.transform(ev)
            except Exception:                            # never break the stream on our own bug
                log.exception("SSE event transform failed; event passed through unchanged")
                new = None
            out.append(raw if new is None else new)
            pos = m.end()
        self.buf = self.buf[pos:]
        if len(self.buf) > MAX_EVENT_BYTES:              # pathological event: stop buffering it
            out.append(self.buf)
            self.buf = b""
        return out


# -- legacy HTTP+SSE ----------------------------------------------------------------------

def session_id_of(url_or_query: str) -> str | None:
    """The legacy session id in an endpoint URL or a request query (``session_id``/``sessionId``)."""
    query = urlsplit(url_or_query).query if ("?" in url_or_query or "://" in url_or_query) else url_or_query
    q = parse_qs(query)
    for k in ("session_id", "sessionId"):
        if q.get(k):
            return q[k][0]
    return None


def map_endpoint(endpoint: str, upstream_origin: str, server: str) -> str:
    """Rewrite the ``endpoint`` event's URL so the client POSTs through the gateway.

    The server names a path on its own origin (``/messages/?session_id=...``, relative or
    absolute); the gateway serves that origin's paths under ``/mcp/<server>/~/``. An
    absolute URL on another origin is returned unchanged.
    """
    ep = urlsplit(endpoint.strip())
    if ep.netloc and ep.netloc != urlsplit(upstream_origin).netloc:
        return endpoint
    path = ep.path if ep.path.startswith("/") else "/" + ep.path
    return f"/mcp/{server}/~{path}" + (f"?{ep.query}" if ep.query else "")
