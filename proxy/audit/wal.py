"""The audit write-ahead log: segment files of JSON lines, fsync per batch.

A row counts as written once its batch is in a segment and fsynced. Segments are
named ``<creation ns, 20 digits>-<stream>.wal`` so sorting the names gives write
order across restarts. A segment is deleted only after every row in it is in
ClickHouse. A torn last line (the process died mid-write) is ignored on read:
that batch was never acknowledged.
"""
from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger("airlock.audit.wal")
SUFFIX = ".wal"


class WalError(OSError):
    """The WAL could not be written (disk full, permissions)."""


MAX_SLOTS = 64


def _try_lock(directory: Path) -> int | None:
    """An exclusive flock on ``directory/.lock`` (None if a live process holds it)."""
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / ".lock", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _unlock(fd: int | None) -> None:
    if fd is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def slot_dirs(base: Path) -> list[Path]:
    """The WAL directories under ``base``: the base itself (slot 0) and ``w1``.. for extra writers."""
    return [base] + sorted(p for p in base.glob("w[0-9]*") if p.is_dir())


class Wal:
    """The segments of one writer. Several processes may share ``base``: each takes the first free
    slot (a directory it holds an flock on), so no process ever replays or deletes another live
    writer's segments; slots of dead processes are replayed by whoever finds them unlocked."""

    def __init__(self, base: Path, stream: str, segment_bytes: int = 16 * 1024 * 1024):
        self.base = Path(base)
        self._lock: int | None = None
        for i in range(MAX_SLOTS):
            d = self.base if i == 0 else self.base / f"w{i}"
            self._lock = _try_lock(d)
            if self._lock is not None:
                self.dir = d
                break
        else:
            raise WalError(0, f"audit WAL {self.base}: all {MAX_SLOTS} writer slots are in use")
        self.stream = stream
        self.segment_bytes = segment_bytes
        self._fh: Any = None
        self._path: Path | None = None
        self._size = 0

    # -- writing ----------------------------------------------------------------------
    def append(self, rows: list[dict[str, Any]]) -> bytes:
        """Append rows as JSON lines and fsync. Returns the bytes written (ready for a JSONEachRow insert).
        Raises WalError."""
        data = b"".join([orjson.dumps(r) + b"\n" for r in rows])
        try:
            if self._fh is None or self._size >= self.segment_bytes:
                self.seal()
                self._path = self.dir / f"{time.time_ns():020d}-{self.stream}{SUFFIX}"
                self._fh = open(self._path, "ab")
                self._size = 0
                _fsync_dir(self.dir)
            self._fh.write(data)
            self._fh.flush()
            os.fsync(self._fh.fileno())
        except OSError as e:
            # A partial write leaves a torn line that readers skip; start a fresh segment next time.
            self._close_quietly()
            raise WalError(e.errno, f"audit WAL write failed in {self.dir}: {e.strerror or e}") from e
        self._size += len(data)
        return data

    def seal(self) -> None:
        """Close the current segment; the next append opens a new one."""
        if self._fh is not None:
            self._fh.close()
        self._fh, self._path, self._size = None, None, 0

    def _close_quietly(self) -> None:
        try:
            if self._fh is not None:
                self._fh.close()
        except OSError:
            pass
        self._fh, self._path, self._size = None, None, 0

    @property
    def current_size(self) -> int:
        return self._size

    @property
    def current(self) -> Path | None:
        return self._path

    # -- reading / replay ---------------------------------------------------------------
    def segments(self) -> list[Path]:
        """All segments in write order, the open one included (last)."""
        return sorted(self.dir.glob(f"*{SUFFIX}"))

    def sealed_segments(self) -> list[Path]:
        return [p for p in self.segments() if p != self._path]

    @staticmethod
    def read_lines(path: Path) -> Iterator[tuple[bytes, dict[str, Any]]]:
        """(line, row) pairs of a segment; a torn last line (crash mid-write) is skipped."""
        with open(path, "rb") as fh:
            for n, line in enumerate(fh, 1):
                if not line.endswith(b"\n"):
                    log.warning("audit WAL %s: ignoring torn last line %d (unacknowledged batch)", path.name, n)
                    break
                try:
                    yield line, orjson.loads(line)
                except orjson.JSONDecodeError:
                    log.error("audit WAL %s: unreadable line %d skipped", path.name, n)

    @staticmethod
    def read(path: Path) -> Iterator[dict[str, Any]]:
        for _, row in Wal.read_lines(path):
            yield row

    def remove(self, path: Path) -> None:
        if path == self._path:
            self.seal()
        try:
            path.unlink()
        except FileNotFoundError:
            pass

    def size_bytes(self) -> int:
        total = 0
        for p in self.segments():
            try:
                total += p.stat().st_size
            except FileNotFoundError:
                pass
        return total

    def orphans(self) -> list[tuple[Path, int]]:
        """Other slots whose writer is gone (locked now by us: release with ``release``)."""
        out = []
        for d in slot_dirs(self.base):
            if d == self.dir or not any(d.glob(f"*{SUFFIX}")):
                continue
            fd = _try_lock(d)
            if fd is not None:
                out.append((d, fd))
        return out

    @staticmethod
    def release(fd: int) -> None:
        _unlock(fd)

    def close(self) -> None:
        self.seal()
        _unlock(self._lock)
        self._lock = None


def _fsync_dir(directory: Path) -> None:
    """Make a new segment's directory entry durable (POSIX)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
