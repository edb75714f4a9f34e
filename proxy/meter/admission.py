"""Admission of a model call: which API, allowed model, estimate, reservation.

The gateway addon is a thin wrapper over ``Gatekeeper.admit``; this module has
no mitmproxy types, so it is tested directly.
"""
from __future__ import annotations

import asyncio
import fnmatch
from dataclasses import dataclass
from typing import Any

from . import prices, tokens
from .budget import Ledger, Request, matches
from .stream import Call

# route path (relative to the provider base URL, no query) -> API
_OPENAI = {"/chat/completions": "chat", "/responses": "responses", "/embeddings": "embeddings",
           "/models": "models", "/completions": "chat"}
_ANTHROPIC = {"/v1/messages": "anthropic", "/v1/messages/count_tokens": "count_tokens", "/v1/models": "models"}


def api_of(kind: str, path: str) -> str:
    path = path.rstrip("/") or "/"
    table = _ANTHROPIC if kind == "anthropic" else _OPENAI
    api = table.get(path)
    if api:
        return api
    if kind != "anthropic" and path.startswith("/models/"):
        return "model"
    if kind == "anthropic" and path.startswith("/v1/models/"):
        return "model"
    return "other"


@dataclass(slots=True)
class Settings:
    default_max_tokens: int = 4096     # output cap reserved when the request sets none
    min_output_tokens: int = 16        # a partial reservation must leave at least this much output

    @classmethod
    def from_config(cls, raw: dict | None, source: str = "airlock.yaml") -> "Settings":
        """The ``gateway:`` section of airlock.yaml; a bad key raises ConfigError (exit 2 in the CLI)."""
        from ..config import ConfigError
        s = cls()
        if raw is not None and not isinstance(raw, dict):
            raise ConfigError(source, "gateway", "must be a mapping", "for example {default_max_tokens: 4096}")
        for k, v in (raw or {}).items():
            if k not in ("default_max_tokens", "min_output_tokens"):
                raise ConfigError(source, f"gateway.{k}", "unknown key",
                                  "valid keys: default_max_tokens, min_output_tokens")
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ConfigError(source, f"gateway.{k}", f"{v!r} must be a non-negative integer")
            setattr(s, k, v)
        return s


@dataclass(slots=True)
class Refusal:
    status: int
    code: str
    message: str
    rule: str | None = None
    retry_after: int | None = None

    def headers(self) -> dict[str, str] | None:
        return {"retry-after": str(self.retry_after)} if self.retry_after else None


def model_rule(engine, identity, model: str) -> str | None:
    """None when ``model`` is allowed for the caller, else the id of the first rule refusing it.

    Every rule whose ``match`` fits the caller must allow the model (rules narrow each other).
    """
    for rule in getattr(engine, "models", ()) or ():
        if not matches(rule.match, identity):
            continue
        if not any(fnmatch.fnmatchcase(model, pat) for pat in rule.allow):
            return rule.id
    return None


def filter_models(engine, identity, body: Any) -> Any:
    """A /models listing with only the models the caller may use (OpenAI and Anthropic shapes)."""
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        return body
    kept = [m for m in body["data"]
            if not isinstance(m, dict) or not isinstance(m.get("id"), str) or model_rule(engine, identity, m["id"]) is None]
    out = dict(body)
    out["data"] = kept
    if "first_id" in out:
        out["first_id"] = kept[0].get("id") if kept else None
        out["last_id"] = kept[-1].get("id") if kept else None
    return out


def output_cap(api: str, body: dict, default: int) -> int:
    if api in ("embeddings", "count_tokens"):
        return 0
    keys = {"chat": ("max_completion_tokens", "max_tokens"), "responses": ("max_output_tokens",),
            "anthropic": ("max_tokens",)}.get(api, ())
    for k in keys:
        v = body.get(k)
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            n = body.get("n")
            return v * (n if api == "chat" and isinstance(n, int) and n > 1 else 1)
    return default


class Gatekeeper:
    def __init__(self, store, settings: Settings | None = None) -> None:
        self.ledger = Ledger(store)
        self.settings = settings or Settings()

    async def admit(self, engine, identity, kind: str, provider: str, path: str,
                    body: Any) -> tuple[Call | None, Refusal | None]:
        """(the call to meter, or None for paths that are not metered; a refusal or None)."""
        call, refusal, metered = self._check(engine, identity, kind, provider, path, body)
        if not metered:
            return call, refusal
        if self.ledger.needs_estimate(engine, identity, call.model):
            call.input_estimate = await _estimate(body, call.model, kind, path)
            if call.rates is not None:
                call.estimated_cost = (call.input_estimate * call.rates.input + call.output_cap * call.rates.output)
        else:
            # no limit needs it now: count only if the provider reports no usage (client gone mid-call)
            call.pending_body, call.path = body, path
        adm = await self.ledger.admit(engine, Request(identity, call.model, call.input_estimate, call.output_cap,
                                                      call.rates, min(self.settings.min_output_tokens,
                                                                      call.output_cap)))
        if not adm.ok:
            return call, Refusal(adm.status, adm.code or "refused", adm.message, adm.rule, adm.retry_after)
        # nothing held and no soft budget to record: nothing to settle or release later
        call.admission = adm if adm.holds or adm.soft else None
        return call, None

    def admit_now(self, engine, identity, kind: str, provider: str, path: str,
                  body: Any) -> tuple[Call | None, Refusal | None] | None:
        """``admit`` without awaiting, when no budget or rate limit applies under ``engine`` (nothing to
        reserve in the store, no estimate to count); None when ``admit`` must be awaited instead."""
        if self.ledger.limited(engine):
            return None
        call, refusal, metered = self._check(engine, identity, kind, provider, path, body)
        if metered:     # counted only if the provider reports no usage (client gone mid-call)
            call.pending_body, call.path = body, path
        return call, refusal

    def _check(self, engine, identity, kind: str, provider: str, path: str,
               body: Any) -> tuple[Call, Refusal | None, bool]:
        """The call, a refusal that needs no store, and whether the call goes on to the reservation."""
        api = api_of(kind, path)
        call = Call(kind=kind, provider=provider, api=api)
        if api in ("models", "model", "other"):
            if api == "model":
                model = path.rstrip("/").rsplit("/", 1)[-1]
                if (rule := model_rule(engine, identity, model)) is not None:
                    return call, Refusal(404, "model_not_found",
                                         f"model {model!r} is not available to this caller (rule {rule!r})",
                                         rule), False
            return call, None, False
        if not isinstance(body, dict):
            return call, Refusal(400, "invalid_json", "the request body must be a JSON object"), False
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return call, Refusal(400, "missing_model", "the request body needs a \"model\" string"), False
        call.model = model
        if (rule := model_rule(engine, identity, model)) is not None:
            return call, Refusal(403, "model_not_allowed",
                                 f"model {model!r} is not allowed for this caller by policy rule {rule!r}",
                                 rule), False
        call.stream = body.get("stream") is True
        if api == "count_tokens":
            return call, None, False
        overrides = getattr(engine, "prices", None) or None
        call.prices = overrides
        call.rates = prices.rates(model, provider if kind != "anthropic" else "anthropic", overrides)
        call.output_cap = output_cap(api, body, self.settings.default_max_tokens)
        if api == "chat" and call.stream:
            so = body.get("stream_options")
            call.client_wants_usage = bool(isinstance(so, dict) and so.get("include_usage"))
        elif api in ("responses", "anthropic"):
            call.client_wants_usage = True
        return call, None, True

    def upstream_body(self, call: Call, body: dict) -> dict | None:
        """The body to send upstream, or None when it goes unchanged.

        * Chat streams ask for ``stream_options.include_usage`` (the settle needs usage).
        * Under a hard budget the output cap sent upstream is what the reservation allows,
          so the provider itself stops there (the only bound for a non-streaming call or
          for hidden reasoning tokens); the client's own cap is kept when it is lower.
        """
        new = self.wants_usage_injection(call, body)
        adm = call.admission
        if adm is None or adm.reserved_output is None or call.api not in ("chat", "responses", "anthropic"):
            return new
        allow = max(1, adm.reserved_output)
        if call.api == "chat":
            n = body.get("n") if isinstance(body.get("n"), int) and body.get("n", 1) > 1 else 1
            allow = max(1, allow // n)
            keys = [k for k in ("max_completion_tokens", "max_tokens") if k in body] or [_chat_cap_key(call.model)]
        else:
            keys = ["max_output_tokens" if call.api == "responses" else "max_tokens"]
        for k in keys:
            cur = body.get(k)
            if not (isinstance(cur, int) and not isinstance(cur, bool) and 0 < cur <= allow):
                new = new if new is not None else dict(body)
                new[k] = allow
        return new

    def wants_usage_injection(self, call: Call, body: dict) -> dict | None:
        """The body to send upstream with stream_options.include_usage set, or None if unchanged."""
        if call.api != "chat" or not call.stream or call.client_wants_usage:
            return None
        so = body.get("stream_options")
        new = dict(body)
        new["stream_options"] = {**(so if isinstance(so, dict) else {}), "include_usage": True}
        return new


BIG_PROMPT = 32 * 1024     # characters; longer prompts are counted off the event loop


async def _estimate(body: dict, model: str, kind: str, path: str) -> int:
    text, extra = tokens.request_text(body, kind, path)
    if len(text) > BIG_PROMPT:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, tokens.count, text, model, kind) + extra
    return tokens.count(text, model, kind) + extra


def _chat_cap_key(model: str | None) -> str:
    """OpenAI reasoning models refuse ``max_tokens``; everyone else understands it."""
    m = model or ""
    return "max_completion_tokens" if m.startswith(("o1", "o3", "o4", "gpt-5")) else "max_tokens"
