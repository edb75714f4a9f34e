"""Anthropic Messages stream parser (message_start ... message_stop).

Usage: ``message_start.message.usage`` first, then each field from the last
``message_delta.usage`` (cumulative, never summed).
"""
from __future__ import annotations


from .sse import Event, json_object
from .usage import Usage, from_anthropic

TOOL_USE_FRAMING = 10
_DELTA = b'event: content_block_delta\ndata: {"type":"content_block_delta",'


class AnthropicParser:
    api = "anthropic"
    __slots__ = ("usage", "model", "id", "open_blocks", "started", "done", "error", "drop", "extra",
                 "stop_reason")

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.model: str | None = None
        self.id: str | None = None
        self.open_blocks: set[int] = set()
        self.started = False         # message_start forwarded
        self.done = False            # message_stop seen
        self.error: dict | None = None
        self.drop = False
        self.extra = 0
        self.stop_reason: str | None = None

    def deferrable(self, raw: bytes) -> bool:
        """Can this one whole event be parsed later, if ever? A ``content_block_delta``: only its
        text comes from it (blocks, usage and the end come in other events). A bytes check, no JSON."""
        return raw.startswith(_DELTA) and raw.find(b"\n\n") == len(raw) - 2

    def on_event(self, ev: Event) -> str:
        obj = json_object(ev)
        if obj is None:
            return ""
        kind = obj.get("type") or ev.event
        if kind == "content_block_delta":
            d = obj.get("delta")
            if isinstance(d, dict):
                for key in ("text", "partial_json", "thinking"):
                    piece = d.get(key)
                    if isinstance(piece, str):
                        return piece
            return ""
        if kind == "content_block_start":
            idx = obj.get("index", 0)
            self.open_blocks.add(idx)
            block = obj.get("content_block")
            if isinstance(block, dict) and block.get("type") in ("tool_use", "server_tool_use"):
                self.extra += TOOL_USE_FRAMING
        elif kind == "content_block_stop":
            self.open_blocks.discard(obj.get("index", 0))
        elif kind == "message_start":
            msg = obj.get("message")
            if isinstance(msg, dict):
                self.started = True
                self.model, self.id = msg.get("model"), msg.get("id")
                self.usage = from_anthropic(msg.get("usage"), self.usage)
        elif kind == "message_delta":
            self.usage = from_anthropic(obj.get("usage"), self.usage)
            d = obj.get("delta")
            if isinstance(d, dict) and d.get("stop_reason"):
                self.stop_reason = d["stop_reason"]
        elif kind == "message_stop":
            self.done = True
        elif kind == "error":
            err = obj.get("error")
            self.error = err if isinstance(err, dict) else {"message": str(err)}
        return ""

    @property
    def finished(self) -> bool:
        return self.done or self.error is not None
