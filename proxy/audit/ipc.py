"""The proxy <-> ingester protocol: one request per connection on a local Unix socket.

Frames are an 8-byte big-endian length and a payload. The request is an orjson object
``{"op": ..., ...}``; the answer is a pickle of ``("ok", value)`` or ``("err", type, message)``.
Pickle keeps ClickHouse's Python types (datetime, Decimal, UUID) intact for ``query``; the socket is
mode 0600 and the client checks it belongs to its own user before connecting.
Ops: ``ping``, ``stats``, ``flush {timeout}``, ``query {sql, params, settings}``, ``raw {sql, params, fmt}``, ``command {sql}``
(DDL/ALTER: ``airlock`` itself never sends one; tests and maintenance do).
"""
from __future__ import annotations

import hashlib
import os
import pickle
import socket
import struct
from pathlib import Path
from typing import Any

import orjson

_LEN = struct.Struct(">Q")


class IngesterUnavailable(ConnectionError):
    """No ingester answers on the socket (starting, restarting, or gone)."""


class IngesterError(Exception):
    """The ingester ran the request and it failed (the ClickHouse message, safe to show)."""


def socket_path(wal_dir: Path) -> Path:
    """``<wal_dir>/ingester.sock``, or a short path under /tmp when that one is too long for AF_UNIX."""
    p = Path(wal_dir).resolve() / "ingester.sock"
    if len(str(p)) < 100:
        return p
    return Path("/tmp") / f"airlock-audit-{hashlib.sha256(str(p).encode()).hexdigest()[:16]}.sock"


def send(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(_LEN.pack(len(payload)))
    sock.sendall(payload)


def recv(sock: socket.socket) -> bytes | None:
    head = _exact(sock, _LEN.size)
    if head is None:
        return None
    body = _exact(sock, _LEN.unpack(head)[0])
    if body is None:
        raise ConnectionError("ingester connection closed mid-answer")
    return body


def _exact(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            return None
        got += k
    return bytes(buf)


def call(path: Path, op: str, timeout: float = 60.0, **args: Any) -> Any:
    """One request; raises IngesterUnavailable (nobody answers) or IngesterError (the op failed)."""
    try:
        owner = os.stat(path).st_uid
    except FileNotFoundError:
        raise IngesterUnavailable(f"no audit ingester on {path}") from None
    if owner != os.geteuid():                 # answers are unpickled: only our own user's socket will do
        raise IngesterUnavailable(f"{path} belongs to uid {owner}, not to this process's user")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        try:
            s.connect(os.fspath(path))
        except (FileNotFoundError, ConnectionRefusedError) as e:
            raise IngesterUnavailable(f"no audit ingester on {path}") from e
        send(s, orjson.dumps({"op": op, **args}))
        body = recv(s)
    except OSError as e:
        if isinstance(e, IngesterUnavailable):
            raise
        raise IngesterUnavailable(f"audit ingester on {path}: {e}") from e
    finally:
        s.close()
    if body is None:
        raise IngesterUnavailable(f"audit ingester on {path} closed the connection")
    out = pickle.loads(body)
    if out[0] == "ok":
        return out[1]
    raise IngesterError(out[2])


def answer(value: Any = None, error: BaseException | None = None) -> bytes:
    if error is None:
        return pickle.dumps(("ok", value), protocol=pickle.HIGHEST_PROTOCOL)
    return pickle.dumps(("err", type(error).__name__, str(error) or type(error).__name__))
