"""Normalised token usage, the same for every provider API.

``input_tokens`` includes cached reads and cache writes (OpenAI's convention;
Anthropic's raw ``input_tokens`` excludes them, the parser adds them back) and
``output_tokens`` includes reasoning tokens.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import orjson

BIG_BODY = 256 * 1024   # larger JSON answers (embeddings) are not parsed whole just for their usage


@dataclass(slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0          # input read from the provider's prompt cache
    cache_write_tokens: int = 0     # input written to the prompt cache
    reasoning_tokens: int = 0       # part of output_tokens

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def _int(v) -> int:
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else 0


def from_openai(u: dict | None) -> Usage | None:
    """Chat Completions (prompt/completion) or Responses (input/output) usage."""
    if not isinstance(u, dict):
        return None
    if "prompt_tokens" in u or "completion_tokens" in u:
        inp, out = _int(u.get("prompt_tokens")), _int(u.get("completion_tokens"))
        idet, odet = u.get("prompt_tokens_details") or {}, u.get("completion_tokens_details") or {}
    elif "input_tokens" in u or "output_tokens" in u:
        inp, out = _int(u.get("input_tokens")), _int(u.get("output_tokens"))
        idet, odet = u.get("input_tokens_details") or {}, u.get("output_tokens_details") or {}
    else:
        return None
    idet = idet if isinstance(idet, dict) else {}
    odet = odet if isinstance(odet, dict) else {}
    return Usage(inp, out, _int(idet.get("cached_tokens")), _int(idet.get("cache_write_tokens")),
                 _int(odet.get("reasoning_tokens")))


def from_anthropic(u: dict | None, base: Usage | None = None) -> Usage | None:
    """Anthropic usage; fields absent from ``u`` keep their value from ``base``.

    ``message_delta`` usage is cumulative and may repeat (or revise) the input
    fields of ``message_start``: the last value of each field wins, never a sum.
    """
    if not isinstance(u, dict):
        return base
    b = base or Usage()
    uncached = b.input_tokens - b.cached_tokens - b.cache_write_tokens
    if "input_tokens" in u:
        uncached = _int(u.get("input_tokens"))
    cached = _int(u["cache_read_input_tokens"]) if "cache_read_input_tokens" in u else b.cached_tokens
    write = _int(u["cache_creation_input_tokens"]) if "cache_creation_input_tokens" in u else b.cache_write_tokens
    out = _int(u["output_tokens"]) if "output_tokens" in u else b.output_tokens
    details = u.get("output_tokens_details")
    thinking = _int(details.get("thinking_tokens")) if isinstance(details, dict) else b.reasoning_tokens
    return Usage(uncached + cached + write, out, cached, write, thinking)


def usage_of_json(raw: bytes) -> tuple[dict | None, str | None]:
    """(the ``usage`` object, the ``model``) of a JSON answer. Big bodies (embeddings of many
    inputs) are not parsed whole: the usage object is cut out from the end. ValueError if not JSON."""
    if len(raw) <= BIG_BODY:
        body = orjson.loads(raw)
        if not isinstance(body, dict):
            return None, None
        model = body.get("model")
        return body.get("usage"), model if isinstance(model, str) else None
    i = raw.rfind(b'"usage"')
    start = raw.find(b"{", i) if i >= 0 else -1
    if start < 0:
        return None, None
    depth = 0
    for k in range(start, min(len(raw), start + 8192)):
        c = raw[k]
        if c == 123:        # {
            depth += 1
        elif c == 125:      # }
            depth -= 1
            if depth == 0:
                try:
                    u = orjson.loads(raw[start:k + 1])
                except orjson.JSONDecodeError:
                    return None, None
                return (u if isinstance(u, dict) else None), None
    return None, None
