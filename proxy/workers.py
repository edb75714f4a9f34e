"""``airlock run --workers N``: N proxy processes sharing the listeners.

The process started by ``airlock run`` becomes the *supervisor*. It does no proxying:

- it checks the listener addresses, creates the CA and the admin token once (workers would race
  to create them), and starts one audit ingester (the single owner of ClickHouse / chDB; workers
  only write their WAL slot, see ``proxy.audit``);
- it starts N workers: the same command line with ``AIRLOCK_WORKER=<i>/<N>`` in the environment.
  Each worker binds the gateway, proxy (and sidecar) listeners with ``SO_REUSEPORT``, so the kernel
  spreads connections over them, and serves its admin API on a private Unix socket
  (``<data_dir>/run/worker-<i>.sock``);
- it serves the admin listener itself (``admin``): ``/metrics`` sums every worker's counters and
  histograms (gauges keep a ``worker`` label), ``POST /v1/policy/reload`` reaches every worker,
  ``/readyz`` is ready when every worker is, ``/v1/workers`` lists them, and every other request is
  forwarded to one live worker. State that must be shared (keys, sessions, approvals, budgets)
  lives in the store, so a decision taken through any worker reaches the worker holding the call;
- a worker that dies is restarted (backoff 1 s doubling to 30 s) and logged;
- SIGTERM / SIGINT: stop the admin listener, SIGTERM every worker (each drains its requests in
  flight), then stop the ingester (it ingests everything left in the WAL) and exit 0.

Several workers need a shared store (``store.redis``): the in-process store cannot be shared.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from aiohttp import ClientSession, ClientTimeout, UnixConnector, web

from .config import Config, split_hostport
from .modules import optional

log = logging.getLogger("airlock.workers")

ENV = "AIRLOCK_WORKER"                       # "<index>/<count>" in a worker's environment
INGESTER_ENV = "AIRLOCK_AUDIT_INGESTER"      # "external": a worker must not start its own ingester
RESTART_MAX_SECONDS = 30.0


def worker_index() -> int | None:
    """This process's worker index when it runs under a supervisor, else None."""
    raw = os.environ.get(ENV, "")
    head = raw.split("/", 1)[0]
    return int(head) if head.isdigit() else None


def socket_path(cfg: Config, index: int) -> Path:
    return cfg.path(cfg.data_dir) / "run" / f"worker-{index}.sock"


def check(cfg: Config, n: int) -> str | None:
    """Why ``n`` workers cannot run with this config (None when they can)."""
    if n < 1:
        return f"--workers must be at least 1 (got {n})"
    if n > 1 and not cfg.redis:
        return (f"--workers {n} needs a shared store: set store.redis in {cfg.source} (the in-process store "
                f"lives in one process, so keys, approvals and budgets would differ between workers)")
    return None


@dataclass
class Worker:
    index: int
    sock: Path
    proc: subprocess.Popen | None = None
    restarts: int = 0
    ready: bool = False
    session: ClientSession | None = None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Supervisor:
    def __init__(self, cfg: Config, n: int, sidecar: bool = False):
        self.cfg = cfg
        self.n = n
        self.sidecar = sidecar
        self.workers = [Worker(i, socket_path(cfg, i)) for i in range(n)]
        self.ingester = None
        self.runner: web.AppRunner | None = None
        self.stopping = False
        self._rr = 0
        self._done = asyncio.Event()

    # -- start --------------------------------------------------------------------------
    async def run(self) -> int:
        from .admin.app import resolve_admin_token
        from .server import StartupError, check_ports, ensure_ca
        err = check(self.cfg, self.n)
        if err:
            raise StartupError(err)
        check_ports(self.cfg, self.sidecar, reuse_port=True)
        ensure_ca(self.cfg)
        self.token = resolve_admin_token(self.cfg)
        socket_path(self.cfg, 0).parent.mkdir(parents=True, exist_ok=True)
        await self._start_ingester()
        loop = asyncio.get_running_loop()
        for s in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(s, lambda: loop.create_task(self.stop()))
        try:
            for w in self.workers:
                self._spawn(w)
            await self._wait_ready(60.0)
            await self._start_admin()
        except BaseException:
            await self._kill_all()
            if self.ingester is not None:
                await asyncio.to_thread(self.ingester.stop, 60.0)
            raise
        print(self.banner(), file=sys.stderr, flush=True)
        monitor = loop.create_task(self._monitor())
        await self._done.wait()
        monitor.cancel()
        return 0

    async def _start_ingester(self) -> None:
        """One ingester for every worker's WAL slot, restarted with backoff if it dies (rows wait in the
        WAL meanwhile)."""
        sup = optional("proxy.audit.supervise")
        if sup is not None and hasattr(sup, "IngesterLink"):
            from .audit import wal_dir_of
            self.ingester = sup.IngesterLink(self.cfg.clickhouse_dsn(), wal_dir_of(self.cfg), spawn=True)
            await asyncio.to_thread(self.ingester.start, 10.0)
        elif self.cfg.clickhouse_dsn().startswith("chdb://"):
            from .server import StartupError
            raise StartupError("--workers with the in-process chDB audit store needs the audit ingester "
                               "(proxy.audit.ingester); set clickhouse: to a ClickHouse server instead")

    def _spawn(self, w: Worker) -> None:
        try:
            w.sock.unlink()
        except FileNotFoundError:
            pass
        env = {**os.environ, ENV: f"{w.index}/{self.n}"}
        if self.ingester is not None:
            env[INGESTER_ENV] = "external"
        w.proc = subprocess.Popen([sys.executable, *sys.orig_argv[1:]], env=env)
        w.ready = False
        log.info("worker %d started (pid %d)", w.index, w.proc.pid)

    async def _probe(self, w: Worker) -> bool:
        if not w.alive() or not w.sock.exists():
            return False
        try:
            s = self._session(w)
            async with s.get("http://worker/readyz", headers=self._auth()) as r:
                return r.status == 200
        except Exception:  # noqa: BLE001 - not up yet
            return False

    async def _wait_ready(self, timeout: float) -> None:
        from .server import StartupError
        deadline = time.monotonic() + timeout
        while True:
            for w in self.workers:
                if not w.ready:
                    w.ready = await self._probe(w)
                if w.proc is not None and w.proc.poll() is not None:      # run() stops the others
                    raise StartupError(f"worker {w.index} exited with code {w.proc.returncode} during start-up "
                                       "(its log is above)")
            if all(w.ready for w in self.workers):
                return
            if time.monotonic() > deadline:
                raise StartupError(f"workers not ready after {timeout:.0f} s")
            await asyncio.sleep(0.05)

    async def _monitor(self) -> None:
        """Restart workers that die; keep ``ready`` current for /readyz and forwarding."""
        while not self.stopping:
            for w in self.workers:
                if self.stopping:
                    return
                if w.proc is not None and w.proc.poll() is not None:
                    code = w.proc.returncode
                    w.ready = False
                    delay = min(RESTART_MAX_SECONDS, 2.0 ** min(w.restarts, 5))
                    log.error("worker %d (pid %d) exited with code %s; restarting in %.0f s",
                              w.index, w.proc.pid, code, delay)
                    w.restarts += 1
                    w.proc = None
                    asyncio.get_running_loop().call_later(delay, self._respawn, w)
                elif w.alive() and not w.ready:
                    w.ready = await self._probe(w)
            await asyncio.sleep(0.2)

    def _respawn(self, w: Worker) -> None:
        if not self.stopping and w.proc is None:
            self._spawn(w)

    # -- admin --------------------------------------------------------------------------------
    def _auth(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}

    def _session(self, w: Worker) -> ClientSession:
        if w.session is None or w.session.closed:
            w.session = ClientSession(connector=UnixConnector(path=str(w.sock)),
                                      timeout=ClientTimeout(total=None, sock_connect=5))
        return w.session

    def _pick(self) -> Worker | None:
        live = [w for w in self.workers if w.ready and w.alive()]
        if not live:
            return None
        self._rr = (self._rr + 1) % len(live)
        return live[self._rr]

    async def _start_admin(self) -> None:
        from . import worker_admin
        addr = self.cfg.listen.get("admin")
        if not addr:
            return
        host, port = split_hostport(addr, "listen.admin", self.cfg.source)
        self.runner = web.AppRunner(worker_admin.build_app(self), access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, host, port, backlog=512).start()

    def banner(self) -> str:
        lines = [f"Airlock is running ({self.n} workers, pids "
                 f"{', '.join(str(w.proc.pid) for w in self.workers if w.proc)})"]
        for key in ("gateway", "proxy", "admin"):
            if self.cfg.listen.get(key):
                lines.append(f"  {key:<8} http://{self.cfg.listen[key]}")
        lines.append("  store    redis (shared by the workers)")
        lines.append(f"  audit    {'one ingester for all workers' if self.ingester else self.cfg.clickhouse_dsn()}")
        return "\n".join(lines)

    # -- stop ---------------------------------------------------------------------------------
    async def stop(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        log.info("stopping: draining %d workers", self.n)
        if self.runner is not None:
            await self.runner.cleanup()
        for w in self.workers:
            if w.alive():
                w.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.cfg.drain_seconds + 30
        while any(w.alive() for w in self.workers) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await self._kill_all()
        for w in self.workers:
            if w.proc is not None and w.proc.returncode not in (0, None):
                log.warning("worker %d exited with code %s", w.index, w.proc.returncode)
            if w.session is not None:
                await w.session.close()
        if self.ingester is not None:
            await asyncio.to_thread(self.ingester.stop, 60.0)
        self._done.set()

    async def _kill_all(self) -> None:
        for w in self.workers:
            if w.alive():
                log.error("worker %d (pid %d) did not stop; killing it", w.index, w.proc.pid)
                w.proc.kill()
                await asyncio.to_thread(w.proc.wait)


def supervise(cfg: Config, n: int, sidecar: bool = False) -> int:
    import uvloop

    from .server import StartupError
    sup = Supervisor(cfg, n, sidecar)
    try:
        return uvloop.run(sup.run())
    except StartupError as e:
        print(f"airlock: {e}", file=sys.stderr)
        return 2
