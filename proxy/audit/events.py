"""Audit event kinds, the row shape, redaction and truncation.

Every event becomes one row of the ``events`` table. The common columns are
typed (so dashboards can group on them); anything else an emitter passes goes,
redacted and truncated, into the ``data`` JSON column. Secrets never reach a
row: provider keys, gateway tokens and recognisable credentials are replaced
by ``[REDACTED]`` before the row is built (and so before the WAL sees it).
"""
from __future__ import annotations

import re
import time
from typing import Any

import orjson

# Kinds emitted across Airlock (free-form strings are accepted too; these are documented).
KINDS = (
    "request",          # one per proxied request (addons.audit)
    "decision",         # policy decision for an MCP tool call
    "tool_changed",     # MCP firewall saw a tool definition change
    "usage",            # metering result of a model call
    "approval.requested", "approval.approved", "approval.denied", "approval.expired",
    "policy_reload",
    "key_mint", "key_revoke",
    "session_start", "session_end",
    "audit_start",      # a writer stream began (first row of every stream)
    "error",
)

STR_COLUMNS = ("kind", "account", "flow", "subject", "agent", "session", "token_id", "listener",
               "route_kind", "route_name", "method", "path", "outcome", "tool", "server", "action",
               "rule", "reason", "provider", "model", "approval_id")
INT_COLUMNS = ("status", "bytes_in", "bytes_out", "tokens_in", "tokens_out", "tokens")
FLOAT_COLUMNS = ("latency_ms", "cost")
CHAIN_COLUMNS = ("stream", "seq", "prev_hash", "hash")

# Column order of a row as inserted (and as hashed: everything except ``hash``).
COLUMNS = ("ts",) + STR_COLUMNS + INT_COLUMNS + FLOAT_COLUMNS + ("data",) + CHAIN_COLUMNS
HASHED = COLUMNS[:-1]
_KNOWN = frozenset(STR_COLUMNS + INT_COLUMNS + FLOAT_COLUMNS)
_MAX_INT = 2**63 - 1

REDACTED = "[REDACTED]"

# Credentials we can recognise by shape. Kept as one alternation so a clean string costs one scan.
_SECRET_PATTERNS = [
    r"alk_[0-9a-f]{16}_[A-Za-z0-9_-]{20,64}",                   # Airlock gateway tokens
    r"sk-(?:ant-|proj-|svcacct-)?[A-Za-z0-9_-]{16,}",            # OpenAI / Anthropic keys
    r"(?i:bearer)\s+[A-Za-z0-9._~+/=-]{8,}",                     # bearer credentials
    r"(?i:basic)\s+[A-Za-z0-9+/=]{8,}",
    r"gh[pousr]_[A-Za-z0-9]{20,}", r"github_pat_[A-Za-z0-9_]{20,}",
    r"(?:AKIA|ASIA)[0-9A-Z]{16}",                                  # AWS access key ids
    r"xox[abposr]-[A-Za-z0-9-]{10,}",                              # Slack
    r"AIza[0-9A-Za-z_-]{35}",                                      # Google API keys
    r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",  # JWTs
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)",
    r"(?i:password|passwd|secret|api[_-]?key|access[_-]?token|auth[_-]?token)[\"']?\s*[:=]\s*[\"']?[^\s\"',;&]{4,}",
]
_SECRET_RE = re.compile("|".join(f"(?:{p})" for p in _SECRET_PATTERNS))
# Keys whose value is a credential whatever it looks like.
_SECRET_KEY = re.compile(
    r"(?i)^(authorization|proxy-authorization|cookie|set-cookie|x-api-key|api[_-]?key|apikey|password|passwd|"
    r"secret|client[_-]?secret|token|access[_-]?token|refresh[_-]?token|id[_-]?token|auth[_-]?token|"
    r"private[_-]?key|.*[_-]secret)$")


class Redactor:
    """Removes credentials from strings and nested values.

    ``literals`` are exact secret values known to the process (provider keys from the
    environment); they are removed wherever they appear, whatever their shape.
    """

    def __init__(self, literals: list[str] | None = None, preview_chars: int = 512):
        self.literals = sorted({s for s in (literals or []) if s and len(s) >= 6}, key=len, reverse=True)
        self.preview_chars = max(16, int(preview_chars))

    def text(self, s: str) -> str:
        for lit in self.literals:
            if lit in s:
                s = s.replace(lit, REDACTED)
        if _SECRET_RE.search(s):
            s = _SECRET_RE.sub(REDACTED, s)
        return s

    def value(self, v: Any, depth: int = 0) -> Any:
        """Redact and truncate a JSON-like value (strings cut to ``preview_chars``)."""
        if isinstance(v, str):
            s = self.text(v)
            return s if len(s) <= self.preview_chars else s[: self.preview_chars] + "…"
        if v is None or isinstance(v, (bool, int, float)):
            return v
        if depth > 8:
            return "…"
        if isinstance(v, dict):
            out = {}
            for i, (k, x) in enumerate(v.items()):
                if i >= 64:
                    out["…"] = f"{len(v) - 64} more keys"
                    break
                k = str(k)
                out[k] = REDACTED if (_SECRET_KEY.match(k) and x not in (None, "")) else self.value(x, depth + 1)
            return out
        if isinstance(v, (list, tuple, set, frozenset)):
            items = list(v)
            out_l = [self.value(x, depth + 1) for x in items[:64]]
            if len(items) > 64:
                out_l.append(f"… {len(items) - 64} more")
            return out_l
        if hasattr(v, "as_dict"):
            return self.value(v.as_dict(), depth + 1)
        return self.value(str(v), depth + 1)


def _int(v: Any) -> int:
    try:
        n = int(v)
    except (TypeError, ValueError):
        return 0
    return n if 0 <= n <= _MAX_INT else 0


def _float(v: Any) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return 0.0
    return f if f == f and abs(f) != float("inf") else 0.0


# Other names emitters use for the typed columns (the first present wins when the column itself is absent).
_ALIASES = {"tokens_in": ("input_tokens", "prompt_tokens"), "tokens_out": ("output_tokens", "completion_tokens"),
            "cost": ("cost_usd",), "status": ("http_status", "status_code"), "latency_ms": ("duration_ms",)}


def _alias(fields: dict[str, Any], column: str) -> Any:
    for name in _ALIASES[column]:
        v = fields.get(name)
        if v is not None:
            return v
    return None


def build_row(kind: str, fields: dict[str, Any], redactor: Redactor, ts: float | None = None) -> dict[str, Any]:
    """A row (without chain columns) from an emitted event. Never raises on odd input."""
    if ts is None:
        t = fields.get("ts")
        ts = float(t) if isinstance(t, (int, float)) and not isinstance(t, bool) else time.time()
    row: dict[str, Any] = {"ts": int(ts * 1_000_000)}
    row["kind"] = str(kind)[:64]
    text = redactor.text
    for c in STR_COLUMNS[1:]:
        v = fields.get(c)
        if v is None:
            row[c] = ""
        else:
            s = v if isinstance(v, str) else str(v)
            row[c] = text(s)[:1024]
    bad: dict[str, Any] = {}
    for cols, conv in ((INT_COLUMNS, _int), (FLOAT_COLUMNS, _float)):
        for c in cols:
            v = fields.get(c)
            numeric = isinstance(v, (int, float)) and not isinstance(v, bool)
            if v is not None and not numeric:
                try:
                    float(v)
                    numeric = True
                except (TypeError, ValueError):
                    bad[c] = v               # e.g. a textual status: kept in data, not lost
            if not numeric and c in _ALIASES:
                v = _alias(fields, c)
            row[c] = conv(v)
    if not row["tokens"]:
        row["tokens"] = row["tokens_in"] + row["tokens_out"]
    rest = {k: v for k, v in fields.items() if (k not in _KNOWN or k in bad) and k != "ts"}
    if rest:
        data = orjson.dumps(redactor.value(rest), option=orjson.OPT_NON_STR_KEYS, default=str).decode()
        limit = redactor.preview_chars * 8
        row["data"] = data if len(data) <= limit else data[:limit] + "…"
    else:
        row["data"] = "{}"
    return row


def strip_query(path: str) -> str:
    """The path without its query string (which may carry keys: ``?key=...``)."""
    i = path.find("?")
    return path if i < 0 else path[:i]
