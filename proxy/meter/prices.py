"""Model prices: the policy's ``prices`` first, then genai-prices (offline snapshot).

``rates()`` gives per-token USD rates for admission estimates and mid-stream
checks (cached per model); ``cost()`` prices a settled ``Usage`` exactly
(cache reads, cache writes and reasoning tokens, tiered prices) with
genai-prices. An unknown model gives ``None``, never an exception: the caller
decides (a hard USD budget refuses it).
"""
from __future__ import annotations

import fnmatch
import logging
from dataclasses import dataclass
from functools import lru_cache

from .usage import Usage

log = logging.getLogger(__name__)
MTOK = 1_000_000


@dataclass(frozen=True, slots=True)
class Rates:
    input: float            # USD per uncached input token
    output: float           # USD per output token (reasoning included)
    cached_input: float     # USD per cache-read input token
    cache_write: float      # USD per cache-write input token
    source: str             # "policy:<glob>" or "genai-prices"


def _override(model: str, overrides: dict | None) -> Rates | None:
    if not overrides:
        return None
    for glob, spec in overrides.items():
        if fnmatch.fnmatchcase(model, glob) and isinstance(spec, dict):
            inp = float(spec.get("input_per_mtok", 0.0)) / MTOK
            out = float(spec.get("output_per_mtok", 0.0)) / MTOK
            cached = spec.get("cached_input_per_mtok")
            write = spec.get("cache_write_per_mtok")
            return Rates(inp, out, float(cached) / MTOK if cached is not None else inp,
                         float(write) / MTOK if write is not None else inp, f"policy:{glob}")
    return None


@lru_cache(maxsize=4096)
def _genai_calc(model: str, provider: str | None, inp: int, out: int, cached: int, write: int) -> float | None:
    """genai-prices total for one usage; None if the model is unknown. Cached: the
    same usage of the same model (estimates, unit rates) is priced once."""
    from genai_prices import Usage as GUsage, calc_price
    usage = GUsage(input_tokens=inp, output_tokens=out, cache_read_tokens=cached, cache_write_tokens=write)
    for pid in ((provider, None) if provider else (None,)):
        try:
            return float(calc_price(usage, model, provider_id=pid).total_price)
        except LookupError:
            continue
        except Exception:   # noqa: BLE001 - a price table bug must not break a call
            log.warning("genai-prices failed for model %s", model, exc_info=True)
            return None
    return None


PROBE = 10_000          # tokens per probe: below every tier threshold (tiers start at 128k-200k input)
LINEAR_BELOW = 100_000  # settled calls with less input are priced from the cached rates (no table lookup)


@lru_cache(maxsize=1024)
def _genai_rates(model: str, provider: str | None) -> Rates | None:
    """Per-token rates from small probes; source "genai-prices" when the price is linear (no
    per-request fee), so ``cost()`` may use them directly, else "genai-prices/nonlinear"."""
    inp = _genai_calc(model, provider, PROBE, 0, 0, 0)
    if inp is None:
        return None
    out = _genai_calc(model, provider, 0, PROBE, 0, 0) or 0.0
    cached = _genai_calc(model, provider, PROBE, 0, PROBE, 0)
    write = _genai_calc(model, provider, PROBE, 0, 0, PROBE)
    r = Rates(inp / PROBE, out / PROBE, (cached if cached is not None else inp) / PROBE,
              (write if write is not None else inp) / PROBE, "genai-prices")
    mixed = _genai_calc(model, provider, 2 * PROBE, 3 * PROBE, PROBE // 2, PROBE // 4)
    expect = estimate(Usage(2 * PROBE, 3 * PROBE, PROBE // 2, PROBE // 4, 0), r)
    if mixed is None or abs(mixed - expect) > 1e-9 * max(1.0, expect):
        r = Rates(r.input, r.output, r.cached_input, r.cache_write, "genai-prices/nonlinear")
    return r


def rates(model: str | None, provider: str | None = None, overrides: dict | None = None) -> Rates | None:
    if not model:
        return None
    return _override(model, overrides) or _genai_rates(model, _provider_id(provider))


def cost(usage: Usage, model: str | None, provider: str | None = None,
         overrides: dict | None = None) -> float | None:
    """USD for a settled call; None when the model has no known price."""
    if not model:
        return None
    r = _override(model, overrides)
    if r is not None:
        return estimate(usage, r)
    pid = _provider_id(provider)
    if usage.input_tokens < LINEAR_BELOW and usage.output_tokens < LINEAR_BELOW:
        r = _genai_rates(model, pid)
        if r is None:
            return None
        if r.source == "genai-prices":      # linear below the tiers: same result, no table walk
            return estimate(usage, r)
    return _genai_calc(model, pid, usage.input_tokens, usage.output_tokens,
                       usage.cached_tokens, usage.cache_write_tokens)


def estimate(usage: Usage, r: Rates) -> float:
    uncached = max(0, usage.input_tokens - usage.cached_tokens - usage.cache_write_tokens)
    return (uncached * r.input + usage.cached_tokens * r.cached_input
            + usage.cache_write_tokens * r.cache_write + usage.output_tokens * r.output)


_KNOWN = {"openai", "anthropic", "groq", "openrouter", "google", "mistral", "deepseek", "x-ai", "azure",
          "aws", "cohere", "fireworks", "together"}


def _provider_id(provider: str | None) -> str | None:
    return provider if provider in _KNOWN else None


def version() -> str:
    try:
        from genai_prices import __version__
        return __version__
    except Exception:  # noqa: BLE001
        return "unknown"
