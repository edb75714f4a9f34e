"""Per-call metering state and the stream callable mitmproxy runs per chunk.

``Call`` is what the gateway addon decides at admission and the metering addon
finishes (kept in ``flow.metadata[CALL]``). ``StreamMeter`` is set as
``flow.response.stream``: it forwards whole SSE events with their exact bytes,
counts output tokens as deltas arrive, and when the output would pass what the
reservation allows it appends the API's terminal events and stops forwarding
(``[]``, never ``b""``, mid-stream), calling ``on_cut`` so the upstream can be
closed.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import cut
from .anthropic import AnthropicParser
from .budget import Admission
from .chat import ChatParser
from .prices import Rates
from .responses import ResponsesParser
from .sse import SSESplitter
from .tokens import Counter, estimate_input
from .metrics import FAILURES
from .usage import Usage

log = logging.getLogger(__name__)

MAX_EVENT_BYTES = 4 * 1024 * 1024   # a longer "event" means this is not SSE: stop parsing, pass it on
CALL = "airlock.gateway.call"      # flow.metadata key shared by addons.gateway and addons.metering


@dataclass(slots=True)
class Call:
    kind: str                  # "openai" | "anthropic"
    provider: str              # provider name from the config
    api: str                   # "chat" | "responses" | "anthropic" | "embeddings" | "count_tokens" | "models" | "other"
    model: str | None = None
    stream: bool = False
    client_wants_usage: bool = True     # Chat: did the client ask for stream_options.include_usage
    input_estimate: int = 0
    output_cap: int = 0
    rates: Rates | None = None
    prices: dict | None = None          # policy price overrides
    admission: Admission | None = None
    started: float = field(default_factory=time.perf_counter)
    first_token: float | None = None
    usage: Usage | None = None          # provider usage (authoritative) once seen
    counted_output: int = 0             # output tokens counted from deltas (safety factor applied)
    cut_reason: str | None = None
    settled: bool = False
    estimated_cost: float | None = None
    meter: "StreamMeter | None" = None
    pending_body: Any = None            # request body whose input was not counted at admission
    path: str = ""

    def estimate_input(self) -> int:
        """The admission estimate, counted now if admission did not need it."""
        if self.pending_body is not None:
            body, self.pending_body = self.pending_body, None
            try:
                self.input_estimate = estimate_input(body, self.model, self.kind, self.path)
            except Exception:  # noqa: BLE001 - billing falls back to 0 input, logged
                log.exception("metering: could not count the input of a call")
        return self.input_estimate

    def billable(self) -> tuple[Usage, str]:
        """The usage to bill and where it came from.

        "provider": the provider's final usage (authoritative). "counted": the stream
        did not finish (cut, client gone, upstream error), so the output is what was
        counted (never less than what the provider had reported so far) and the input
        is the provider's figure when it sent one, else the admission estimate.
        """
        finished = self.meter is None or self.meter.parser is None or self.meter.parser.done
        u = self.usage
        if u is not None and finished and not self.cut_reason:
            return u, "provider"
        inp = u.input_tokens if u is not None and u.input_tokens else self.estimate_input()
        out = max(self.counted_output, u.output_tokens if u is not None else 0)
        return Usage(inp, out, u.cached_tokens if u else 0, u.cache_write_tokens if u else 0,
                     u.reasoning_tokens if u else 0), "counted"


def parser_for(api: str):
    if api == "chat":
        return ChatParser()
    if api == "anthropic":
        return AnthropicParser()
    if api == "responses":
        return ResponsesParser()
    return None


class StreamMeter:
    """The ``flow.response.stream`` callable for one model stream."""

    __slots__ = ("call", "parser", "splitter", "counter", "factor", "raw_output", "allowance", "on_cut",
                 "cut", "events", "input_known", "margin", "broken")

    def __init__(self, call: Call, on_cut: Callable[[], None] | None = None) -> None:
        self.call = call
        self.parser = parser_for(call.api)
        self.splitter = SSESplitter()
        self.counter = Counter(call.model, call.kind)
        self.factor = self.counter.factor
        self.raw_output = 0
        self.allowance = call.admission.output_allowance if call.admission else None
        self.on_cut = on_cut
        self.cut = False
        self.events = 0
        self.input_known = False
        self.broken = False
        self.margin = int(self.factor + 0.999)   # cut before the next delta would pass the allowance
        call.meter = self

    def __call__(self, chunk: bytes):
        if self.cut:
            return [] if chunk else b""
        if self.broken:
            return chunk if chunk else b""
        before = self.splitter.pending_bytes()
        try:
            return self._feed(chunk)
        except Exception:   # a parser bug must not break the stream: forward the rest untouched
            log.exception("metering: stream parser failed; forwarding the rest of this stream unmetered")
            FAILURES.labels("stream_parse").inc()
            self.broken = True
            unsent = before + chunk
            return unsent if unsent else ([] if chunk else b"")

    def _feed(self, chunk: bytes):
        events = self.splitter.feed(chunk) if chunk else self.splitter.flush()
        if not events:
            if len(self.splitter.pending_bytes()) > MAX_EVENT_BYTES:
                raise ValueError(f"no event boundary in {MAX_EVENT_BYTES} bytes: not an event stream")
            return [] if chunk else b""
        self.events += len(events)
        if self.allowance is None:
            return self._feed_uncapped(events, chunk)
        p = self.parser
        call = self.call
        out: list[bytes] = []
        for ev in events:
            text = p.on_event(ev)
            if text:
                if call.first_token is None:
                    call.first_token = time.perf_counter()
                self.raw_output += self.counter.count(text)
                call.counted_output = int(self.raw_output * self.factor + 0.999) + p.extra
            check = bool(text)
            if p.usage is not None and p.usage is not call.usage:
                call.usage = p.usage
                if not self.input_known and p.usage.input_tokens:
                    # the provider's input count (Anthropic message_start) replaces our estimate
                    self.input_known = True
                    check = check or self.raw_output == 0
                    self.allowance = call.admission.allowance_for(p.usage, call.rates)
            if p.drop and not call.client_wants_usage:
                continue
            out.append(ev.raw)
            if check and not p.finished and call.counted_output + self.margin > self.allowance:
                self._cut(out, "budget")
                break
        if not out:
            return [] if chunk else b""
        return b"".join(out)

    def _feed_uncapped(self, events: list, chunk: bytes):
        """No hard budget on this call: count the chunk's text in one go, forward everything
        (but the usage chunk the client did not ask for)."""
        p = self.parser
        call = self.call
        on_event = p.on_event
        hide = not call.client_wants_usage
        texts = []
        out = []
        for ev in events:
            text = on_event(ev)
            if text:
                texts.append(text)
            if hide and p.drop:
                continue
            out.append(ev.raw)
        if texts:
            if call.first_token is None:
                call.first_token = time.perf_counter()
            self.raw_output += self.counter.count(texts[0] if len(texts) == 1 else "".join(texts))
            call.counted_output = int(self.raw_output * self.factor + 0.999) + p.extra
        if p.usage is not None:
            call.usage = p.usage
        if not out:
            return [] if chunk else b""
        return out[0] if len(out) == 1 else b"".join(out)

    def _cut(self, out: list[bytes], reason: str) -> None:
        call = self.call
        self.cut = True
        call.cut_reason = reason
        u, _ = call.billable()
        out.append(cut.terminal(self.parser, u, call.client_wants_usage))
        if self.on_cut is not None:
            self.on_cut()
