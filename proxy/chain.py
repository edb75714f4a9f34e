"""Airlock's addons presented to mitmproxy as ONE addon.

mitmproxy dispatches every event to every addon: it walks the chain, looks each
hook up with ``getattr`` and wraps each call in a context manager. With nine
addons that bookkeeping cost more than the addons' own work. ``AddonChain``
precomputes, per hook and per route kind, the children that implement it, and
calls them in order in one dispatch:

- an addon may declare ``route_kinds`` (e.g. ``{"mcp"}``): its flow hooks are then
  only called for flows of those route kinds (``None`` in the set = ungoverned flows);
- flow hooks run synchronously until the first child returns an awaitable, so a
  flow that needs no async work costs no coroutine.

A child that intercepts the flow (``flow.intercept()``) in a request-phase hook parks the
rest of that hook: the children after it run when whoever intercepted calls
``resume_rest(flow)``, then ``flow.resume()`` (a call held for approval: the others
see it once, after the decision, and no coroutine stack waits meanwhile).

It is also the one place where Airlock fails closed: mitmproxy logs an exception
raised by a hook and then forwards the request. Here an exception in a request
phase hook of a governed flow answers the caller with an error instead, so a bug
can never let an undecided call through.
"""
from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

from mitmproxy import hooks

from . import errors, flowmeta
from .metrics import REFUSED

log = logging.getLogger("airlock.chain")
# hooks before the request leaves for the upstream: a failure there must deny a governed flow
_REQUEST_PHASE = {"requestheaders", "request", "http_connect"}
# hooks whose first argument is an HTTP flow, always dispatched asynchronously by mitmproxy
_FLOW_HOOKS = {"requestheaders", "request", "responseheaders", "response", "error"}

Impl = tuple[str, Callable]
REST = "airlock.chain_rest"       # flow.metadata: the parked rest of a hook (see resume_rest)


def _hook_names() -> list[str]:
    # importing these registers every hook class in hooks.all_hooks
    import mitmproxy.addonmanager  # noqa: F401
    import mitmproxy.log  # noqa: F401
    import mitmproxy.proxy.layers  # noqa: F401
    import mitmproxy.proxy.layers.http  # noqa: F401
    import mitmproxy.proxy.server_hooks  # noqa: F401
    return sorted(hooks.all_hooks)


class AddonChain:
    def __init__(self, children: list[Any]):
        self._children = list(children)          # not ``addons``: mitmproxy would traverse it again
        for name in _hook_names():
            impls = [(c, (type(c).__name__, getattr(c, name))) for c in self._children
                     if callable(getattr(c, name, None))]
            if not impls:
                continue
            guard = _fail_closed if name in _REQUEST_PHASE else _log_only
            if name in _FLOW_HOOKS:
                kinds = [(_kinds(c), *impl) for c, impl in impls]
                setattr(self, name, _flow_dispatcher(name, kinds, guard))
            else:
                setattr(self, name, _dispatcher(name, [impl for _, impl in impls], guard))

    def __repr__(self) -> str:
        return f"AddonChain({', '.join(type(c).__name__ for c in self._children)})"


def _kinds(child: Any) -> frozenset | None:
    kinds = getattr(child, "route_kinds", None)
    return frozenset(kinds) if kinds is not None else None


def _flow_dispatcher(name: str, impls: list[tuple[frozenset | None, str, Callable]], guard: Callable) -> Callable:
    """Call each child that wants this flow's route kind. The route is read at each filtered
    child, not once: routing sets it in ``requestheaders``, the same hook the others run in."""
    route_key = flowmeta.ROUTE
    parks = name in _REQUEST_PHASE
    tails = [impls[i + 1:] for i in range(len(impls))]     # the children after each (shared, not per call)

    def wanted(kinds, flow) -> bool:
        if kinds is None:
            return True
        route = flow.metadata.get(route_key)
        return (route.kind if route is not None else None) in kinds

    def dispatch(flow, *rest):
        args = (flow, *rest)
        for i, (kinds, owner, func) in enumerate(impls):
            if kinds is not None and not wanted(kinds, flow):
                continue
            try:
                res = func(*args)
            except Exception as e:  # noqa: BLE001 - one addon's bug must not let a call through
                if guard(name, owner, e, args):
                    return None
                continue
            if res is not None and inspect.isawaitable(res):
                return _run_async(name, tails[i], args, guard, wanted, (res, owner))
            if parks and flow.intercepted:
                return _park(name, tails[i], args, guard, wanted)
        return None

    dispatch.__name__ = name
    return dispatch


async def _run_async(name: str, impls: list[tuple[frozenset | None, str, Callable]], args: tuple,
                     guard: Callable, wanted: Callable | None = None, started: tuple | None = None,
                     parks: bool = True) -> None:
    """Call each child in order, awaiting what it returns; ``wanted`` filters by route kind.
    ``started``: (awaitable, owner) of a child already called, awaited first (one frame for the
    rest of the hook). ``parks``: a flow hook whose flow a child intercepts parks the rest."""
    parks = parks and wanted is not None and name in _REQUEST_PHASE
    if started is not None:
        (res, owner), started = started, None       # no reference to it once done
        try:
            await res
        except Exception as e:  # noqa: BLE001
            if guard(name, owner, e, args):
                return
        if parks and args[0].intercepted:
            return _park(name, impls, args, guard, wanted)
    for i, (kinds, owner, func) in enumerate(impls):
        if kinds is not None and not wanted(kinds, args[0]):
            continue
        try:
            res = func(*args)
            if res is not None and inspect.isawaitable(res):
                await res
        except Exception as e:  # noqa: BLE001
            if guard(name, owner, e, args):
                return
        if parks and args[0].intercepted:
            return _park(name, impls[i + 1:], args, guard, wanted)


def _park(name: str, impls: list, args: tuple, guard: Callable, wanted: Callable | None) -> None:
    args[0].metadata[REST] = (name, impls, args[1:], guard, wanted)


def resume_rest(flow: Any) -> Any:
    """The children a ``flow.intercept()`` parked (an awaitable, or None when none are left): await it,
    then ``flow.resume()``; the flow is still intercepted while they run. Once: the parked rest is
    forgotten."""
    parked = flow.metadata.pop(REST, None)
    if parked is None:
        return None
    name, impls, rest, guard, wanted = parked
    return _run_async(name, impls, (flow, *rest), guard, wanted, parks=False) if impls else None


def _dispatcher(name: str, impls: list[Impl], guard: Callable) -> Callable:
    if any(inspect.iscoroutinefunction(f) for _, f in impls):
        unfiltered = [(None, owner, func) for owner, func in impls]

        async def dispatch(*args):
            await _run_async(name, unfiltered, args, guard)
    else:
        def dispatch(*args):
            for owner, func in impls:
                try:
                    func(*args)
                except Exception as e:  # noqa: BLE001
                    if guard(name, owner, e, args):
                        return
    dispatch.__name__ = name
    return dispatch


def _log_only(hook: str, owner: str, exc: Exception, args: tuple) -> bool:
    log.error("addon %s failed in %s: %s", owner, hook, exc, exc_info=exc)
    return False


def _fail_closed(hook: str, owner: str, exc: Exception, args: tuple) -> bool:
    """Log; for a governed flow still undecided, answer with an error and stop the chain."""
    log.error("addon %s failed in %s: %s", owner, hook, exc, exc_info=exc)
    flow = args[0] if args else None
    route = flowmeta.route(flow) if flow is not None and hasattr(flow, "metadata") else None
    if route is None or not route.governed:
        return False
    if getattr(flow, "response", None) is None:
        REFUSED.labels("addon_error").inc()
        flow.metadata[flowmeta.OUTCOME] = "addon_error"
        flow.response = errors.response(route.kind, 500, f"Airlock failed while checking this request "
                                        f"({owner}.{hook}: {type(exc).__name__}); it was not forwarded",
                                        "airlock_internal_error")
    return True
