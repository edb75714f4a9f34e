"""Gateway: admission of model calls (OpenAI and Anthropic shapes).

Allowed models (403 in the provider's shape naming the rule), ``/models``
filtered to what the caller may use, an input-token estimate and an atomic
budget reservation (429), rate limits (429 + ``retry-after``), a model with
no price under a hard USD budget refused, and ``stream_options.include_usage``
asked of the upstream for Chat streams. The work is in ``proxy.meter``; the
metering addon finishes what this one starts (``flow.metadata[CALL]``).
"""
from __future__ import annotations

import asyncio
import logging

import orjson
from mitmproxy import http

from proxy import errors, flowmeta
from proxy.meter import admission, metrics, tokens
from proxy.meter.record import usage_row
from proxy.meter.stream import CALL
from proxy.runtime import Runtime

log = logging.getLogger(__name__)
MODEL_KINDS = ("openai", "anthropic")


class Gateway:
    # AddonChain calls this addon's flow hooks only for these route kinds
    route_kinds = frozenset({"openai", "anthropic"})

    def __init__(self, rt: Runtime):
        self.rt = rt
        settings = admission.Settings.from_config(rt.config.extra.get("gateway"), rt.config.source)
        self.keeper = admission.Gatekeeper(rt.store, settings)
        rt.services.setdefault("gateway", self.keeper)
        tokens.configure(rt.config.path(rt.config.data_dir) / "tiktoken")

    async def running(self) -> None:
        # load the BPE files off the event loop now, not on the first model call
        loop = asyncio.get_running_loop()
        for name in ("o200k_base", "cl100k_base"):
            try:
                await loop.run_in_executor(None, tokens.encoding, name)
            except Exception:
                log.exception("gateway: could not load the %s tokenizer", name)

    def _engine(self):
        holder = self.rt.policy
        return getattr(holder, "engine", None) if holder is not None else None

    def request(self, flow: http.HTTPFlow):
        route = flow.metadata.get(flowmeta.ROUTE)
        if route is None or route.kind not in MODEL_KINDS or flow.response is not None:
            return None
        try:
            body = flowmeta.request_json(flow) if flow.request.method == "POST" else None
            identity = flow.metadata.get(flowmeta.IDENTITY)
            got = self.keeper.admit_now(self._engine(), identity, route.kind, route.name, route.path, body)
            if got is None:             # a budget or rate limit applies: the store decides, awaited
                return self._admit(flow, route, body, identity)
            self._apply(flow, route, body, identity, *got)
        except Exception:   # fail closed: a request whose admission failed is never forwarded
            self._failed(flow, route)
        return None

    async def _admit(self, flow: http.HTTPFlow, route, body, identity) -> None:
        try:
            call, refusal = await self.keeper.admit(self._engine(), identity, route.kind, route.name,
                                                    route.path, body)
            if refusal is None and call is not None and call.admission is not None \
                    and flow.client_conn.timestamp_end is not None:
                # The caller left while we reserved: give the reservation back and do not forward the
                # call (forwarded, the provider would bill a call no reservation covers).
                await self.keeper.ledger.release(call.admission)
                call.admission = None
                flow.metadata[CALL] = call
                flow.metadata[flowmeta.OUTCOME] = "client_disconnected"
                if flow.killable:
                    flow.kill()
                return
            self._apply(flow, route, body, identity, call, refusal)
        except Exception:
            call = self._failed(flow, route)
            if call is not None and call.admission is not None:
                try:
                    await self.keeper.ledger.release(call.admission)
                except Exception:
                    log.exception("gateway: could not release a reservation")
                call.admission = None

    def _failed(self, flow: http.HTTPFlow, route):
        """Answer a call whose admission raised (never forwarded); returns its call, if any."""
        log.exception("gateway: admission failed for %s %s", route.name, route.path)
        metrics.FAILURES.labels("admission").inc()
        flow.metadata[flowmeta.OUTCOME] = "gateway_error"
        flow.response = errors.response(route.kind, 500, "Airlock could not admit this model call "
                                        "(internal error, see the Airlock log); it was not forwarded",
                                        "gateway_error")
        return flow.metadata.get(CALL)

    def _apply(self, flow: http.HTTPFlow, route, body, identity, call, refusal) -> None:
        """What the admission decided, on the flow: refused in the provider's shape, or sent on."""
        if call is None or (call.api == "other" and refusal is None):
            return
        flow.metadata[CALL] = call
        if refusal is not None:
            call.settled = True
            flow.metadata[flowmeta.OUTCOME] = refusal.code
            flow.response = errors.response(route.kind, refusal.status, refusal.message, refusal.code,
                                            headers=refusal.headers())
            metrics.CALLS.labels(call.provider, call.api, "refused").inc()
            row = usage_row(call, identity, "refused", http_status=refusal.status, reason=refusal.message)
            row["rule"] = refusal.rule
            flow.metadata[flowmeta.USAGE] = row      # recorded in the call's request row (addons.audit)
            return
        if call.stream:
            flow.request.headers["accept-encoding"] = "identity"
        if isinstance(body, dict):
            new = self.keeper.upstream_body(call, body)
            if new is not None:
                flowmeta.set_request_json(flow, new)

    def response(self, flow: http.HTTPFlow) -> None:
        call = flow.metadata.get(CALL)
        if call is None or call.api != "models" or flow.response is None or flow.response.status_code != 200:
            return
        try:
            body = orjson.loads(flow.response.get_content(strict=False) or b"")
            flow.response.content = orjson.dumps(admission.filter_models(
                self._engine(), flow.metadata.get(flowmeta.IDENTITY), body))
        except (orjson.JSONDecodeError, ValueError):
            metrics.FAILURES.labels("models_filter").inc()
            log.warning("gateway: upstream /models answer is not JSON; refused rather than shown unfiltered")
            route = flow.metadata.get(flowmeta.ROUTE)
            flow.response = errors.response(route.kind if route else "openai", 502,
                                            "the provider's model list could not be read", "bad_upstream")
