"""The audit write-ahead log: segment files of JSON lines, fsync per batch.

A row counts as written once its batch is in a segment and fsynced. Segments are named
``<creation ns, 20 digits>-<stream>.wal`` so sorting the names gives write order across restarts.

Sealing protocol (writer -> ingester). The segment a writer appends to is ``<name>.wal.open``; the
writer *seals* it (close, rename to ``<name>.wal``, fsync the directory) every ``batch_size`` rows or
``flush_seconds``, whichever comes first, and when asked to (``AuditSink.flush``). The ingester
(``proxy.audit.ingester``) only reads sealed ``*.wal`` segments of live writers and deletes each one
once every row in it is in ClickHouse. A slot whose writer is gone (its flock is free) is taken whole,
open segment included. A torn last line (the process died mid-write) is ignored on read: that batch was
never acknowledged.
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
OPEN_SUFFIX = ".wal.open"
_LINES_PER_WRITE = 128           # ~90 kB of typical rows per write()


class WalError(OSError):
    """The WAL could not be written (disk full, permissions)."""


MAX_SLOTS = 64


def try_lock(directory: Path, name: str = ".lock") -> int | None:
    """An exclusive flock on ``directory/name`` (None if a live process holds it)."""
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / name, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def unlock(fd: int | None) -> None:
    if fd is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def slot_dirs(base: Path) -> list[Path]:
    """The WAL directories under ``base``: the base itself (slot 0) and ``w1``.. for extra writers."""
    return [base] + sorted(p for p in base.glob("w[0-9]*") if p.is_dir())


def sealed(directory: Path) -> list[Path]:
    """Sealed segments of one slot, oldest first."""
    return sorted(directory.glob(f"*{SUFFIX}"))


def seal_leftovers(directory: Path) -> int:
    """Seal the open segments a dead writer left in ``directory`` (the caller holds its lock)."""
    n = 0
    for p in sorted(directory.glob(f"*{OPEN_SUFFIX}")):
        os.replace(p, p.with_name(p.name[: -len(OPEN_SUFFIX)] + SUFFIX))
        n += 1
    if n:
        fsync_dir(directory)
    return n


class Wal:
    """The segments of one writer. Several processes may share ``base``: each takes the first free
    slot (a directory it holds an flock on), so no writer ever touches another one's segments; the
    ingester takes the slots of dead processes whole."""

    def __init__(self, base: Path, stream: str, segment_bytes: int = 64 * 1024 * 1024):
        self.base = Path(base)
        self._lock: int | None = None
        for i in range(MAX_SLOTS):
            d = self.base if i == 0 else self.base / f"w{i}"
            self._lock = try_lock(d)
            if self._lock is not None:
                self.dir = d
                break
        else:
            raise WalError(0, f"audit WAL {self.base}: all {MAX_SLOTS} writer slots are in use")
        seal_leftovers(self.dir)               # a dead writer's open segment: the ingester may take it now
        self.stream = stream
        self.segment_bytes = segment_bytes
        self._fh: Any = None
        self._path: Path | None = None
        self._size = 0
        self.rows = 0                          # rows in the open segment
        self.dirty = False                     # rows written but not fsynced yet
        self.dir_dirty = False                 # the open segment's directory entry is not fsynced yet
        self.opened = 0.0                      # monotonic time the open segment got its first row

    # -- writing ----------------------------------------------------------------------
    def append(self, rows: list[dict[str, Any]]) -> None:
        """Append rows as JSON lines (see ``write_lines``). Raises WalError."""
        self.write_lines([orjson.dumps(r) + b"\n" for r in rows])

    def write_lines(self, lines: list[bytes]) -> None:
        """Append JSON lines (each ending in a newline), written to the OS (a crash of this process no longer
        loses them). The segment stays ``dirty`` until the writer fsyncs it (``dirty_fd``) or it is sealed.
        Raises WalError."""
        try:
            if self._fh is not None and self._size >= self.segment_bytes:
                self.seal()
            if self._fh is None:
                self._path = self.dir / f"{time.time_ns():020d}-{self.stream}{OPEN_SUFFIX}"
                self._fh = open(self._path, "ab", buffering=0)     # each write() is one system call
                self._size, self.rows, self.opened = 0, 0, time.monotonic()
                self.dir_dirty = True          # its directory entry: fsynced with its first rows (dirty_fd)
            if len(lines) == 1:                 # a governed call's row (``Writer.write_now``)
                size = _write_all(self._fh, lines[0])
            else:
                # joined a slice at a time: a buffer of a whole batch (megabytes) is mapped fresh from the OS and
                # page-faulted in for every batch; slices this size reuse the same heap memory
                size = 0
                for i in range(0, len(lines), _LINES_PER_WRITE):
                    size += _write_all(self._fh, b"".join(lines[i:i + _LINES_PER_WRITE]))
            self.dirty = True
        except OSError as e:
            # A partial write leaves a torn line that readers skip; start a fresh segment next time.
            self._close_quietly()
            raise WalError(e.errno, f"audit WAL write failed in {self.dir}: {e.strerror or e}") from e
        self._size += size
        self.rows += len(lines)

    def dirty_fd(self) -> tuple[int, bool] | None:
        """(a duplicate descriptor of the open segment, whether its directory entry is new) when it has rows
        not fsynced yet. The caller fsyncs the file (and then the directory) and closes the descriptor,
        outside any lock: a duplicate stays valid even if the segment is sealed meanwhile."""
        if not self.dirty or self._fh is None:
            return None
        self.dirty = False
        new_entry, self.dir_dirty = self.dir_dirty, False
        return os.dup(self._fh.fileno()), new_entry

    def detach(self) -> "Detached | None":
        """Take the open segment out of use (the next append opens a new one) without any disk wait:
        the caller finishes the seal with ``Detached.seal()``, outside its locks. Cheap."""
        if self._fh is None:
            return None
        out = Detached(self._fh, self._path, self.dirty or self.dir_dirty)
        self._forget()
        return out

    def seal(self) -> None:
        """Close the open segment and hand it to the ingester (rename to ``*.wal``). Raises WalError."""
        seg = self.detach()
        if seg is not None:
            seg.seal()

    def _close_quietly(self) -> None:
        if self._fh is not None:
            _close(self._fh)
        self._forget()

    def _forget(self) -> None:
        """No open segment any more (the next append opens one)."""
        self._fh, self._path, self._size, self.rows, self.dirty, self.dir_dirty = None, None, 0, 0, False, False

    @property
    def current_size(self) -> int:
        return self._size

    @property
    def current(self) -> Path | None:
        return self._path

    # -- reading ----------------------------------------------------------------------
    def segments(self) -> list[Path]:
        """This writer's segments in write order: sealed ones, then the open one."""
        return sealed(self.dir) + sorted(self.dir.glob(f"*{OPEN_SUFFIX}"))

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

    def size_bytes(self) -> int:
        return dir_bytes(self.dir)

    def close(self) -> None:
        try:
            self.seal()
        except WalError as e:
            log.error("audit: %s (the segment is taken whole once this writer is gone)", e)
        unlock(self._lock)
        self._lock = None


class Detached:
    """A segment taken out of use by ``Wal.detach``, not sealed yet."""

    __slots__ = ("fh", "path", "dirty")

    def __init__(self, fh: Any, path: Path, dirty: bool):
        self.fh, self.path, self.dirty = fh, path, dirty

    def seal(self) -> None:
        """fsync (if it has rows or an entry not fsynced), close, rename to ``*.wal``, fsync the directory.
        Raises WalError; the segment is closed either way (a dead writer's open segment is sealed by
        ``seal_leftovers``, a live one's unsealed rows stay in its ``.wal.open`` file)."""
        try:
            if self.dirty:
                os.fsync(self.fh.fileno())
        except OSError as e:
            _close(self.fh)
            raise WalError(e.errno, f"audit WAL fsync failed in {self.path.parent}: {e.strerror or e}") from e
        _close(self.fh)
        try:
            os.replace(self.path, self.path.with_name(self.path.name[: -len(OPEN_SUFFIX)] + SUFFIX))
            fsync_dir(self.path.parent)
        except OSError as e:
            raise WalError(e.errno, f"audit WAL seal failed in {self.path.parent}: {e.strerror or e}") from e


def _write_all(fh: Any, data: bytes) -> int:
    """Write ``data`` to an unbuffered file (a short write, such as on a nearly full disk, is continued and
    raises once nothing more fits)."""
    n = fh.write(data)
    if n != len(data):
        view = memoryview(data)
        while n < len(data):
            k = fh.write(view[n:])
            if not k:
                raise OSError(28, "No space left on device")
            n += k
    return n


def _close(fh: Any) -> None:
    try:
        fh.close()
    except OSError:
        pass


def dir_bytes(directory: Path) -> int:
    total = 0
    for p in directory.glob("*.wal*"):
        try:
            total += p.stat().st_size
        except FileNotFoundError:
            pass
    return total


def fsync_dir(directory: Path) -> None:
    """Make a directory entry (new or renamed segment) durable (POSIX)."""
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
