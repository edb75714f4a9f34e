"""The places where Airlock changes mitmproxy internals (re-check on upgrade: mitmproxy 12.3, Python 3.12).

1. Listeners: asyncio's default backlog of 100 overflows under bursts, and there
   is no SO_REUSEPORT for several workers. ``mode_servers`` calls
   ``asyncio.start_server``; only that module sees the wrapper.
2. Error responses mitmproxy writes itself (upstream down, body too large, bad
   request line) are HTML. Agents' SDKs parse JSON, so they get a body that both
   the OpenAI and the Anthropic SDK read: ``{"type":"error","error":{"type","message"}}``.
3. Memory per open connection (``_lean_connections``): a call held for approval keeps its
   connection's whole state alive, and 10,000 may be held at once. mitmproxy and asyncio
   allocated eight empty ``collections.deque`` per connection (760 B each, however empty), a
   task sleeping per connection for its timeout, and context managers and generators kept
   suspended while a hook awaits. These patches allocate that state on first use, or not at
   all. No behaviour changes: the same queues, locks, timeouts, hook order and error logs.
   ``python -m bench.approvals_hold --bare``: 27.4 -> 18.1 KB of RSS per held request (and
   bare mitmproxy's CPU per keep-alive request ~350 -> ~310 us, the hooks' generators gone).
4. Garbage per request (``_free_finished_streams``): each finished HTTP stream is a reference
   cycle (its state attributes are its own bound methods, and its context lists it among its
   layers), so the stream, its flow and everything the addons hung on the flow waited for the
   cyclic GC: ~19 objects per request in bare mitmproxy, collected at ~20 us CPU per request
   (30 us with Airlock's addons). The cycle is broken once the stream is dropped, so refcounting
   frees it at once; ``freeze_heap`` then raises the young-generation threshold, since almost
   nothing is left for the cyclic GC to find. Measured with a gc.callbacks probe under wrk (c50):
   GC CPU per request 30 -> 0.1 us.
5. Hook dispatch (the addon manager, intercepted flows, hook arguments): ``proxy.mitm_hooks``.
6. Header lookups (``_lean_headers``): ``Headers.get`` and ``in`` went through ``Mapping.get`` (a
   ``KeyError`` raised and caught for every absent header) and a conversion call per field; mitmproxy
   looks up about ten headers per request itself.
"""
from __future__ import annotations

import asyncio
import collections
import functools
import gc
import time

import orjson

from . import mitm_hooks

_applied = False
ERROR_COUNTER = None   # set by proxy.metrics: counts errors mitmproxy answered itself


def apply(backlog: int = 4096, reuse_port: bool = False) -> None:
    global _applied
    if _applied:
        return
    _applied = True
    import mitmproxy.proxy.mode_servers as ms
    from mitmproxy import http
    from mitmproxy.net.http import http1
    from mitmproxy.proxy.layers.http import _http1

    @functools.wraps(asyncio.start_server)
    async def start_server(client_connected_cb, host=None, port=None, *, limit=asyncio.streams._DEFAULT_LIMIT, **kw):
        # asyncio.start_server's body, with the lean protocol (3c)
        kw.setdefault("backlog", backlog)
        if reuse_port:
            kw.setdefault("reuse_port", True)
        loop = asyncio.get_running_loop()

        def factory():
            return _StreamProtocol(asyncio.StreamReader(limit=limit, loop=loop), client_connected_cb, loop=loop)
        return await loop.create_server(factory, host, port, **kw)

    class _AsyncioShim:
        def __getattr__(self, name):
            return start_server if name == "start_server" else getattr(asyncio, name)

    ms.asyncio = _AsyncioShim()

    def make_error_response(status_code: int, message: str = "") -> bytes:
        low = message.lower()
        if status_code == 502 and ("timed out" in low or "timeout" in low):
            status_code = 504
        kind = {400: "invalid_request_error", 413: "request_too_large", 502: "upstream_error",
                504: "timeout_error"}.get(status_code, "api_error")
        text = {502: f"Airlock could not reach the upstream: {message}",
                504: f"the upstream timed out: {message}",
                413: "request body too large for Airlock's limits.max_body_bytes"}.get(status_code, message)
        if ERROR_COUNTER is not None:
            ERROR_COUNTER.labels(str(status_code)).inc()
        body = orjson.dumps({"type": "error", "error": {"type": kind, "message": text, "code": kind}})
        resp = http.Response.make(status_code, body, {"content-type": "application/json",
                                                      "connection": "close"})
        return http1.assemble_response(resp)

    _http1.make_error_response = make_error_response
    _lean_connections()
    _free_finished_streams()
    _lean_headers()
    mitm_hooks.apply()


# -- 6. header lookups -----------------------------------------------------------------------------------

def _header_key(name) -> bytes:
    """A header name as ``Headers`` compares it (``_always_bytes``, then ``_kconv``)."""
    if name.__class__ is str:
        return name.encode("utf-8", "surrogateescape").lower()
    if isinstance(name, bytes):
        return name.lower()
    raise TypeError(f"Expected str or bytes, but got {type(name).__name__}.")


def _lean_headers() -> None:
    """``Headers.get_all``, ``get`` and ``__contains__`` with the same results, folding (``, ``) and
    errors, in one pass over the fields. Re-check: http.py ``Headers``, coretypes/multidict.py."""
    from mitmproxy import http

    def get_all(self, name) -> list[str]:
        k = _header_key(name)
        return [v.decode("utf-8", "surrogateescape") for n, v in self.fields if n.lower() == k]

    def get(self, key, default=None):
        values = get_all(self, key)
        return ", ".join(values) if values else default

    def contains(self, key) -> bool:
        k = _header_key(key)
        for n, _ in self.fields:
            if n.lower() == k:
                return True
        return False

    http.Headers.get_all = get_all
    http.Headers.get = get
    http.Headers.__contains__ = contains


# -- 4. garbage per request -------------------------------------------------------------------------------

GC_YOUNG_THRESHOLD = 10_000     # objects; Python's default (700) suits programs that make cyclic garbage


def _free_finished_streams() -> None:
    """Break a finished stream's reference cycle when HttpLayer drops it (``DropStream``, the last
    command of a stream that was not upgraded). Re-check: ``HttpLayer.event_to_child`` pops the stream
    from ``self.streams`` and nothing calls the stream afterwards (late events for it are ignored:
    ``KeyError``); ``client_state``/``server_state`` and ``context.layers`` are the cycle's edges."""
    from mitmproxy.proxy.layers import http as h

    orig = h.HttpLayer.event_to_child
    stream_cls = h.HttpStream

    @functools.wraps(orig)
    def event_to_child(self, child, event):
        yield from orig(self, child, event)
        if child.__class__ is stream_cls and self.streams.get(child.stream_id) is not child:
            child.client_state = child.server_state = None
            child.context.layers = []

    h.HttpLayer.event_to_child = event_to_child


def freeze_heap() -> None:
    """After start-up: collect, move the start-up heap to the permanent generation (no 30-40 ms gen2
    pauses later), and collect the young generation less often (see 4.)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


# -- 3. memory per connection -----------------------------------------------------------------------------

def _lean_connections() -> None:
    from mitmproxy.proxy import layer, server
    from mitmproxy.utils import asyncio_utils

    # a) Layer._paused_event_queue: a deque per layer (five per HTTP/1 connection), used only when an
    #    event arrives while the layer waits for a hook. Re-check: every use is in mitmproxy/proxy/layer.py
    #    (append, truthiness + popleft) and layers/http/__init__.py (iteration).
    layer.Layer._airlock_event_queue = None
    layer.Layer._paused_event_queue = _LazyEventQueue()

    # b) ConnectionHandler.__init__ (re-check: the attributes it sets): asyncio.Lock keeps the waiters
    #    deque of its first contention forever, and the eager task factory makes every connection contend
    #    once (a hook that completes at once re-enters server_event); ``max_conns`` had a lambda of its
    #    own per connection; ``wakeup_timer``, an empty set (216 B) for timers HTTP/1 never asks for.
    orig_init = server.ConnectionHandler.__init__

    @functools.wraps(orig_init)
    def __init__(self, context) -> None:
        orig_init(self, context)
        self._server_event_lock = _Lock()
        self._drain_lock = _Lock()
        self.max_conns = collections.defaultdict(_FIVE_PER_ADDRESS)
        self.wakeup_timer = _TaskSet()

    server.ConnectionHandler.__init__ = __init__

    # c) the timeout watchdog (ConnectionHandler.__init__ looks the class up in its module; handle_client
    #    runs watch() in a task, cancels it at the end) and the client stream's protocol (start_server
    #    above): see _Watchdog and _StreamProtocol.
    server.TimeoutWatchdog = _Watchdog
    orig_handle_client = server.ConnectionHandler.handle_client

    @functools.wraps(orig_handle_client)
    async def handle_client(self) -> None:
        try:
            await orig_handle_client(self)
        finally:
            self.timeout_watchdog.stop()

    server.ConnectionHandler.handle_client = handle_client

    # d) asyncio_utils.create_task gives every task a name plus ``created`` and ``client`` attributes,
    #    read only by mitmproxy's debug task dump (utils.debug, which Airlock does not install): a dict
    #    per task. Keep the name, shared between tasks of the same name.
    asyncio_utils.set_task_debug_info = _task_name


_TASK_NAMES: dict[str, str] = {}


def _task_name(task: asyncio.Task, *, name: str, client: tuple | None = None) -> None:
    if len(_TASK_NAMES) < 256:
        name = _TASK_NAMES.setdefault(name, name)
    task.set_name(name)


_FIVE_PER_ADDRESS = functools.partial(asyncio.Semaphore, 5)    # mitmproxy's lambda: asyncio.Semaphore(5)


class _TaskSet(dict):
    """The set operations ConnectionHandler uses on ``wakeup_timer``, on a dict (64 B empty, a set 216 B)."""
    __slots__ = ()

    def add(self, task) -> None:
        self[task] = None

    def discard(self, task) -> None:
        self.pop(task, None)

    def pop(self, *key):
        return super().pop(*key) if key else self.popitem()[0]


class _Lock(asyncio.Lock):
    """An asyncio.Lock that lets its waiters deque go once nobody waits (``acquire`` makes a new one)."""

    def release(self) -> None:
        super().release()
        if not self._waiters:
            self._waiters = None


class _StreamProtocol(asyncio.StreamReaderProtocol):
    """A StreamReaderProtocol whose deque of drain waiters exists once writing is paused (a full buffer)."""

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self._drain_waiters = ()           # iterated by resume_writing and connection_lost: empty is fine

    def _drain_helper(self):
        if self._paused and not self._drain_waiters:
            self._drain_waiters = collections.deque()
        return super()._drain_helper()


class _Watchdog:
    """mitmproxy's TimeoutWatchdog as one loop timer: no task sleeping per connection, no ``asyncio.Event``.

    Same contract: ``callback`` once ``timeout`` seconds pass without activity, never while a hook has
    it disarmed (the timer re-arms when the last ``disarm`` ends). ``watch`` arms the timer and returns
    (the task ConnectionHandler runs it in ends at once); ``stop`` (after ``handle_client``, which
    cancelled that task) disarms it for good. ``disarm()`` is a plain context manager."""
    __slots__ = ("timeout", "callback", "last_activity", "blocker", "_timer", "_watching")

    def __init__(self, timeout: int, callback) -> None:
        self.timeout = timeout
        self.callback = callback
        self.last_activity = time.time()
        self.blocker = 0
        self._timer: asyncio.TimerHandle | None = None
        self._watching = False

    def register_activity(self) -> None:
        self.last_activity = time.time()

    async def watch(self) -> None:
        self._watching = True
        if not self.blocker:
            self._arm()

    def stop(self) -> None:
        self._watching = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self) -> None:
        delay = self.last_activity + self.timeout - time.time()
        self._timer = asyncio.get_running_loop().call_later(max(0.0, delay), self._due)

    def _due(self) -> None:
        self._timer = None
        if self.blocker or not self._watching:
            return                                  # __exit__ re-arms
        if self.last_activity + self.timeout < time.time():
            from mitmproxy.utils import asyncio_utils
            self._watching = False
            asyncio_utils.create_task(self.callback(), name="timeout watchdog", keep_ref=True)
        else:
            self._arm()

    def disarm(self) -> "_Watchdog":
        return self

    def __enter__(self) -> None:
        self.blocker += 1

    def __exit__(self, *exc) -> None:
        self.blocker -= 1
        if self.blocker == 0:
            self.register_activity()
            if self._watching and self._timer is None:
                self._arm()


class _LazyEventQueue:
    """Data descriptor for ``Layer._paused_event_queue``: a deque exists only while events are queued.

    Without one, reads return an ``_EmptyQueue`` view (false, empty, iterable) whose ``append`` creates
    an ``_EventQueue``, which detaches itself from its layer when ``popleft`` drains it. Assigning an
    empty deque (``Layer.__init__`` does) stores nothing."""
    __slots__ = ()

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        q = obj._airlock_event_queue
        return q if q is not None else _EmptyQueue(obj)

    def __set__(self, obj, value) -> None:
        obj._airlock_event_queue = value if value else None


class _EmptyQueue:
    __slots__ = ("_layer",)

    def __init__(self, owner) -> None:
        self._layer = owner

    def __bool__(self) -> bool:
        return False

    def __len__(self) -> int:
        return 0

    def __iter__(self):
        return iter(())

    def append(self, event) -> None:
        q = self._layer._airlock_event_queue
        if q is None:
            q = self._layer._airlock_event_queue = _EventQueue(self._layer)
        q.append(event)

    def popleft(self):
        raise IndexError("pop from an empty deque")


class _EventQueue(collections.deque):
    __slots__ = ("_layer",)

    def __init__(self, owner) -> None:
        super().__init__()
        self._layer = owner

    def popleft(self):
        event = super().popleft()
        if not self and self._layer is not None:
            self._layer._airlock_event_queue = None
            self._layer = None
        return event
