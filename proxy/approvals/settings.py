"""The ``approvals:`` section of airlock.yaml (every key is documented in README.md, "Human approvals")."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..config import Config, ConfigError

CHANNEL_TYPES = ("webhook", "slack", "mattermost", "email", "ntfy")
_KEYS = {"public_url", "retention_seconds", "sweep_seconds", "keepalive_seconds", "max_hold_seconds",
         "poll_seconds", "link_secret_env", "channels"}


@dataclass(slots=True)
class Settings:
    public_url: str = "http://127.0.0.1:8788"   # where people reach the admin listener (links)
    retention_seconds: float = 7 * 86400        # decided requests stay listable this long
    sweep_seconds: float = 0.5                  # expiry / escalation / store health tick
    keepalive_seconds: float = 10.0             # progress notifications for held SSE calls
    max_hold_seconds: float = 3300.0            # cap on a workflow's timeout_seconds (< tcp_timeout 3600)
    poll_seconds: float = 15.0                  # poll interval suggested to async callers
    link_secret_env: str | None = None          # env var holding the link signing secret
    channels: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_config(cls, cfg: Config | None) -> "Settings":
        s = cls()
        if cfg is None:
            return s
        s.public_url = cfg.admin_url()
        raw = cfg.extra.get("approvals") or {}
        src = cfg.source
        if not isinstance(raw, dict):
            raise ConfigError(src, "approvals", "must be a mapping")
        for k in raw:
            if k not in _KEYS:
                raise ConfigError(src, f"approvals.{k}", "unknown key", f"valid keys: {', '.join(sorted(_KEYS))}")
        for k in ("retention_seconds", "sweep_seconds", "keepalive_seconds", "max_hold_seconds", "poll_seconds"):
            if k in raw:
                v = raw[k]
                if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
                    raise ConfigError(src, f"approvals.{k}", f"{v!r} must be a positive number")
                setattr(s, k, float(v))
        if raw.get("public_url"):
            url = str(raw["public_url"])
            if not url.startswith(("http://", "https://")):
                raise ConfigError(src, "approvals.public_url", f"{url!r} is not an http(s) URL",
                                  "the address people use to reach the admin listener")
            s.public_url = url
        s.public_url = s.public_url.rstrip("/")
        s.link_secret_env = raw.get("link_secret_env")
        chans = raw.get("channels") or {}
        if not isinstance(chans, dict):
            raise ConfigError(src, "approvals.channels", "must be a mapping of name -> settings")
        for name, spec in chans.items():
            check_channel(str(name), spec, src, f"approvals.channels.{name}")
            s.channels[str(name)] = dict(spec)
        return s


def channel_type(name: str, spec: dict[str, Any]) -> str:
    return str(spec.get("type") or name)


def check_channel(name: str, spec: Any, source: str, key: str) -> None:
    if not isinstance(spec, dict):
        raise ConfigError(source, key, "must be a mapping", "for example {type: webhook, url: https://...}")
    typ = channel_type(name, spec)
    if typ not in CHANNEL_TYPES:
        raise ConfigError(source, f"{key}.type", f"{typ!r} is not a channel type",
                          f"one of {', '.join(CHANNEL_TYPES)}")
    if typ == "email":
        if not spec.get("host") or not spec.get("to"):
            raise ConfigError(source, key, "email needs host and to", "{type: email, host: smtp.example.com, "
                              "port: 587, from: airlock@example.com, to: [ops@example.com]}")
    elif not str(spec.get("url", "")).startswith(("http://", "https://")):
        raise ConfigError(source, f"{key}.url", f"{spec.get('url')!r} is not an http(s) URL")
