"""PolicyHolder: the engine in force, swapped atomically on (hot) reload.

A reload validates the files into a new Engine and swaps one attribute; readers keep using the
engine they already hold. An invalid version is rejected: the last good engine stays, and the
error is logged, counted (``airlock_policy_reloads_total{result="error"}``) and audited
(``on_event("policy.reload", ok=False, ...)``).
"""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from prometheus_client import Counter

from .engine import Engine
from .load import load_engine, policy_files
from .model import PolicyError

log = logging.getLogger("airlock.policy")

RELOADS = Counter("airlock_policy_reloads_total", "Policy reloads by result", ["result"])


class PolicyHolder:
    def __init__(self, paths, on_event=None):
        """Load ``paths`` now. If that first version is invalid the holder denies every call
        (``engine.version == "invalid"``, ``last_error`` says why) until a reload succeeds."""
        self.paths: list[Path] = [Path(p) for p in (paths or [])]
        self.on_event = on_event
        self.last_error: str | None = None
        self.last_errors: list[dict] = []
        self.reloads = {"ok": 0, "error": 0, "unchanged": 0}
        self._signature = self._stat()
        try:
            self.engine: Engine = load_engine(self.paths)
        except PolicyError as e:
            self.last_error = str(e)
            self.last_errors = [x.as_dict() for x in e.errors]
            log.error("policy invalid; denying every tool call until it is fixed: %s", e)
            self.engine = Engine(version="invalid", default_action="deny")

    def _stat(self) -> tuple:
        """Cheap change detector: (path, mtime_ns, size) of every policy file."""
        try:
            files = policy_files(self.paths) if self.paths else []
        except PolicyError as e:
            return ("missing", str(e))
        out = []
        for f in files:
            try:
                st = f.stat()
                out.append((str(f), st.st_mtime_ns, st.st_size))
            except OSError:
                out.append((str(f), None, None))
        return tuple(out)

    def _emit(self, **fields) -> None:
        if self.on_event is None:
            return
        try:
            self.on_event("policy.reload", **fields)
        except Exception:  # auditing must never break a reload
            log.exception("policy reload event handler failed")

    def reload(self) -> tuple[bool, str | None]:
        """Validate the files and swap; on error keep the last good engine and return the error."""
        self._signature = self._stat()
        old = self.engine
        try:
            new = load_engine(self.paths)
        except PolicyError as e:
            self.last_error = str(e)
            self.last_errors = errors = [x.as_dict() for x in e.errors]
            self.reloads["error"] += 1
            RELOADS.labels("error").inc()
            log.error("policy reload rejected; keeping version %s: %s", old.version, e)
            self._emit(ok=False, version=old.version, error=str(e), errors=errors,
                       files=[str(p) for p in self.paths])
            return False, str(e)
        except Exception as e:  # never let an unexpected failure replace a good policy
            self.last_error = f"{type(e).__name__}: {e}"
            self.last_errors = [{"file": None, "line": None, "message": self.last_error, "hint": ""}]
            self.reloads["error"] += 1
            RELOADS.labels("error").inc()
            log.exception("policy reload failed; keeping version %s", old.version)
            self._emit(ok=False, version=old.version, error=self.last_error, errors=[],
                       files=[str(p) for p in self.paths])
            return False, self.last_error
        self.last_error = None
        self.last_errors = []
        if new.version == old.version:
            self.reloads["unchanged"] += 1
            RELOADS.labels("unchanged").inc()
            return True, None
        self.engine = new
        self.reloads["ok"] += 1
        RELOADS.labels("ok").inc()
        log.info("policy reloaded: version %s -> %s (%s)", old.version, new.version,
                 ", ".join(new.source_files))
        self._emit(ok=True, version=new.version, previous_version=old.version,
                   files=new.source_files, counts=new.counts())
        return True, None

    def changed(self) -> bool:
        return self._stat() != self._signature

    async def watch(self, interval: float = 1.0) -> None:
        """Run as a task: reload whenever a policy file changes (added, removed, edited).
        Loading (file reads, CEL compilation) runs in a worker thread, off the event loop."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            try:
                if self.changed():
                    await loop.run_in_executor(None, self.reload)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("policy watcher failed; will retry")

    def status(self) -> dict:
        e = self.engine
        return {"version": e.version, "files": e.source_files, "paths": [str(p) for p in self.paths],
                "counts": e.counts(), "reloads": dict(self.reloads), "last_error": self.last_error,
                "last_errors": list(self.last_errors)}
