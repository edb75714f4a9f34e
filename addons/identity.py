"""Identity: who is calling, and credential custody.

Takes the gateway token from ``Authorization: Bearer``, ``x-api-key`` or the
proxy credentials (``Proxy-Authorization`` on the CONNECT of explicit-proxy
mode), verifies it, records the Identity, removes every token header and
injects the provider's real key (or the MCP server's configured headers).
A bad token gets 401 in the caller's shape; failures here deny, never forward.
"""
from __future__ import annotations

import base64
import binascii
import logging
import weakref

from mitmproxy import connection, http

from proxy import errors, flowmeta
from proxy.identity import Keys, TokenError
from proxy.metrics import REFUSED
from proxy.runtime import Runtime
from proxy.sessions import from_headers

log = logging.getLogger(__name__)


def proxy_credential(value: str) -> str | None:
    """The token from a Proxy-Authorization value (Basic user:token, or Bearer token)."""
    scheme, _, cred = value.partition(" ")
    if scheme.lower() == "bearer":
        return cred.strip() or None
    if scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(cred.strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return password or user or None
    return None


class Identity:
    def __init__(self, rt: Runtime):
        self.rt = rt
        self.keys: Keys = rt.services.setdefault("keys", Keys(rt.store))
        self.connect_tokens: weakref.WeakKeyDictionary[connection.Client, str] = weakref.WeakKeyDictionary()
        self.provider_keys = {name: p for name, p in rt.config.providers.items()}
        self.mcp_headers = {name: s.headers for name, s in rt.config.mcp_servers.items()}
        self._warned: set[str] = set()

    def running(self) -> None:
        self.keys.listen()

    def http_connect(self, flow: http.HTTPFlow) -> None:
        value = flow.request.headers.get("proxy-authorization")
        if value and (token := proxy_credential(value)):
            self.connect_tokens[flow.client_conn] = token
            del flow.request.headers["proxy-authorization"]

    def _token(self, flow: http.HTTPFlow) -> str | None:
        h = flowmeta.headers(flow)
        value = h.get("proxy-authorization")
        if value and (tok := proxy_credential(value)):
            return tok
        if tok := self.connect_tokens.get(flow.client_conn):
            return tok
        auth = h.get("authorization", "")
        if auth[:7].lower() == "bearer " and auth[7:].strip().startswith("alk_"):
            return auth[7:].strip()
        key = h.get("x-api-key")
        if key and key.startswith("alk_"):
            return key
        if auth[:7].lower() == "bearer ":
            return auth[7:].strip()
        return key

    def requestheaders(self, flow: http.HTTPFlow):
        route = flowmeta.route(flow)
        if route is None or flow.response is not None:
            return None
        # a session named by the client's headers, else one per token ("tok:<id>")
        token, session = self._token(flow), from_headers(flowmeta.headers(flow))
        ident = self.keys.cached(token, session)
        if ident is not None:            # seen in the last seconds: decided here, no coroutine, no store read
            sessions = self.rt.services.get("sessions")
            if not ident.session or sessions is None or sessions.known(ident.session) is False:
                self._accept(flow, route, ident)
                return None
        return self._verify(flow, route, token, session)

    async def _verify(self, flow: http.HTTPFlow, route: flowmeta.Route, token: str | None,
                      session: str | None) -> None:
        try:
            ident = await self.keys.verify(token, session)
            sessions = self.rt.services.get("sessions")
            if sessions is not None and ident.session and await sessions.is_ended(ident.session):
                raise TokenError(f"session {ident.session} was ended by an administrator")
        except TokenError as e:
            self._refuse(flow, route.kind, 401, str(e), "invalid_token")
            return
        except Exception as e:          # store down, bug: deny, never forward
            log.exception("identity check failed")
            self._refuse(flow, route.kind, 503, f"Airlock could not check the token: {type(e).__name__}",
                         "identity_unavailable")
            return
        self._accept(flow, route, ident)

    def _accept(self, flow: http.HTTPFlow, route: flowmeta.Route, ident) -> None:
        flow.metadata[flowmeta.IDENTITY] = ident
        self._custody(flow, route)

    def _refuse(self, flow: http.HTTPFlow, kind: str, status: int, message: str, code: str) -> None:
        REFUSED.labels(code).inc()
        flow.metadata[flowmeta.OUTCOME] = code
        flow.response = errors.response(kind, status, message, code,
                                        headers={"www-authenticate": 'Bearer realm="airlock"'}
                                        if status == 401 else None)

    def _custody(self, flow: http.HTTPFlow, route: flowmeta.Route) -> None:
        """The caller's credentials out, the upstream's in: one pass over the header fields (each
        ``del``/``set`` on mitmproxy's Headers rebuilds the whole field tuple)."""
        h = flow.request.headers
        fields = h.fields
        if any(k.lower() in _CREDENTIAL_HEADERS for k, _ in fields):
            fields = tuple(f for f in fields if f[0].lower() not in _CREDENTIAL_HEADERS)
        h.fields = fields + self._upstream_credentials(route)

    def _upstream_credentials(self, route: flowmeta.Route) -> tuple[tuple[bytes, bytes], ...]:
        if route.kind == "mcp":
            return tuple((k.encode("latin-1"), v.encode("utf-8", "surrogateescape"))
                         for k, v in self.mcp_headers.get(route.name, {}).items())
        provider = self.provider_keys.get(route.name)
        key = provider.api_key() if provider else None
        if not key:
            if route.name not in self._warned:
                self._warned.add(route.name)
                log.warning("provider %s: no API key in $%s; forwarding without one", route.name,
                            provider.api_key_env if provider else "?")
            return ()
        if route.kind == "anthropic":
            return ((b"x-api-key", key.encode("utf-8", "surrogateescape")),)
        return ((b"authorization", b"Bearer " + key.encode("utf-8", "surrogateescape")),)


_CREDENTIAL_HEADERS = frozenset({b"authorization", b"x-api-key", b"proxy-authorization"})
