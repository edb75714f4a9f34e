"""The audit ingester process: the one owner of the ClickHouse client for a WAL base directory.

    python -m proxy.audit.ingester --wal-dir DIR        (DSN in $AIRLOCK_AUDIT_DSN)

It inserts sealed WAL segments into ClickHouse (``ingest``) and answers the proxies' queries, flushes
and stats on ``ipc.socket_path(DIR)``. One ingester per WAL base: a second one waits on the
``.ingester.lock`` flock as a standby and takes over when the first exits. It polls the slot
directories every ``POLL_SECONDS`` for sealed segments worth an insert (see ``ingest``), and inserts
every sealed segment at once when a flush asks. SIGTERM (or its parent exiting): ingest
every sealed segment (bounded by ``STOP_SECONDS`` while ClickHouse fails), close the socket, exit 0.

``spawn(cfg)`` / ``spawn_for(dsn, wal_dir)`` start it as a child (``-O`` propagated) and return a
handle with ``alive()`` and ``stop(timeout)``. A proxy started with ``AIRLOCK_AUDIT_INGESTER=external``
does not spawn one (a supervisor runs exactly one for all workers).
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import socketserver
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from . import ipc
from .ingest import Ingester
from .wal import try_lock, unlock

log = logging.getLogger("airlock.audit.ingester")

POLL_SECONDS = 0.25                                 # a flush wakes the loop at once
STOP_SECONDS = 10.0
DSN_ENV = "AIRLOCK_AUDIT_DSN"
MODE_ENV = "AIRLOCK_AUDIT_INGESTER"
# glibc malloc (Python's buffers): large blocks always from mmap and given back when freed, two arenas. By
# default glibc raises its mmap threshold after the first large free and then keeps such blocks in its heaps
# and per-thread arenas, where the ingester's RSS crept up run after run. chDB's own jemalloc (JE_MALLOC_CONF,
# added to its built-in options) gives freed pages back after 1 s instead of 5 s: an insert's or a merge's
# working memory leaves the RSS before the next one starts.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_ARENA_MAX": "2", "JE_MALLOC_CONF": "dirty_decay_ms:1000"}


# -- the socket server ---------------------------------------------------------------------
class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        ing: Ingester = self.server.ingester  # type: ignore[attr-defined]
        try:
            body = ipc.recv(self.request)
        except OSError:
            return
        if body is None:
            return
        try:
            req = orjson.loads(body)
            if req.get("op") == "flush":
                ing.ask_now()
                self.server.wake.set()  # type: ignore[attr-defined]
            out = ipc.answer(_serve(ing, req))
        except Exception as e:  # noqa: BLE001 - every failure goes back to the caller
            out = ipc.answer(error=e)
        try:
            ipc.send(self.request, out)
        except OSError:
            pass


def _serve(ing: Ingester, req: dict[str, Any]) -> Any:
    op = req.get("op")
    if op == "ping":
        return {"ready": ing.ready, "pid": os.getpid()}
    if op == "stats":
        return ing.stats()
    if op == "flush":
        return ing.wait_ingested(ing.pending(), float(req.get("timeout_s", 30.0)))
    if op in ("query", "raw", "command"):
        with ing.client_lock:
            c = ing.client()
            if op == "command":
                c.command(req["sql"])
                return None
            if op == "raw":
                return c.raw_query(req["sql"], parameters=req.get("params") or None, settings={"readonly": 2},
                                   fmt=req.get("fmt", "JSONEachRow"))
            res = c.query(req["sql"], parameters=req.get("params") or None, settings=req.get("settings") or None)
            return res.column_names, res.result_rows
    raise ValueError(f"unknown ingester op {op!r}")


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


# -- the process ---------------------------------------------------------------------------------
def run(dsn: str, wal_dir: Path) -> int:
    wal_dir = Path(wal_dir)
    stop = threading.Event()
    parent = os.getppid()
    wake = threading.Event()                            # a flush request, or stop: run a pass now

    def on_signal(*_: Any) -> None:
        stop.set()
        wake.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)

    def orphaned() -> bool:
        return os.getppid() != parent

    lock = None
    while lock is None and not stop.is_set():           # standby while another ingester serves this WAL
        lock = try_lock(wal_dir, ".ingester.lock")
        if lock is None:
            stop.wait(0.2)
            if orphaned():
                return 0
    if lock is None:
        return 0
    ing = Ingester(dsn, wal_dir)
    path = ipc.socket_path(wal_dir)
    path.unlink(missing_ok=True)
    old = os.umask(0o177)
    try:
        server = _Server(os.fspath(path), _Handler)
    finally:
        os.umask(old)
    server.ingester = ing  # type: ignore[attr-defined]
    server.wake = wake  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, name="ingester-socket", daemon=True).start()
    log.info("audit ingester %d serving %s", os.getpid(), path)
    try:
        while not stop.is_set() and not orphaned():
            ing.run_pass()
            wake.wait(POLL_SECONDS)
            wake.clear()
        # the writers sealed before asking us to stop; a ClickHouse already failing gets one more try
        deadline = time.monotonic() + (0 if ing.backlog else STOP_SECONDS)
        while not ing.run_pass(force=True) and time.monotonic() < deadline:
            time.sleep(min(1.0, max(0.0, ing.next_try - time.monotonic())))
        if ing.pending():
            log.error("audit ingester: stopping with %d sealed segment(s) left in %s (ClickHouse: %s); the "
                      "next ingester takes them", len(ing.pending()), wal_dir, ing.last_error)
    finally:
        server.shutdown()
        server.server_close()
        path.unlink(missing_ok=True)
        unlock(lock)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m proxy.audit.ingester")
    ap.add_argument("--wal-dir", required=True)
    ap.add_argument("--dsn", default=None, help=f"ClickHouse DSN (default: ${DSN_ENV})")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s airlock-ingester %(levelname)s %(message)s")
    logging.getLogger("urllib3").setLevel(logging.ERROR)     # one line per failed retry otherwise
    dsn = a.dsn or os.environ.get(DSN_ENV)
    if not dsn:
        ap.error(f"no DSN: pass --dsn or set {DSN_ENV}")
    return run(dsn, Path(a.wal_dir))


# -- spawning (proxy side, or the --workers supervisor) --------------------------------------------------
class IngesterHandle:
    def __init__(self, proc: subprocess.Popen, wal_dir: Path):
        self.proc = proc
        self.wal_dir = wal_dir

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM: the ingester ingests every sealed segment and exits. Killed after ``timeout``."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.error("audit ingester %d did not stop in %.0f s: killed (its segments stay in the WAL)",
                      self.proc.pid, timeout)
            self.proc.kill()
            return self.proc.wait(10)


def spawn_for(dsn: str, wal_dir: str | Path) -> IngesterHandle:
    wal_dir = Path(wal_dir)
    wal_dir.mkdir(parents=True, exist_ok=True)
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, **{DSN_ENV: dsn})
    env["PYTHONPATH"] = os.pathsep.join([root] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    for k, v in MALLOC_ENV.items():
        env.setdefault(k, v)
    cmd = [sys.executable, *(["-O"] * sys.flags.optimize), "-m", "proxy.audit.ingester", "--wal-dir", str(wal_dir)]
    return IngesterHandle(subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, start_new_session=True),
                          wal_dir)


def spawn(cfg: Any) -> IngesterHandle:
    """The ingester for ``cfg``'s audit DSN and WAL directory."""
    from . import wal_dir_of
    return spawn_for(cfg.clickhouse_dsn(), wal_dir_of(cfg))


if __name__ == "__main__":
    sys.exit(main())
