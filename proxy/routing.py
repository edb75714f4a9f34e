"""Where a request goes: gateway prefixes and governed hosts in proxy mode.

Gateway (reverse) listener:
  /openai/v1/<rest>       -> providers.openai.base_url + /<rest>        (kind "openai")
  /<name>/v1/<rest>       -> any provider of kind openai, same rule
  /anthropic/<rest>       -> providers.anthropic.base_url + /<rest>     (kind "anthropic"; rest starts with v1/)
  /mcp/<server>           -> mcp_servers.<server>.url                   (kind "mcp")
  /mcp/<server>/<rest>    -> url + /<rest>
  /mcp/<server>/~/<path>  -> the server's origin + /<path>   (legacy SSE endpoints rewritten by the MCP firewall)
Proxy/sidecar listeners: a request to a configured provider or MCP host gets the same Route; others are "other".

``Route.path`` is always the path relative to the provider's base URL, without the query.
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from .config import Config
from .flowmeta import Route


def listener_of(mode) -> str:
    """The Airlock listener a mitmproxy proxy mode belongs to."""
    from mitmproxy.proxy.mode_specs import ReverseMode, TransparentMode
    if isinstance(mode, ReverseMode):
        return "gateway"
    if isinstance(mode, TransparentMode):
        return "sidecar"
    return "proxy"


@dataclass(frozen=True, slots=True)
class Target:
    kind: str
    name: str
    scheme: str
    host: str
    port: int
    base_path: str           # path of the base URL, no trailing slash

    @classmethod
    def from_url(cls, kind: str, name: str, url: str) -> "Target":
        u = urlsplit(url)
        port = u.port or (443 if u.scheme == "https" else 80)
        return cls(kind, name, u.scheme, u.hostname or "", port, u.path.rstrip("/"))

    @property
    def host_header(self) -> str:
        return self.host if self.port in (80, 443) else f"{self.host}:{self.port}"

    @property
    def origin(self) -> str:
        default = 443 if self.scheme == "https" else 80
        return f"{self.scheme}://{self.host}" + ("" if self.port == default else f":{self.port}")


class Router:
    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.prefixes: dict[str, Target] = {}     # first path segment -> provider target
        self.mcp: dict[str, Target] = {}
        self.by_host: dict[tuple[str, int], list[Target]] = {}
        for name, p in cfg.providers.items():
            t = Target.from_url(p.kind, name, p.base_url)
            self.prefixes[name] = t
            self.by_host.setdefault((t.host, t.port), []).append(t)
        for name, s in cfg.mcp_servers.items():
            t = Target.from_url("mcp", name, s.url)
            self.mcp[name] = t
            self.by_host.setdefault((t.host, t.port), []).append(t)
        # longest base path first, so /v1/mcp wins over / on a shared host
        for targets in self.by_host.values():
            targets.sort(key=lambda t: len(t.base_path), reverse=True)

    @property
    def governed_hosts(self) -> set[str]:
        return {h for h, _ in self.by_host}

    def valid_prefixes(self) -> list[str]:
        out = []
        for name, t in self.prefixes.items():
            out.append(f"/{name}/v1/" if t.kind == "openai" else f"/{name}/v1/")
        out += [f"/mcp/{name}" for name in self.mcp]
        return out

    def gateway(self, path: str) -> tuple[Target, str, str] | None:
        """For a gateway request path (no query): (target, upstream path, route path) or None."""
        parts = path.split("/", 3)           # "", first, second, rest
        if len(parts) < 2 or not parts[1]:
            return None
        first = parts[1]
        if first == "mcp":
            if len(parts) < 3 or parts[2] not in self.mcp:
                return None
            t = self.mcp[parts[2]]
            rest = parts[3] if len(parts) > 3 else ""
            if rest.startswith("~/"):
                upstream_path = "/" + rest[2:]
            elif rest:
                upstream_path = t.base_path + "/" + rest
            else:
                upstream_path = t.base_path or "/"
            return t, upstream_path, "/" + rest if rest else "/"
        t = self.prefixes.get(first)
        if t is None:
            return None
        rest = path[len(first) + 1:]        # starts with "/" or is ""
        if t.kind == "openai":
            if not (rest == "/v1" or rest.startswith("/v1/")):
                return None
            rest = rest[3:]
            return t, t.base_path + rest, rest or "/"
        if not (rest == "/v1" or rest.startswith("/v1/")):
            return None
        return t, t.base_path + rest, rest

    def proxied(self, host: str, port: int, path: str) -> Target | None:
        """For a proxy-mode request: the governed target it addresses, if any."""
        for t in self.by_host.get((host, port), ()):
            if t.base_path == "" or path == t.base_path or path.startswith(t.base_path + "/") \
                    or path.startswith(t.base_path + "?"):
                return t
        return None

    @staticmethod
    def route_path(t: Target, path: str) -> str:
        p = path.split("?", 1)[0]
        if t.kind == "mcp":
            return p[len(t.base_path):] or "/"
        return p[len(t.base_path):] or "/"

    def route_for(self, t: Target, listener: str, route_path: str) -> Route:
        return Route(listener=listener, kind=t.kind, name=t.name, path=route_path,
                     upstream=t.origin + t.base_path)
