"""The events that end a stream properly when Airlock cuts it for budget.

Each function gets the parser of the stream (what was seen so far) and the
usage counted so far, and returns the bytes to send after the last forwarded
event, so every SDK sees a normal, well-formed end:

* Chat Completions: a ``finish_reason: "length"`` chunk per open choice, the
  usage chunk when the client asked for usage, then ``data: [DONE]``.
* Anthropic Messages: ``content_block_stop`` for open blocks, ``message_delta``
  with ``stop_reason: "max_tokens"`` and usage, ``message_stop``.
* Responses: ``*.done`` events for open parts and items, then
  ``response.incomplete`` (``incomplete_details.reason: "max_output_tokens"``).
"""
from __future__ import annotations

import time
from typing import Any

import orjson

from .usage import Usage

BUDGET_MESSAGE = "Airlock ended this response: the budget for this call was reached"


def _data(obj: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + orjson.dumps(obj) + b"\n\n"


def chat(p, usage: Usage, include_usage: bool, reason: str = "length") -> bytes:
    base = {"id": p.id or "chatcmpl-airlock", "object": "chat.completion.chunk",
            "created": p.created or int(time.time()), "model": p.model or ""}
    out = []
    open_idx = [i for i, is_open in p.open_choices.items() if is_open] or ([] if p.open_choices else [0])
    for idx in open_idx:
        out.append(_data({**base, "choices": [{"index": idx, "delta": {}, "logprobs": None,
                                                  "finish_reason": reason}]}))
    if include_usage:
        out.append(_data({**base, "choices": [], "usage": {
            "prompt_tokens": usage.input_tokens, "completion_tokens": usage.output_tokens,
            "total_tokens": usage.input_tokens + usage.output_tokens,
            "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens}}}))
    out.append(b"data: [DONE]\n\n")
    return b"".join(out)


def chat_error(message: str = BUDGET_MESSAGE, code: str = "budget_exceeded") -> bytes:
    return _data({"error": {"message": message, "type": "budget_exceeded", "param": None, "code": code}})


def anthropic(p, usage: Usage) -> bytes:
    if not p.started:
        return anthropic_error()
    out = [_data({"type": "content_block_stop", "index": i}, "content_block_stop")
           for i in sorted(p.open_blocks)]
    uncached = max(0, usage.input_tokens - usage.cached_tokens - usage.cache_write_tokens)
    out.append(_data({"type": "message_delta", "delta": {"stop_reason": "max_tokens", "stop_sequence": None},
                      "usage": {"input_tokens": uncached, "cache_creation_input_tokens": usage.cache_write_tokens,
                                "cache_read_input_tokens": usage.cached_tokens,
                                "output_tokens": usage.output_tokens}}, "message_delta"))
    out.append(_data({"type": "message_stop"}, "message_stop"))
    return b"".join(out)


def anthropic_error(message: str = BUDGET_MESSAGE) -> bytes:
    return _data({"type": "error", "error": {"type": "rate_limit_error", "message": message}}, "error")


def responses(p, usage: Usage) -> bytes:
    seq = [p.seq]

    def ev(obj: dict) -> bytes:
        if seq[0] is not None:
            seq[0] += 1
            obj["sequence_number"] = seq[0]
        return _data(obj, obj["type"])

    out: list[bytes] = []
    done_items: list[dict] = []
    for (oi, ci), part in sorted(p.parts.items()):
        item_id = (p.items.get(oi) or {}).get("id")
        text = p.texts.get((oi, ci), "")
        if part.get("type") == "output_text":
            out.append(ev({"type": "response.output_text.done", "item_id": item_id, "output_index": oi,
                           "content_index": ci, "text": text}))
        final_part = {**part, "text": text} if part.get("type") == "output_text" else part
        out.append(ev({"type": "response.content_part.done", "item_id": item_id, "output_index": oi,
                       "content_index": ci, "part": final_part}))
    for oi, item in sorted(p.items.items()):
        item = dict(item)
        item["status"] = "incomplete"
        if item.get("type") == "message":
            item["content"] = [{"type": "output_text", "text": t, "annotations": []}
                               for (o, _c), t in sorted(p.texts.items()) if o == oi]
        done_items.append(item)
        out.append(ev({"type": "response.output_item.done", "output_index": oi, "item": item}))
    resp = dict(p.response or {"id": p.id or "resp_airlock", "object": "response", "model": p.model or ""})
    resp["status"] = "incomplete"
    resp["incomplete_details"] = {"reason": "max_output_tokens"}
    resp["output"] = done_items
    resp["usage"] = {"input_tokens": usage.input_tokens,
                     "input_tokens_details": {"cached_tokens": usage.cached_tokens},
                     "output_tokens": usage.output_tokens,
                     "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
                     "total_tokens": usage.input_tokens + usage.output_tokens}
    out.append(ev({"type": "response.incomplete", "response": resp}))
    return b"".join(out)


def terminal(p, usage: Usage, include_usage: bool = True) -> bytes:
    """The closing events for parser ``p`` (by its ``api``)."""
    if p.api == "chat":
        return chat(p, usage, include_usage)
    if p.api == "anthropic":
        return anthropic(p, usage)
    return responses(p, usage)
