"""proxy.mitm_patches, part 3 (memory per connection): the lazily created state behaves as mitmproxy's.

Each test drives the patched mitmproxy / asyncio class the way mitmproxy does and checks the behaviour
(order, exclusion, timeouts, back-pressure), then that the memory is really given back.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from mitmproxy import connection, options
from mitmproxy.proxy import commands, events, layer, server
from mitmproxy.proxy.context import Context
from mitmproxy.utils import asyncio_utils

from proxy import mitm_patches

mitm_patches.apply()


@dataclass
class Ask(commands.StartHook):
    """A blocking hook: the layer pauses until its HookCompleted."""
    data: bytes


class Recorder(layer.Layer):
    """Asks a hook for the first data it gets, then logs every piece of data in order."""

    def _handle_event(self, event):
        if isinstance(event, events.DataReceived):
            if not getattr(self, "asked", False):
                self.asked = True
                yield Ask(event.data)
            yield commands.Log(event.data.decode())


def _ctx() -> Context:
    client = connection.Client(peername=("127.0.0.1", 1), sockname=("127.0.0.1", 2), timestamp_start=0.0)
    return Context(client, options.Options())


def test_layer_replays_events_queued_while_paused_in_order_and_then_lets_the_queue_go():
    ctx = _ctx()
    lay = Recorder(ctx)
    assert lay._airlock_event_queue is None and not lay._paused_event_queue
    out = list(lay.handle_event(events.DataReceived(ctx.client, b"one")))
    assert len(out) == 1 and isinstance(out[0], Ask)            # paused on the hook
    for data in (b"two", b"three"):
        assert list(lay.handle_event(events.DataReceived(ctx.client, data))) == []
    assert [e.data for e in lay._paused_event_queue] == [b"two", b"three"]
    resumed = list(lay.handle_event(events.HookCompleted(out[0])))
    assert [c.message for c in resumed] == ["one", "two", "three"]
    assert lay._airlock_event_queue is None                     # drained: the deque is gone
    assert [c.message for c in lay.handle_event(events.DataReceived(ctx.client, b"four"))] == ["four"]


def test_empty_queue_view_acts_like_an_empty_deque():
    lay = Recorder(_ctx())
    q = lay._paused_event_queue
    assert len(q) == 0 and list(q) == [] and not q
    with pytest.raises(IndexError):
        q.popleft()


async def test_connection_lock_excludes_and_wakes_in_order_then_drops_its_waiters():
    class Handler(server.ConnectionHandler):
        async def handle_hook(self, hook) -> None:
            pass

    lock = Handler(_ctx())._server_event_lock
    order: list[int] = []
    inside = 0

    async def worker(n: int, gate: asyncio.Event) -> None:
        nonlocal inside
        async with lock:
            inside += 1
            assert inside == 1
            await gate.wait()
            order.append(n)
            inside -= 1

    gates = [asyncio.Event() for _ in range(3)]
    tasks = [asyncio.create_task(worker(n, g)) for n, g in enumerate(gates)]
    while len(lock._waiters or ()) < 2:                         # 0 holds it, 1 and 2 queue behind
        await asyncio.sleep(0)
    for g in gates:
        g.set()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2]
    assert lock._waiters is None and not lock.locked()


def _watchdog_fired():
    fired = asyncio.get_running_loop().create_future()

    async def callback() -> None:
        fired.set_result(True)
    return fired, callback


async def test_watchdog_does_not_time_out_while_a_hook_has_it_disarmed():
    fired, callback = _watchdog_fired()
    wd = server.TimeoutWatchdog(-1, callback)                    # overdue as soon as it may fire
    with wd.disarm():
        with wd.disarm():                                       # nested hooks: armed again after both
            await wd.watch()
            assert wd._timer is None
        assert wd._timer is None and not fired.done()
    await asyncio.wait_for(fired, 10)                           # the timer, armed again, fires
    assert wd.blocker == 0


async def test_watchdog_times_out_after_inactivity_only_once():
    fired, callback = _watchdog_fired()
    wd = server.TimeoutWatchdog(-1, callback)
    await wd.watch()
    await asyncio.wait_for(fired, 10)
    with wd.disarm():                                           # a hook after the timeout: not armed again
        pass
    assert wd._timer is None


async def test_watchdog_with_activity_keeps_waiting():
    fired, callback = _watchdog_fired()
    wd = server.TimeoutWatchdog(3600, callback)
    await wd.watch()
    first = wd._timer
    wd.register_activity()
    first.cancel()
    wd._due()                                                   # the timer comes due: not idle long enough
    assert not fired.done() and wd._timer is not None and wd._timer is not first
    wd.stop()
    assert wd._timer is None and not fired.done()


async def test_watchdog_stopped_does_not_call_back_or_rearm():
    fired, callback = _watchdog_fired()
    wd = server.TimeoutWatchdog(-1, callback)
    with wd.disarm():
        await wd.watch()
        wd.stop()                                               # handle_client ended meanwhile
    assert wd._timer is None and not fired.done()


async def test_stream_server_applies_back_pressure_and_delivers_every_byte():
    payload = bytes(range(256)) * 64 * 512                      # 8 MiB: the transport's buffer fills
    paused_seen = []

    async def handle(reader, writer):
        for i in range(0, len(payload), 1 << 20):
            writer.write(payload[i:i + (1 << 20)])
            paused_seen.append(writer.transport.get_write_buffer_size() > 0)
            await writer.drain()
        writer.close()

    import mitmproxy.proxy.mode_servers as ms
    srv = await ms.asyncio.start_server(handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    got = await asyncio.wait_for(reader.read(-1), 60)
    writer.close()
    srv.close()
    await srv.wait_closed()
    assert got == payload and any(paused_seen)


async def test_tasks_keep_their_names_without_a_dict_each():
    async def nothing() -> None:
        await asyncio.sleep(0)

    t = asyncio_utils.create_task(nothing(), name="handle_hook(request)", keep_ref=False, client=("h", 1))
    u = asyncio_utils.create_task(nothing(), name="handle_hook(request)", keep_ref=False, client=("h", 1))
    await asyncio.gather(t, u)
    assert t.get_name() == "handle_hook(request)" and t.get_name() is u.get_name()
    assert asyncio_utils.task_repr(t) == "handle_hook(request)"


def test_connection_handler_wakeup_timers_act_as_a_set():
    class Handler(server.ConnectionHandler):
        async def handle_hook(self, hook) -> None:
            pass

    h = Handler(_ctx())
    timers = h.wakeup_timer
    assert not timers
    timers.add("a")
    timers.add("b")
    timers.add("a")
    timers.discard("b")
    timers.discard("missing")
    assert len(timers) == 1 and timers.pop() == "a" and not timers
    assert h.max_conns[("example.com", 443)] is h.max_conns[("example.com", 443)]
    assert h.max_conns[("example.com", 443)] is not h.max_conns[("example.org", 443)]


async def test_addon_hooks_run_in_order_errors_are_logged_and_halt_stops(caplog):
    from mitmproxy import exceptions
    from mitmproxy.proxy.layers.http import HttpRequestHook
    from mitmproxy.master import Master
    from mitmproxy.test import tflow

    seen: list[str] = []

    class Async:
        def __init__(self, name: str):
            self.name = name

        async def request(self, flow):
            await asyncio.sleep(0)
            seen.append(self.name)

    class Broken:
        def request(self, flow):
            seen.append("broken")
            raise ValueError("boom")

    class Halt:
        def request(self, flow):
            seen.append("halt")
            raise exceptions.AddonHalt()

    class Parent:
        def __init__(self):
            self.addons = [Async("child")]

        def request(self, flow):
            seen.append("parent")

    m = Master(options.Options())
    m.addons.add(Async("a"), Broken(), Parent(), Async("b"), Halt(), Async("never"))
    with caplog.at_level("ERROR"):
        await m.addons.trigger_event(HttpRequestHook(tflow.tflow()))
    assert seen == ["a", "broken", "parent", "child", "b", "halt"]
    errors = [r for r in caplog.records if "Addon error: boom" in r.getMessage()]
    assert len(errors) == 1 and errors[0].exc_info[0] is ValueError


async def test_idle_client_connection_is_closed_after_tcp_timeout_and_active_one_is_served():
    from mitmproxy import http
    from mitmproxy.addons import core, next_layer, proxyserver
    from mitmproxy.master import Master

    from tests.harness import free_port

    class Answer:
        def request(self, flow):
            flow.response = http.Response.make(200, b"ok")

    port = free_port()
    m = Master(options.Options())
    m.addons.add(core.Core(), proxyserver.Proxyserver(), next_layer.NextLayer(), Answer())
    m.options.update(mode=[f"reverse:http://127.0.0.1:9@127.0.0.1:{port}"], connection_strategy="lazy",
                     tcp_timeout=1)
    run = asyncio.get_running_loop().create_task(m.run())
    try:
        for _ in range(200):
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                break
            except OSError:
                await asyncio.sleep(0.05)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await asyncio.wait_for(reader.readuntil(b"ok"), 30)).startswith(b"HTTP/1.1 200")
        assert await asyncio.wait_for(reader.read(), 30) == b""      # then idle: closed by the watchdog
        writer.close()
    finally:
        m.shutdown()
        await asyncio.wait_for(run, 30)


async def test_addon_hook_plans_follow_added_and_removed_addons_and_update_only_when_implemented():
    from mitmproxy.master import Master
    from mitmproxy.proxy.layers.http import HttpRequestHook
    from mitmproxy.test import tflow

    seen: list[str] = []

    class Named:
        def __init__(self, name: str):
            self.name = name

        def request(self, flow):
            seen.append(self.name)

    class Updates:
        def update(self, flows):
            seen.append(f"update {len(flows)}")

    m = Master(options.Options())
    first = Named("first")
    m.addons.add(first)
    f = tflow.tflow()
    await m.addons.handle_lifecycle(HttpRequestHook(f))
    assert seen == ["first"]
    m.addons.add(Named("second"), Updates())             # a planned event sees the addons added since
    await m.addons.handle_lifecycle(HttpRequestHook(f))
    assert seen == ["first", "first", "second", "update 1"]
    m.addons.remove(first)
    seen.clear()
    await m.addons.handle_lifecycle(HttpRequestHook(f))
    assert seen == ["second", "update 1"]


def test_hook_args_are_the_fields_in_order():
    from dataclasses import dataclass as dc

    from mitmproxy import hooks

    mitm_patches.apply()

    @dc
    class TwoHook(hooks.Hook):
        first: str
        second: int

    h = TwoHook("a", 2)
    assert h.args() == ["a", 2] and h.args() == ["a", 2]      # the second from the per-class names
    h.second = 3
    assert h.args() == ["a", 3]


def test_header_lookups_match_stock_mitmproxy():
    from collections.abc import Mapping

    from mitmproxy import http

    mitm_patches.apply()
    h = http.Headers([(b"Content-Type", b"text/plain"), (b"X-Many", b"a"), (b"x-many", b"b"),
                      (b"X-Bin", b"\xff\xfe")])
    for key in ("content-type", b"CONTENT-TYPE", "x-many", "X-Bin", "absent", b"absent"):
        assert h.get(key) == Mapping.get(h, key) and (key in h) == Mapping.__contains__(h, key)
        assert h.get_all(key) == [x.decode("utf-8", "surrogateescape") for n, x in h.fields
                                  if n.lower() == (key if isinstance(key, bytes) else key.encode()).lower()]
    assert h.get("x-many") == "a, b" and h.get("absent", "d") == "d" and h["content-type"] == "text/plain"
    with pytest.raises(KeyError):
        h["absent"]
    with pytest.raises(TypeError):
        h.get(3)
