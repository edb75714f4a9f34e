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
PENDING_TEXT = 64 * 1024            # bytes of output text kept uncounted at most (uncapped streams)
DEFERRED_DATA = 128 * 1024          # bytes of delta events kept unparsed at most (Chat, Anthropic)
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
        counted = self.meter.sync() if self.meter is not None else self.counted_output
        out = max(counted, u.output_tokens if u is not None else 0)
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
    """The ``flow.response.stream`` callable for one model stream.

    Output text is tokenized lazily: a BPE token is at least one UTF-8 byte, so the bytes of
    the text not yet counted bound its tokens from above. The text is counted exactly only
    when that bound could pass the output allowance (so a cut stays exact), when the pending
    text grows large, or when the call is billed on what was counted (no provider usage).
    Plain delta events (Chat, Anthropic) are not even parsed until then: their bytes bound their
    text, and a network chunk of them is forwarded as it came.
    """

    __slots__ = ("call", "parser", "splitter", "counter", "factor", "raw_output", "allowance", "on_cut",
                 "cut", "input_known", "margin", "broken", "pending", "pending_bound", "deferred",
                 "deferred_bytes", "lazy")

    def __init__(self, call: Call, on_cut: Callable[[], None] | None = None) -> None:
        self.call = call
        self.parser = parser_for(call.api)
        self.splitter = SSESplitter()
        self.counter = Counter(call.model, call.kind)
        self.factor = self.counter.factor
        self.raw_output = 0            # tokens of the text counted so far (before the safety factor)
        self.pending: list[str] = []   # text not counted yet
        self.pending_bound = 0         # its UTF-8 bytes: an upper bound of its tokens
        self.deferred: list[bytes] = []   # whole plain delta events not parsed yet
        self.deferred_bytes = 0
        self.allowance = call.admission.output_allowance if call.admission else None
        self.on_cut = on_cut
        self.cut = False
        self.input_known = False
        self.broken = False
        self.margin = int(self.factor + 0.999)   # cut before the next delta would pass the allowance
        self.lazy = True               # plain deltas may wait unparsed while no cut could fall inside them
        call.meter = self

    def sync(self) -> int:
        """Count the pending text; set and return ``call.counted_output`` (exact)."""
        if self.deferred:
            self._parse_deferred()
        if self.pending:
            p = self.pending
            self.raw_output += self.counter.count(p[0] if len(p) == 1 else "".join(p))
            p.clear()
            self.pending_bound = 0
        extra = self.parser.extra if self.parser is not None else 0
        self.call.counted_output = n = int(self.raw_output * self.factor + 0.999) + extra
        return n

    def _parse_deferred(self) -> None:
        raw, self.deferred, self.deferred_bytes = b"".join(self.deferred), [], 0
        splitter = SSESplitter()
        on_event = self.parser.on_event
        try:
            for ev in splitter.feed(raw) + splitter.flush():
                text = on_event(ev)
                if text:
                    self.pending.append(text)
                    self.pending_bound += len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
        except Exception:   # noqa: BLE001 - billing goes on with what was counted
            log.exception("metering: stream parser failed on a delta; its text is not counted")
            FAILURES.labels("stream_parse").inc()

    def _take(self, text: str) -> None:
        if self.deferred:
            self._parse_deferred()      # the text of the events before this one comes first
        if self.call.first_token is None:
            self.call.first_token = time.perf_counter()
        self.pending.append(text)
        self.pending_bound += len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))

    def _defer(self, raw: bytes) -> None:
        """Keep whole plain delta events unparsed (see the parsers' ``deferrable``)."""
        self.deferred.append(raw)
        self.deferred_bytes += len(raw)
        if self.call.first_token is None:
            self.call.first_token = time.perf_counter()
        if self.deferred_bytes > DEFERRED_DATA:
            self.sync()

    def __call__(self, chunk: bytes):
        before = self.splitter.pending_bytes()
        try:
            if self.lazy and not before and chunk[-2:] == b"\n\n" and chunk.find(b"\r") < 0:
                # whole "\n\n" events, the usual network chunk: when all are plain deltas (and no cut
                # could fall inside them) it is kept as it is, not split, not parsed, and goes on as
                # the same bytes object
                defer = self.parser.deferrable
                if defer is not None and (self.allowance is None or self._room(len(chunk))) and defer(chunk):
                    self._defer(chunk)
                    return chunk
            if self.cut:
                return [] if chunk else b""
            if self.broken:
                return chunk if chunk else b""
            return self._feed(chunk, not before)
        except Exception:   # a parser bug must not break the stream: forward the rest untouched
            log.exception("metering: stream parser failed; forwarding the rest of this stream unmetered")
            FAILURES.labels("stream_parse").inc()
            self.broken = True
            self.lazy = False
            unsent = before + chunk
            return unsent if unsent else ([] if chunk else b"")

    def _feed(self, chunk: bytes, whole: bool):
        """``whole``: the chunk starts at an event boundary."""
        events = self.splitter.feed(chunk) if chunk else self.splitter.flush()
        if not events:
            if len(self.splitter.pending_bytes()) > MAX_EVENT_BYTES:
                raise ValueError(f"no event boundary in {MAX_EVENT_BYTES} bytes: not an event stream")
            return [] if chunk else b""
        if self.allowance is None:
            return self._feed_uncapped(events, chunk, whole and not self.splitter.pending_bytes())
        p = self.parser
        call = self.call
        out: list[bytes] = []
        for ev in events:
            text = p.on_event(ev)
            if text:
                self._take(text)
            check = bool(text)
            if p.usage is not None and p.usage is not call.usage:
                call.usage = p.usage
                if not self.input_known and p.usage.input_tokens:
                    # the provider's input count (Anthropic message_start) replaces our estimate
                    self.input_known = True
                    check = check or self.raw_output + self.pending_bound == 0
                    self.allowance = call.admission.allowance_for(p.usage, call.rates)
            if p.drop and not call.client_wants_usage:
                continue
            out.append(ev.raw)
            if check and not p.finished and self._over():
                self._cut(out, "budget")
                break
        if not out:
            return [] if chunk else b""
        return out[0] if len(out) == 1 else b"".join(out)

    def _room(self, more: int) -> bool:
        """Is there room for ``more`` tokens of output at most above the bound of what came so far?
        Deferred events count with all their bytes: a delta's text takes at most its JSON bytes
        (escapes only lengthen it), and a Chat tool call's framing tokens are fewer than its
        ``{"index":..}`` bytes."""
        bound = self.raw_output + self.pending_bound + self.deferred_bytes + more
        return int(bound * self.factor + 0.999) + self.parser.extra + self.margin <= self.allowance

    def _over(self) -> bool:
        """Would the output pass the allowance? Counts exactly only when the bound says it might."""
        if self.allowance is None:          # re-derived from the provider's input: nothing caps the output
            return False
        return not self._room(0) and self.sync() + self.margin > self.allowance

    def _feed_uncapped(self, events: list, chunk: bytes, whole: bool):
        """No hard budget cut on this call: keep the text to count later, forward everything
        (but the usage chunk the client did not ask for). ``whole``: the chunk is exactly these
        events, so when none is dropped it goes on as it came (the same bytes object)."""
        p = self.parser
        on_event = p.on_event
        defer = getattr(p, "deferrable", None)
        hide = not self.call.client_wants_usage
        out = None
        for i, ev in enumerate(events):
            if defer is not None and defer(ev.raw):
                # a plain delta: parsed only if the call is billed on the count (no provider usage)
                self._defer(ev.raw)
                if out is not None:
                    out.append(ev.raw)
                continue
            text = on_event(ev)
            if text:
                self._take(text)
            if hide and p.drop:
                if out is None:
                    out = [e.raw for e in events[:i]]
                continue
            if out is not None:
                out.append(ev.raw)
        if self.pending_bound > PENDING_TEXT:
            self.sync()
        if p.usage is not None:
            self.call.usage = p.usage
        if out is None:
            if whole and chunk:
                return chunk
            out = [e.raw for e in events]
        if not out:
            return [] if chunk else b""
        return out[0] if len(out) == 1 else b"".join(out)

    def _cut(self, out: list[bytes], reason: str) -> None:
        call = self.call
        self.cut = True
        self.lazy = False
        call.cut_reason = reason
        u, _ = call.billable()
        out.append(cut.terminal(self.parser, u, call.client_wants_usage))
        if self.on_cut is not None:
            self.on_cut()
