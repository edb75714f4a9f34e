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
    "usage",            # before 2026-11-24: a model call's usage row (now carried by its request row)
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
MAX_INT = 2**63 - 1

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


_SCALARS = frozenset({bool, int, float})


def secret_key(k: str) -> bool:
    """Is ``k`` a key whose value is a credential whatever it looks like."""
    return _SECRET_KEY.match(k) is not None


class Redactor:
    """Removes credentials from strings and nested values.

    ``literals`` are exact secret values known to the process (provider keys from the
    environment); they are removed wherever they appear, whatever their shape.
    """

    def __init__(self, literals: list[str] | None = None, preview_chars: int = 512):
        self.literals = sorted({s for s in (literals or []) if s and len(s) >= 6}, key=len, reverse=True)
        self.preview_chars = max(16, int(preview_chars))
        # shorter strings cannot hold a secret: the shortest pattern match is 12 characters
        self._min = min([12] + [len(x) for x in self.literals])
        self._cache: dict[str, str] = {}        # short repeated values (accounts, models, paths)
        self._keys: dict[str, bool] = {}         # field name -> is a credential key

    def text(self, s: str) -> str:
        if len(s) < self._min:
            return s
        hit = self._cache.get(s)
        if hit is not None:
            return hit
        out = s
        for lit in self.literals:
            if lit in out:
                out = out.replace(lit, REDACTED)
        if _SECRET_RE.search(out):
            out = _SECRET_RE.sub(REDACTED, out)
        if len(s) <= 128:
            if len(self._cache) >= 8192:
                self._cache.clear()
            self._cache[s] = out
        return out

    def column(self, v: Any) -> str:
        """What a string column holds of ``v``: redacted, at most 1,024 characters, "" for None."""
        if v.__class__ is str:
            if len(v) < self._min:
                return v
            hit = self._cache.get(v)
            return hit if hit is not None else self.text(v)[:1024]
        return "" if v is None else self.text(str(v))[:1024]

    def secret_key(self, k: str) -> bool:
        """Is ``k`` a key whose value is a credential whatever it looks like (cached: keys repeat)."""
        hit = self._keys.get(k)
        if hit is None:
            hit = self._keys[k] = secret_key(k)
            if len(self._keys) > 4096:
                self._keys.clear()
        return hit

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
            secret = self.secret_key
            for i, (k, x) in enumerate(v.items()):
                if i >= 64:
                    out["…"] = f"{len(v) - 64} more keys"
                    break
                if k.__class__ is not str:
                    k = str(k)
                if secret(k) and x not in (None, ""):
                    out[k] = REDACTED
                elif x is None or x.__class__ in _SCALARS:     # the common case: no call
                    out[k] = x
                else:
                    out[k] = self.value(x, depth + 1)
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


# Other names emitters use for the typed columns (used when the column itself is absent or not a number).
_ALIASES = {"tokens_in": ("input_tokens", "prompt_tokens"), "tokens_out": ("output_tokens", "completion_tokens"),
            "cost": ("cost_usd",), "status": ("http_status", "status_code"), "latency_ms": ("duration_ms",)}
_ALIAS_OF = {a: col for col, names in _ALIASES.items() for a in names}
_TYPE = {**{c: 1 for c in STR_COLUMNS[1:]}, **{c: 2 for c in INT_COLUMNS}, **{c: 3 for c in FLOAT_COLUMNS}}
_STR_COLS, _INT_COLS, _FLOAT_COLS = frozenset(STR_COLUMNS[1:]), frozenset(INT_COLUMNS), frozenset(FLOAT_COLUMNS)
# A row before its chain columns, in column order: copying it is cheaper than building the dict key by key,
# and the keys keep their order (so the WAL line is the same) whichever fields an event sets.
ROW_TEMPLATE = {"ts": 0, "kind": "", **{c: "" for c in STR_COLUMNS[1:]}, **{c: 0 for c in INT_COLUMNS},
                **{c: 0.0 for c in FLOAT_COLUMNS}, "data": "{}"}
_INF = float("inf")


def _number(v: Any, conv) -> Any:
    """``conv(v)`` if v is a usable number (or numeric text), else None."""
    if v is None or isinstance(v, bool):
        return None
    try:
        x = conv(float(v)) if isinstance(v, str) else conv(v)
    except (TypeError, ValueError, OverflowError):
        return None
    if conv is int:
        return x if 0 <= x <= MAX_INT else None
    return x if x == x and abs(x) != _INF else None


def _odd_number(row: dict[str, Any], rest: dict[str, Any], k: str, v: Any, conv) -> None:
    """A number column's value that is not a plain number: converted if it can be, else kept in ``data``."""
    if v is not None:
        x = _number(v, conv)
        if x is None:
            rest[k] = v
        else:
            row[k] = x


def build_row(kind: str, fields: dict[str, Any], redactor: Redactor, ts: float | None = None) -> dict[str, Any]:
    """A row (without chain columns) from an emitted event. Never raises on odd input.

    Typed columns get their value (redacted, or converted to a number); everything else, and any value a
    typed column cannot hold (a textual status, a negative count), goes redacted and truncated into ``data``.
    """
    if ts is None:
        t = fields.get("ts")
        ts = float(t) if isinstance(t, (int, float)) and not isinstance(t, bool) else time.time()
    row = ROW_TEMPLATE.copy()
    row["ts"] = int(ts * 1_000_000)
    row["kind"] = str(kind)[:64]
    column, short = redactor.column, redactor._min
    rest: dict[str, Any] = {}
    aliased: dict[str, Any] | None = None
    # one set test per field in the common case (a string column); the checks of ``column`` and ``_number``
    # inlined for the values most events carry (short strings, plain numbers)
    for k, v in fields.items():
        if k in _STR_COLS:
            row[k] = v if v.__class__ is str and len(v) < short else column(v)
        elif k in _INT_COLS:
            if v.__class__ is int and 0 <= v <= MAX_INT:
                row[k] = v
            else:
                _odd_number(row, rest, k, v, int)
        elif k in _FLOAT_COLS:
            if v.__class__ in (float, int) and v == v and abs(v) != _INF:
                row[k] = float(v)
            else:
                _odd_number(row, rest, k, v, float)
        elif k != "ts":
            rest[k] = v
            col = _ALIAS_OF.get(k)
            if col is not None:
                if aliased is None:
                    aliased = {}
                if col not in aliased:
                    aliased[col] = v
    if aliased:
        for col, v in aliased.items():
            if fields.get(col) is None or col in rest:
                x = _number(v, int if _TYPE[col] == 2 else float)
                if x is not None:
                    row[col] = x
    if not row["tokens"]:
        row["tokens"] = row["tokens_in"] + row["tokens_out"]
    if rest:
        data = orjson.dumps(redactor.value(rest), option=orjson.OPT_NON_STR_KEYS, default=str).decode()
        limit = redactor.preview_chars * 8
        row["data"] = data if len(data) <= limit else data[:limit] + "…"
    return row


def strip_query(path: str) -> str:
    """The path without its query string (which may carry keys: ``?key=...``)."""
    i = path.find("?")
    return path if i < 0 else path[:i]
