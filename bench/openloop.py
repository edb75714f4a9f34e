"""Open-loop constant-rate load: requests are scheduled evenly (``rate`` per second) over ``conns``
keep-alive connections and each latency is measured from its *scheduled* send time, so a stalled
proxy cannot hide its queueing (no coordinated omission; mitmproxy.md §4.2).

    python -m bench.openloop URL --rate 250 --seconds 5 [--conns 50] [--token T] [--header k:v]

Prints JSON: sent, completed, errors, achieved rate, p50/p90/p99/max ms. ``run()`` does the same
in-process; ``sustained()`` steps the rate up to find the highest one whose p99 stays under a bound.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import json
import sys
import time
from urllib.parse import urlsplit

DRAIN_SECONDS = 5.0


class _Conn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; one request in flight; parses Content-Length or chunked."""

    def __init__(self, gen: "_Gen"):
        self.gen = gen
        self.buf = bytearray()
        self.scheduled = 0.0
        self.transport = None
        self.busy = False

    def connection_made(self, transport):
        self.transport = transport

    def send(self, scheduled: float) -> None:
        self.scheduled = scheduled
        self.busy = True
        self.transport.write(self.gen.request)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).lower()
            status = int(head[9:12])
            i = head.find(b"content-length:")
            if i >= 0:
                j = head.find(b"\r\n", i)
                n = int(head[i + 15:j if j >= 0 else None])
                if len(self.buf) < end + 4 + n:
                    return
                del self.buf[:end + 4 + n]
            elif b"transfer-encoding: chunked" in head:
                stop = self.buf.find(b"\r\n0\r\n\r\n", end)
                if stop < 0:
                    return
                del self.buf[:stop + 7]
            else:                               # no framing: the response ends with the connection
                return
            self.busy = False
            self.gen.done(self, status)

    def connection_lost(self, exc) -> None:
        self.gen.lost(self)


class _Gen:
    def __init__(self, url: str, body: bytes, headers: dict[str, str]):
        u = urlsplit(url)
        self.host, self.port = u.hostname, u.port or 80
        path = (u.path or "/") + (f"?{u.query}" if u.query else "")
        h = {"host": f"{self.host}:{self.port}", "content-type": "application/json",
             "content-length": str(len(body)), **headers}
        self.request = (f"POST {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) +
                        "\r\n").encode() + body
        self.idle: collections.deque[_Conn] = collections.deque()
        self.backlog: collections.deque[float] = collections.deque()
        self.lat: list[float] = []
        self.errors = 0
        self.inflight = 0
        self.all_done = asyncio.Event()
        self.total = 0

    def done(self, conn: _Conn, status: int) -> None:
        now = time.perf_counter()
        self.inflight -= 1
        if 200 <= status < 300:
            self.lat.append(now - conn.scheduled)
        else:
            self.errors += 1
        if self.backlog:
            self.inflight += 1
            conn.send(self.backlog.popleft())
        else:
            self.idle.append(conn)
        self._check()

    def lost(self, conn: _Conn) -> None:
        if conn in self.idle:
            self.idle.remove(conn)
        elif conn.busy:                         # a request was in flight on it
            conn.busy = False
            self.inflight -= 1
            self.errors += 1
        self._check()

    def _check(self):
        if self.total and len(self.lat) + self.errors >= self.total:
            self.all_done.set()

    def submit(self, scheduled: float) -> None:
        if self.idle:
            self.inflight += 1
            self.idle.popleft().send(scheduled)
        else:
            self.backlog.append(scheduled)


def _pct(sorted_ms: list[float], q: float) -> float | None:
    if not sorted_ms:
        return None
    return round(sorted_ms[min(len(sorted_ms) - 1, int(q * len(sorted_ms)))], 3)


async def _run(url: str, rate: float, seconds: float, conns: int, body: bytes, headers: dict) -> dict:
    gen = _Gen(url, body, headers)
    loop = asyncio.get_running_loop()
    for _ in range(conns):
        _, proto = await loop.create_connection(lambda: _Conn(gen), gen.host, gen.port)
        gen.idle.append(proto)
    n = max(1, int(rate * seconds))
    gen.total = n
    interval = 1.0 / rate
    t0 = time.perf_counter() + 0.05
    i = 0
    while i < n:
        now = time.perf_counter()
        while i < n and t0 + i * interval <= now:
            gen.submit(t0 + i * interval)
            i += 1
        if i < n:
            await asyncio.sleep(max(0.0, t0 + i * interval - time.perf_counter()))
    try:
        await asyncio.wait_for(gen.all_done.wait(), DRAIN_SECONDS + len(gen.backlog) * interval)
    except asyncio.TimeoutError:
        pass
    wall = time.perf_counter() - t0
    unanswered = n - len(gen.lat) - gen.errors
    lat = sorted(x * 1000 for x in gen.lat)
    for c in list(gen.idle):
        c.transport.close()
    return {"rate": rate, "seconds": seconds, "conns": conns, "sent": n, "completed": len(lat),
            "errors": gen.errors + unanswered, "achieved_rps": round(len(lat) / wall, 1),
            "p50_ms": _pct(lat, 0.5), "p90_ms": _pct(lat, 0.9), "p99_ms": _pct(lat, 0.99),
            "max_ms": round(lat[-1], 3) if lat else None}


def run(url: str, rate: float, seconds: float, conns: int = 50, body: bytes = b"{}",
        headers: dict | None = None) -> dict:
    """One constant-rate run in this process (uvloop; the cyclic GC is paused while it runs)."""
    import uvloop
    gc.collect()
    gc.disable()
    try:
        return uvloop.run(_run(url, rate, seconds, conns, body, headers or {}))
    finally:
        gc.enable()


def sustained(url: str, rates: list[float], seconds: float, bound_ms: float = 20.0, conns: int = 50,
              body: bytes = b"{}", headers: dict | None = None) -> dict:
    """Step through ``rates`` (ascending); the best is the highest with p99 < bound and no errors.
    Stops at the first rate that misses (the next ones would too)."""
    steps, best = [], None
    for r in rates:
        res = run(url, r, seconds, conns, body, headers)
        steps.append(res)
        ok = res["errors"] == 0 and res["p99_ms"] is not None and res["p99_ms"] < bound_ms \
            and res["achieved_rps"] >= 0.95 * r
        if not ok:
            break
        best = r
    return {"bound_ms": bound_ms, "sustained_rps": best, "capped": best == rates[-1], "steps": steps}


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.openloop")
    ap.add_argument("url")
    ap.add_argument("--rate", type=float, default=250)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--token")
    ap.add_argument("--header", action="append", default=[], help="k:v, repeatable")
    ap.add_argument("--body", default='{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}')
    a = ap.parse_args()
    headers = dict(h.split(":", 1) for h in a.header)
    if a.token:
        headers["authorization"] = f"Bearer {a.token}"
    res = run(a.url, a.rate, a.seconds, a.conns, a.body.encode(), headers)
    print(json.dumps(res, indent=2))
    return 0 if res["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
