"""airlock.yaml: load, expand ``${ENV}``, validate, apply flag overrides.

Errors name the file and the key and end with a hint; the CLI turns them into
exit code 2. Every key is documented in the README ("Configuration").
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEFAULT_LISTEN = {"gateway": "127.0.0.1:8787", "proxy": "127.0.0.1:8080", "admin": "127.0.0.1:8788"}
DEFAULT_PROVIDERS = {
    "openai": {"base_url": "https://api.openai.com/v1", "api_key_env": "OPENAI_API_KEY"},
    "anthropic": {"base_url": "https://api.anthropic.com", "api_key_env": "ANTHROPIC_API_KEY"},
}
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(Exception):
    """A bad config value: ``str()`` says file, key and what to do."""

    def __init__(self, source: str, key: str, problem: str, hint: str = ""):
        self.source, self.key, self.problem, self.hint = source, key, problem, hint
        msg = f"{source}: {key}: {problem}"
        super().__init__(msg + (f" (hint: {hint})" if hint else ""))


@dataclass(slots=True)
class Provider:
    name: str
    base_url: str
    api_key_env: str | None = None
    kind: str = "openai"          # wire format: "openai" or "anthropic"

    def api_key(self) -> str | None:
        return os.environ.get(self.api_key_env) if self.api_key_env else None


@dataclass(slots=True)
class McpServer:
    name: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Config:
    source: str = "<defaults>"
    base_dir: Path = field(default_factory=Path.cwd)
    listen: dict[str, str | None] = field(default_factory=lambda: dict(DEFAULT_LISTEN))
    admin_token_env: str = "AIRLOCK_ADMIN_TOKEN"
    redis: str | None = None
    clickhouse: str = "chdb://./var/audit"
    data_dir: str = "./var"
    policies: list[str] = field(default_factory=lambda: ["policies/default.yaml"])
    providers: dict[str, Provider] = field(default_factory=dict)
    mcp_servers: dict[str, McpServer] = field(default_factory=dict)
    max_body_bytes: int = 10 * 1024 * 1024
    upstream_timeout: float = 600.0       # seconds; also mitmproxy's tcp_timeout floor
    drain_seconds: float = 30.0
    ssl_insecure: bool = False            # skip upstream certificate checks (tests only)
    extra: dict[str, Any] = field(default_factory=dict)   # sections owned by other modules

    # -- derived -------------------------------------------------------------------------
    def admin_token(self) -> str | None:
        return os.environ.get(self.admin_token_env)

    def path(self, value: str) -> Path:
        """A path from the config, relative to the config file's folder."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.base_dir / p)

    def clickhouse_dsn(self) -> str:
        dsn = self.clickhouse
        if dsn.startswith("chdb://") and not dsn.startswith("chdb:///"):
            return "chdb://" + str(self.path(dsn[len("chdb://"):]).resolve())
        return dsn

    def admin_url(self) -> str:
        host, port = split_hostport(self.listen.get("admin") or DEFAULT_LISTEN["admin"], "listen.admin")
        return f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"


def split_hostport(value: str, key: str, source: str = "airlock.yaml") -> tuple[str, int]:
    host, sep, port = str(value).rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(source, key, f"{value!r} is not HOST:PORT", "for example 127.0.0.1:8787")
    return host.strip("[]") or "127.0.0.1", int(port)


def expand_env(value: Any, source: str, key: str = "") -> Any:
    """Replace ``${NAME}`` (and ``${NAME:-default}``) in every string of ``value``."""
    if isinstance(value, str):
        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            raise ConfigError(source, key or "?", f"environment variable {name} is not set",
                              f"export {name}=... or write ${{{name}:-default}}")
        return _ENV.sub(sub, value)
    if isinstance(value, dict):
        return {k: expand_env(v, source, f"{key}.{k}" if key else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, source, f"{key}[{i}]") for i, v in enumerate(value)]
    return value


_TOP_KEYS = {"listen", "auth", "store", "audit", "policies", "providers", "mcp_servers", "limits",
             "data_dir", "tls", "approvals", "sessions", "gateway", "metering", "discover"}
_OWNED_ELSEWHERE = {"approvals", "sessions", "gateway", "metering", "discover"}


def _expect(cond: bool, source: str, key: str, problem: str, hint: str = "") -> None:
    if not cond:
        raise ConfigError(source, key, problem, hint)


def _section(raw: dict, name: str, source: str, allowed: set[str]) -> dict:
    sec = raw.get(name) or {}
    _expect(isinstance(sec, dict), source, name, "must be a mapping")
    for k in sec:
        _expect(k in allowed, source, f"{name}.{k}", "unknown key", f"valid keys: {', '.join(sorted(allowed))}")
    return sec


def load(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Load ``path`` (or defaults when None and no ./airlock.yaml), then apply overrides."""
    if path is None and Path("airlock.yaml").exists():
        path = "airlock.yaml"
    raw: dict[str, Any] = {}
    source = "<defaults>"
    base = Path.cwd()
    if path is not None:
        p = Path(path)
        source = str(p)
        if not p.exists():
            raise ConfigError(source, "-", "file not found", "pass -c with the path of airlock.yaml")
        try:
            raw = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f"line {mark.line + 1}" if mark else "-"
            raise ConfigError(source, where, f"invalid YAML: {getattr(e, 'problem', e)}",
                              "check indentation and quoting") from None
        _expect(isinstance(raw, dict), source, "-", "top level must be a mapping")
        base = p.resolve().parent
    return from_dict(raw, source, base, overrides)


def from_dict(raw: dict[str, Any], source: str = "<dict>", base: Path | None = None,
              overrides: dict[str, Any] | None = None) -> Config:
    for k in raw:
        _expect(k in _TOP_KEYS, source, str(k), "unknown key", f"valid keys: {', '.join(sorted(_TOP_KEYS))}")
    raw = expand_env(raw, source)
    cfg = Config(source=source, base_dir=base or Path.cwd())

    listen = _section(raw, "listen", source, {"gateway", "proxy", "admin", "sidecar"})
    for k, v in listen.items():
        if v not in (None, False, ""):
            split_hostport(v, f"listen.{k}", source)
        cfg.listen[k] = v or None

    auth = _section(raw, "auth", source, {"admin_token_env"})
    cfg.admin_token_env = auth.get("admin_token_env", cfg.admin_token_env)

    store = _section(raw, "store", source, {"redis"})
    cfg.redis = store.get("redis")
    _expect(cfg.redis is None or str(cfg.redis).startswith(("redis://", "rediss://", "unix://")), source,
            "store.redis", f"{cfg.redis!r} is not a redis URL", "redis://host:6379/0")

    audit = _section(raw, "audit", source, {"clickhouse", "wal_dir", "batch_size", "flush_seconds",
                                             "queue_size", "preview_chars", "fail_closed", "durable_answers",
                                             "group_commit_ms"})
    _expect(isinstance(audit.get("durable_answers", True), bool), source, "audit.durable_answers",
            f"{audit.get('durable_answers')!r} is not true or false", "true")
    gc_ms = audit.get("group_commit_ms", 10)
    _expect(isinstance(gc_ms, (int, float)) and not isinstance(gc_ms, bool) and 1 <= gc_ms <= 1000, source,
            "audit.group_commit_ms", f"{gc_ms!r} is not a number of milliseconds from 1 to 1000", "10")
    cfg.clickhouse = audit.get("clickhouse", cfg.clickhouse)
    _expect(str(cfg.clickhouse).startswith(("chdb://", "http://", "https://")), source, "audit.clickhouse",
            f"{cfg.clickhouse!r} is not a ClickHouse DSN", "chdb://./var/audit or http://user:pass@host:8123/db")
    cfg.extra["audit"] = audit

    if "data_dir" in raw:
        cfg.data_dir = str(raw["data_dir"])

    pols = raw.get("policies", cfg.policies)
    if isinstance(pols, str):
        pols = [pols]
    _expect(isinstance(pols, list) and all(isinstance(x, str) for x in pols), source, "policies",
            "must be a list of files or folders")
    cfg.policies = list(pols)

    providers = dict(DEFAULT_PROVIDERS)
    prov_raw = raw.get("providers") or {}
    _expect(isinstance(prov_raw, dict), source, "providers", "must be a mapping of name -> {base_url, api_key_env}")
    providers.update(prov_raw)
    for name, spec in providers.items():
        key = f"providers.{name}"
        _expect(isinstance(spec, dict), source, key, "must be a mapping")
        for k in spec:
            _expect(k in {"base_url", "api_key_env", "kind"}, source, f"{key}.{k}", "unknown key",
                    "valid keys: api_key_env, base_url, kind")
        url = spec.get("base_url") or DEFAULT_PROVIDERS.get(name, {}).get("base_url")
        _expect(isinstance(url, str) and url.startswith(("http://", "https://")), source, f"{key}.base_url",
                f"{url!r} is not an http(s) URL")
        kind = spec.get("kind") or ("anthropic" if name == "anthropic" else "openai")
        _expect(kind in ("openai", "anthropic"), source, f"{key}.kind", f"{kind!r} is not openai or anthropic")
        cfg.providers[name] = Provider(name, url.rstrip("/"), spec.get("api_key_env",
                                       DEFAULT_PROVIDERS.get(name, {}).get("api_key_env")), kind)

    mcp_raw = raw.get("mcp_servers") or {}
    _expect(isinstance(mcp_raw, dict), source, "mcp_servers", "must be a mapping of name -> {url, headers}")
    for name, spec in mcp_raw.items():
        key = f"mcp_servers.{name}"
        _expect(re.fullmatch(r"[A-Za-z0-9_.-]+", str(name)) is not None, source, key,
                "server names may use letters, digits, '.', '_' and '-'")
        _expect(isinstance(spec, dict), source, key, "must be a mapping")
        for k in spec:
            _expect(k in {"url", "headers"}, source, f"{key}.{k}", "unknown key", "valid keys: headers, url")
        url = spec.get("url")
        _expect(isinstance(url, str) and url.startswith(("http://", "https://")), source, f"{key}.url",
                f"{url!r} is not an http(s) URL")
        headers = spec.get("headers") or {}
        _expect(isinstance(headers, dict), source, f"{key}.headers", "must be a mapping")
        cfg.mcp_servers[str(name)] = McpServer(str(name), url, {str(k): str(v) for k, v in headers.items()})

    limits = _section(raw, "limits", source, {"max_body_bytes", "upstream_timeout_seconds", "drain_seconds"})
    for k, attr in (("max_body_bytes", "max_body_bytes"), ("upstream_timeout_seconds", "upstream_timeout"),
                    ("drain_seconds", "drain_seconds")):
        if k in limits:
            v = limits[k]
            _expect(isinstance(v, (int, float)) and v > 0, source, f"limits.{k}", f"{v!r} must be a positive number")
            setattr(cfg, attr, type(getattr(cfg, attr))(v))

    tls = _section(raw, "tls", source, {"ssl_insecure"})
    cfg.ssl_insecure = bool(tls.get("ssl_insecure", False))

    for name in _OWNED_ELSEWHERE:
        if name in raw:
            cfg.extra[name] = raw[name]

    for k, v in (overrides or {}).items():
        if v is None:
            continue
        if k in ("gateway", "proxy", "admin", "sidecar"):
            split_hostport(v, f"--{k}", "command line")
            cfg.listen[k] = v
        else:
            setattr(cfg, k, v)
    return cfg
