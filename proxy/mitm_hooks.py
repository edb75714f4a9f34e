"""Where Airlock changes how mitmproxy dispatches hooks (re-check on upgrade: mitmproxy 12.3, Python 3.12).

Part of ``proxy.mitm_patches`` (its ``apply()`` calls ``apply()`` here). Per request mitmproxy runs four
flow hooks, each through the connection handler's hook task, ``AddonManager.handle_lifecycle`` and
``trigger_event``; a call held for approval is an intercepted flow that waits, 10,000 at once.

- ``_lean_addon_manager``: no suspended context managers or generators while a hook awaits; the addon
  tree walked once per event name, not per event; no ``update`` event when no addon has one.
- ``_hook_args_by_class``: a hook's arguments without ``dataclasses.fields()`` each time.
- ``_lean_flow_resume`` / ``_park_intercepted_hooks``: ``wait_for_resume`` is one future instead of an
  ``asyncio.Event`` and two coroutines, and the hook's task ends once the addons have run: the flow's
  resume completes the hook from a callback (no task, coroutines or task-set entries per held call).

Bare mitmproxy with all of Airlock's patches, callgrind, sequential keep-alive requests: 2.98M -> 2.59M
instructions per request from the first two.
"""
from __future__ import annotations

import asyncio
import functools


def apply() -> None:
    """Called once by ``proxy.mitm_patches.apply``."""
    _lean_addon_manager()
    _hook_args_by_class()
    _lean_flow_resume()


def _lean_addon_manager() -> None:
    """While a hook's coroutine waits (a call held for approval: all the time), AddonManager kept a
    ``safecall()`` context manager (a generator and its object) suspended in ``trigger_event``, and two
    generators (``_iter_hooks``, ``traverse``) in ``invoke_addon``. The same order and error handling
    without them: an addon's hooks are listed before the first is called (mitmproxy listed them as it
    went, which differs only if a hook adds children to its own addon).

    And ``trigger_event`` walked the whole addon tree with ``getattr`` for every event (each request:
    four flow hooks, each followed by an ``update`` event that nothing here implements). The walk's
    result, per event name, is now kept until the addons change (``add``, ``remove``, ``register``,
    ``clear``), and ``update`` is not built when no addon has it. An addon that gives itself a hook
    method later, without going through the manager, is not seen. Re-check: addonmanager.py."""
    import inspect
    import types

    from mitmproxy import addonmanager, exceptions, flow, hooks

    def hooks_of(top, name: str) -> tuple:
        out = []
        for a in addonmanager.traverse([top]):
            func = getattr(a, name, None)
            if not func or isinstance(func, types.ModuleType):   # a module named like a hook: not one
                continue
            out.append(func if callable(func) else _not_callable(name, a))
        return tuple(out)

    def plan(self, name: str) -> tuple:
        """(each top-level addon's hooks for ``name``, ...) in chain order, without the addons that have none."""
        plans = self.__dict__.get("_airlock_plans")
        if plans is None:
            plans = self._airlock_plans = {}
        got = plans.get(name)
        if got is None:
            got = plans[name] = tuple(fs for top in self.chain if (fs := hooks_of(top, name)))
        return got

    async def trigger_event(self, event) -> None:
        steps = plan(self, event.name)
        if not steps:
            return
        args = event.args()
        for funcs in steps:
            try:
                for func in funcs:
                    res = func(*args)
                    if res is not None and inspect.isawaitable(res):
                        await res
            except exceptions.AddonHalt:
                return
            except exceptions.OptionsError:
                raise
            except Exception as e:  # noqa: BLE001 - logged by mitmproxy's own safecall, as before
                _log_addon_error(e)

    async def handle_lifecycle(self, event) -> None:
        message = event.args()[0]
        await self.trigger_event(event)
        if isinstance(message, flow.Flow) and plan(self, "update"):
            await self.trigger_event(hooks.UpdateHook([message]))

    async def invoke_addon(self, addon, event) -> None:    # the name trims logged tracebacks (cut_traceback)
        for _, func in list(self._iter_hooks(addon, event)):
            res = func(*event.args())
            if res is not None and inspect.isawaitable(res):
                await res

    def _log_addon_error(e: Exception) -> None:
        with addonmanager.safecall():
            raise e

    def _not_callable(name: str, addon):
        def raiser(*_):
            raise exceptions.AddonManagerError(f"Addon handler {name} ({addon}) not callable")
        return raiser

    def forgetting(method):
        @functools.wraps(method)
        def wrapper(self, *a, **kw):
            self._airlock_plans = None
            try:
                return method(self, *a, **kw)
            finally:
                self._airlock_plans = None
        return wrapper

    am = addonmanager.AddonManager
    for name in ("add", "remove", "register", "clear"):
        setattr(am, name, forgetting(getattr(am, name)))
    am.trigger_event = trigger_event
    am.handle_lifecycle = handle_lifecycle
    am.invoke_addon = invoke_addon


def _hook_args_by_class() -> None:
    """``Hook.args()`` asked ``dataclasses.fields()`` each time (~0.9 µs), and each hook is asked three
    times (the connection handler, ``handle_lifecycle``, ``trigger_event``). A hook class's fields do not
    change: their names are looked up once per class. Re-check: hooks.py."""
    import dataclasses

    from mitmproxy import hooks

    names: dict[type, tuple[str, ...]] = {}

    def args(self) -> list:
        fields = names.get(self.__class__)
        if fields is None:
            fields = names[self.__class__] = tuple(f.name for f in dataclasses.fields(self))
        return [getattr(self, n) for n in fields]

    hooks.Hook.args = args


# -- an intercepted flow waits on a bare future --------------------------------------------------------

def _lean_flow_resume() -> None:
    """``Flow.intercept``/``resume``/``wait_for_resume`` with one future instead of an ``asyncio.Event``
    (its waiters deque, ~760 B, and the ``wait_for_resume`` and ``Event.wait`` coroutines): a call held
    for approval is an intercepted flow, and 10,000 may be held at once. Same contract: ``wait_for_resume``
    returns at once unless the flow is intercepted, else when ``resume()`` is called; intercepting again
    after a resume waits again. Re-check: flow.py (``_resume_event`` is used only by these three) and the
    callers, which ``await flow.wait_for_resume()`` (mode_servers.py, clientplayback.py)."""
    from mitmproxy import flow

    def wait_for_resume(self):
        if not self.intercepted:
            return _DONE
        fut = self._resume_event
        if fut is None or fut.done():
            fut = self._resume_event = asyncio.get_running_loop().create_future()
        return fut

    def resume(self) -> None:
        if not self.intercepted:
            return
        self.intercepted = False
        fut, self._resume_event = self._resume_event, None
        if fut is not None and not fut.done():
            fut.set_result(None)

    def intercept(self) -> None:
        self.intercepted = True

    flow.Flow.wait_for_resume = wait_for_resume
    flow.Flow.resume = resume
    flow.Flow.intercept = intercept
    _park_intercepted_hooks()


def _park_intercepted_hooks() -> None:
    """``ProxyConnectionHandler.hook_task`` (``ConnectionHandler.hook_task`` around mode_servers'
    ``handle_hook``, inlined) without a task waiting while the flow is intercepted: the same steps in
    the same order (watchdog disarmed from the hook's start until the flow is resumed, the addons, then
    ``HookCompleted`` for a blocking hook), but ``wait_for_resume``'s future gets a callback that
    finishes the hook. Re-check: server.py ``hook_task``, mode_servers.py ``handle_hook``."""
    from mitmproxy import flow
    from mitmproxy.proxy import events
    from mitmproxy.proxy.mode_servers import ProxyConnectionHandler

    async def hook_task(self, hook) -> None:
        disarmed = self.timeout_watchdog.disarm()
        disarmed.__enter__()
        try:
            (data,) = hook.args()
            await self.master.addons.handle_lifecycle(hook)
            if isinstance(data, flow.Flow) and data.intercepted:
                data.wait_for_resume().add_done_callback(functools.partial(_resumed, self, hook, disarmed))
                disarmed = None                 # the callback ends it
                return
        finally:
            if disarmed is not None:
                disarmed.__exit__(None, None, None)
        if hook.blocking:
            await self.server_event(events.HookCompleted(hook))

    def _resumed(handler, hook, disarmed, _fut) -> None:
        disarmed.__exit__(None, None, None)
        if hook.blocking:
            from mitmproxy.utils import asyncio_utils
            asyncio_utils.create_task(handler.server_event(events.HookCompleted(hook)),
                                      name="hook completed", keep_ref=True)

    ProxyConnectionHandler.hook_task = hook_task


class _Done:
    """An awaitable that is already complete (``await`` returns None without suspending)."""
    __slots__ = ()

    def __await__(self):
        return iter(())


_DONE = _Done()
