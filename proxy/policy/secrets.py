"""Secret detector over any value: API keys, private keys, bearer tokens, JWTs.

``find_secrets(value)`` returns the kinds of secrets found (sorted, unique), scanning
strings, bytes, and the keys and values of nested dicts / lists at any depth.
``redact(value)`` returns a copy with every secret replaced by ``[REDACTED:<kind>]``.
Audit, approvals and the policy helpers (``has_secret`` in CEL) share this one home.
"""
from __future__ import annotations

import re
from typing import Any

# One alternation with a named group per kind: a single regex pass per string.
_PATTERNS: dict[str, str] = {
    "private_key": (r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
                    r"(?:[A-Za-z0-9+/=\s:,\-]{0,16384}?-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----)?"),
    "anthropic_api_key": r"\bsk-ant-[A-Za-z0-9_\-]{20,}",
    "openai_api_key": r"\bsk-(?:proj-|svcacct-|admin-|live-|test-)?[A-Za-z0-9_\-]{20,}",
    "aws_access_key_id": r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[0-9A-Z]{16}\b",
    "github_token": r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,})",
    "gitlab_token": r"\bglpat-[A-Za-z0-9_\-]{20,}",
    "slack_token": r"\bxox[abposre]-[A-Za-z0-9\-]{10,}",
    "google_api_key": r"\bAIza[0-9A-Za-z_\-]{35}",
    "stripe_key": r"\b[rs]k_(?:live|test)_[0-9A-Za-z]{16,}",
    "jwt": r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}",
    "bearer_token": r"(?i:\bbearer\s+)[A-Za-z0-9\-._~+/]{16,}=*",
}
_RE = re.compile("|".join(f"(?P<{k}>{v})" for k, v in _PATTERNS.items()))
KINDS = tuple(_PATTERNS)
_MAX_DEPTH = 64          # deeper structures are scanned as their repr (never skipped)


def _strings(value: Any, depth: int = 0):
    if isinstance(value, str):
        yield value
    elif isinstance(value, (bytes, bytearray, memoryview)):
        yield bytes(value).decode("utf-8", "replace")
    elif depth >= _MAX_DEPTH:
        yield repr(value)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(k, depth + 1)
            yield from _strings(v, depth + 1)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for v in value:
            yield from _strings(v, depth + 1)


def find_secrets(value: Any) -> list[str]:
    """Kinds of secrets found anywhere in ``value`` (sorted, unique; [] if none)."""
    found: set[str] = set()
    for s in _strings(value):
        if len(s) < 16:
            continue
        for m in _RE.finditer(s):
            found.add(m.lastgroup or "secret")
    return sorted(found)


def has_secret(value: Any) -> bool:
    for s in _strings(value):
        if len(s) >= 16 and _RE.search(s):
            return True
    return False


def _redact_str(s: str) -> str:
    if len(s) < 16:
        return s
    return _RE.sub(lambda m: f"[REDACTED:{m.lastgroup}]", s)


def redact(value: Any, _depth: int = 0) -> Any:
    """A copy of ``value`` with every secret replaced by ``[REDACTED:<kind>]``."""
    if isinstance(value, str):
        return _redact_str(value)
    if isinstance(value, (bytes, bytearray)):
        text = bytes(value).decode("utf-8", "replace")
        red = _redact_str(text)
        return value if red == text else red.encode()
    if _depth >= _MAX_DEPTH:
        return "[REDACTED:too_deep]" if has_secret(value) else value
    if isinstance(value, dict):
        return {redact(k, _depth + 1): redact(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, _depth + 1) for v in value]
    if isinstance(value, tuple):
        return tuple(redact(v, _depth + 1) for v in value)
    if isinstance(value, (set, frozenset)):
        return type(value)(redact(v, _depth + 1) for v in value)
    return value
