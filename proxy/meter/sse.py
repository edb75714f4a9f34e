"""Incremental Server-Sent Events splitter that keeps the bytes exact.

``SSESplitter.feed(chunk)`` takes arbitrary network chunks and returns the
complete events they finish, each with its original bytes (``raw``), so a
proxy can forward exactly what the upstream sent, event by event, and stop at
an event boundary. Partial events (and partial UTF-8 sequences inside them)
stay buffered until their blank line arrives; ``flush()`` returns what is left
at end of stream (some recordings end without a final blank line).
"""
from __future__ import annotations

from dataclasses import dataclass

import orjson

# Blank-line terminators the SSE spec allows; "\n\n" is by far the most common.
_TERMINATORS = (b"\r\n\r\n", b"\n\n", b"\r\r")


@dataclass(slots=True)
class Event:
    raw: bytes                 # the exact bytes, terminator included
    event: str | None = None   # the `event:` field, None when absent
    data: bytes = b""          # the `data:` lines joined with "\n"
    comment: bool = False      # only comment lines (": keep-alive")


def parse_event(raw: bytes) -> Event:
    """Fields of one event (the WHATWG rules: optional space after the colon)."""
    # fast path: one "data: ..." line, the shape of nearly every Chat and Anthropic delta
    if raw[:6] == b"data: " and raw.find(b"\n", 6) == len(raw) - 2 and b"\r" not in raw:
        return Event(raw, None, raw[6:-2])
    if raw[:7] == b"event: " and b"\r" not in raw:
        nl = raw.find(b"\n", 7)
        if raw[nl + 1:nl + 7] == b"data: " and raw.find(b"\n", nl + 7) == len(raw) - 2:
            return Event(raw, raw[7:nl].decode("utf-8", "replace"), raw[nl + 7:-2])
    name: str | None = None
    data: list[bytes] = []
    has_field = False
    for line in raw.splitlines():
        if not line:
            continue
        if line[0] == 58:  # ":" comment
            continue
        has_field = True
        field, sep, value = line.partition(b":")
        if sep and value[:1] == b" ":
            value = value[1:]
        if field == b"data":
            data.append(value)
        elif field == b"event":
            name = value.decode("utf-8", "replace")
    return Event(raw, name, b"\n".join(data), comment=not has_field)


def json_object(ev: Event) -> dict | None:
    """The event's data as a JSON object, or None (no data, not JSON, or not an object).
    The one place the per-API parsers decode an event's payload."""
    if not ev.data:
        return None
    try:
        obj = orjson.loads(ev.data)
    except orjson.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None


class SSESplitter:
    """Split a byte stream into events without touching the bytes."""

    __slots__ = ("_buf", "_cr")

    def __init__(self) -> None:
        self._buf = b""
        self._cr = False     # seen a "\r" at all: then look for every terminator

    def feed(self, chunk: bytes) -> list[Event]:
        buf = self._buf + chunk if self._buf else chunk
        if not self._cr and b"\r" in chunk:
            self._cr = True
        if not self._cr and buf is chunk and chunk[-2:] == b"\n\n" and chunk.find(b"\n\n") == len(chunk) - 2:
            return [parse_event(chunk)]          # fast path: exactly one whole event
        events: list[Event] = []
        start = 0
        if not self._cr:
            while True:
                end = buf.find(b"\n\n", start)
                if end < 0:
                    break
                end += 2
                events.append(parse_event(buf[start:end]))
                start = end
        else:
            while True:
                best, blen = -1, 0
                for term in _TERMINATORS:
                    i = buf.find(term, start)
                    if i >= 0 and (best < 0 or i < best):
                        best, blen = i, len(term)
                if best < 0:
                    break
                end = best + blen
                # "\r\n\r\n" found later than a "\n\n"? the earliest wins, handled by min above
                events.append(parse_event(buf[start:end]))
                start = end
        self._buf = buf[start:] if start else buf
        return events

    def flush(self) -> list[Event]:
        """The last event when the stream ended without a blank line."""
        rest, self._buf = self._buf, b""
        if not rest:
            return []
        if not rest.strip():
            return [Event(rest, comment=True)]
        return [parse_event(rest)]

    def pending_bytes(self) -> bytes:
        """Bytes received but not yet returned as an event."""
        return self._buf
