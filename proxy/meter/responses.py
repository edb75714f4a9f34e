"""OpenAI Responses API stream parser (``response.*`` events, no [DONE]).

Usage only arrives in the terminal event (completed / incomplete / failed).
Keeps the open output items and content parts so a budget cut can close them
in order before ``response.incomplete``.
"""
from __future__ import annotations


from .sse import Event, json_object
from .usage import Usage, from_openai

_TEXT_DELTAS = frozenset({
    "response.output_text.delta", "response.refusal.delta", "response.function_call_arguments.delta",
    "response.reasoning_summary_text.delta", "response.reasoning_text.delta",
    "response.custom_tool_call_input.delta", "response.audio.transcript.delta",
})
_TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
FUNCTION_CALL_FRAMING = 10


class ResponsesParser:
    api = "responses"
    __slots__ = ("usage", "model", "id", "response", "items", "parts", "texts", "seq", "done", "error",
                 "drop", "extra", "status")

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.model: str | None = None
        self.id: str | None = None
        self.response: dict | None = None        # the response object of response.created
        self.items: dict[int, dict] = {}         # output_index -> item (open ones)
        self.parts: dict[tuple[int, int], dict] = {}   # (output_index, content_index) -> part (open)
        self.texts: dict[tuple[int, int], str] = {}    # text streamed into each open part
        self.seq: int | None = None              # last sequence_number, if the stream numbers events
        self.done = False
        self.error: dict | None = None
        self.drop = False
        self.extra = 0
        self.status: str | None = None

    deferrable = None    # every event is parsed at once

    def on_event(self, ev: Event) -> str:
        obj = json_object(ev)
        if obj is None:
            return ""
        seq = obj.get("sequence_number")
        if isinstance(seq, int):
            self.seq = seq
        kind = obj.get("type") or ev.event
        if kind in _TEXT_DELTAS:
            piece = obj.get("delta")
            if not isinstance(piece, str):
                return ""
            if kind == "response.output_text.delta":
                key = (obj.get("output_index", 0), obj.get("content_index", 0))
                if key in self.texts:
                    self.texts[key] += piece
            return piece
        if kind == "response.output_item.added":
            item = obj.get("item")
            if isinstance(item, dict):
                self.items[obj.get("output_index", 0)] = item
                if item.get("type") == "function_call":
                    self.extra += FUNCTION_CALL_FRAMING
        elif kind == "response.output_item.done":
            self.items.pop(obj.get("output_index", 0), None)
        elif kind == "response.content_part.added":
            key = (obj.get("output_index", 0), obj.get("content_index", 0))
            part = obj.get("part")
            self.parts[key] = part if isinstance(part, dict) else {"type": "output_text", "text": ""}
            self.texts[key] = ""
        elif kind == "response.content_part.done":
            key = (obj.get("output_index", 0), obj.get("content_index", 0))
            self.parts.pop(key, None)
            self.texts.pop(key, None)
        elif kind in ("response.created", "response.in_progress", "response.queued"):
            resp = obj.get("response")
            if isinstance(resp, dict):
                self.response = resp
                self.id, self.model = resp.get("id"), resp.get("model")
        elif kind in _TERMINAL:
            self.done = True
            resp = obj.get("response")
            if isinstance(resp, dict):
                self.status = resp.get("status")
                self.usage = from_openai(resp.get("usage")) or self.usage
                self.model = resp.get("model") or self.model
                if kind == "response.failed" and resp.get("error"):
                    self.error = resp["error"] if isinstance(resp["error"], dict) else {"message": str(resp["error"])}
        elif kind == "error":
            self.error = {"message": obj.get("message"), "code": obj.get("code")}
        return ""

    @property
    def finished(self) -> bool:
        return self.done or self.error is not None
