"""The proxy's link to its ingester: spawn it (or use the supervisor's), restart it, talk to it.

In ``spawn`` mode every sink starts its own child ingester; when another one already serves the WAL
base (a second process on the same data dir) the child waits as a standby. A monitor thread restarts
the child with backoff if it dies; meanwhile the writer keeps filling the WAL, so nothing is lost.
In ``external`` mode (``AIRLOCK_AUDIT_INGESTER=external``) a supervisor owns the ingester.
"""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from . import ipc
from . import metrics as m

log = logging.getLogger("airlock.audit")

CACHE_SECONDS = 1.0
RESTART_MAX_SECONDS = 30.0


class IngesterLink:
    def __init__(self, dsn: str, wal_dir: Path, spawn: bool = True):
        self.dsn = dsn
        self.wal_dir = Path(wal_dir)
        self.spawn = spawn
        self.path = ipc.socket_path(self.wal_dir)
        self.handle: Any = None
        self.restarts = 0
        self._spawned = 0.0
        self._stopping = threading.Event()
        self._monitor: threading.Thread | None = None
        self._figures: dict[str, Any] = {}
        self._figures_at = 0.0
        self._reachable = (False, 0.0)

    # -- lifecycle -----------------------------------------------------------------------
    def start(self, wait: float) -> bool:
        """Spawn (in spawn mode) and wait up to ``wait`` s for an ingester's first pass. True if ready."""
        if self.spawn:
            self._spawn()
            self._monitor = threading.Thread(target=self._watch, name="airlock-audit-ingester-watch", daemon=True)
            self._monitor.start()
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                if ipc.call(self.path, "ping", timeout=2.0)["ready"]:
                    return True
            except ipc.IngesterUnavailable:
                pass
            time.sleep(0.05)
        return False

    def stop(self, timeout: float = 60.0) -> None:
        self._stopping.set()
        if self._monitor is not None:
            self._monitor.join(5)
        if self.handle is not None:
            self.handle.stop(timeout)

    def _spawn(self) -> None:
        from .ingester import spawn_for
        self.handle = spawn_for(self.dsn, self.wal_dir)
        self._spawned = time.monotonic()

    def _watch(self) -> None:
        delay = 0.5
        while not self._stopping.wait(0.5):
            h = self.handle
            if h.alive():
                if time.monotonic() - self._spawned > RESTART_MAX_SECONDS:
                    delay = 0.5
                continue
            log.error("audit: the ingester (pid %d) exited with code %s; restarting it in %.1f s (rows wait "
                      "in the WAL meanwhile)", h.pid, h.proc.returncode, delay)
            if self._stopping.wait(delay):
                return
            self._spawn()
            self.restarts += 1
            m.INGESTER_RESTARTS.inc()
            delay = min(RESTART_MAX_SECONDS, delay * 2)

    # -- requests ---------------------------------------------------------------------------
    def call(self, op: str, timeout: float = 120.0, **args: Any) -> Any:
        return ipc.call(self.path, op, timeout=timeout, **args)

    def flush(self, deadline: float) -> bool:
        """Ask the ingester to insert every sealed segment; retried while it (re)starts."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                return bool(self.call("flush", timeout=left + 5, timeout_s=left))
            except ipc.IngesterUnavailable:
                time.sleep(min(0.1, max(0.0, left)))

    def figures(self, max_age: float = CACHE_SECONDS) -> dict[str, Any]:
        """The ingester's figures (cached ``max_age`` s); the last known ones while it is away."""
        now = time.monotonic()
        if now - self._figures_at >= max_age:
            self._figures_at = now
            try:
                self._figures = self.call("stats", timeout=0.5)   # /healthz and /metrics run on the loop
                self._reachable = (True, now)
            except (ipc.IngesterUnavailable, ipc.IngesterError):
                self._reachable = (False, now)
        return self._figures

    def reachable(self) -> bool:
        if time.monotonic() - self._reachable[1] >= CACHE_SECONDS:
            self.figures()
        return self._reachable[0]

    def state(self) -> dict[str, Any]:
        h = self.handle
        return {"mode": "spawn" if self.spawn else "external", "pid": h.pid if h else None,
                "alive": h.alive() if h else None, "reachable": self.reachable(), "restarts": self.restarts}
