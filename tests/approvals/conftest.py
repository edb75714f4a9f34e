"""Fixtures for the approvals tests: both stores (real redis-server), a recording audit sink."""
from __future__ import annotations

import shutil
import socket
import subprocess
import time

import pytest

from proxy.approvals.service import ApprovalService
from proxy.approvals.settings import Settings
from proxy.policy import Workflow
from proxy.store.memory import MemoryStore
from proxy.store.redis import RedisStore

from approvals_helpers import WORKFLOWS


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A real redis-server on a free port, started and stopped by the test."""

    def __init__(self):
        if not shutil.which("redis-server"):
            pytest.skip("redis-server is not installed (apt-get install redis-server)")
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def redis_server():
    srv = RedisServer().start()
    yield srv
    srv.stop()


class Recorder:
    """The audit sink interface, keeping events in a list for assertions."""

    def __init__(self):
        self.events: list[tuple[str, dict]] = []

    def emit(self, kind, **fields):
        self.events.append((kind, fields))

    def kinds(self):
        return [k for k, _ in self.events]

    def of(self, kind):
        return [f for k, f in self.events if k == kind]

    async def start(self):
        pass

    async def close(self):
        pass


@pytest.fixture
def audit():
    return Recorder()


@pytest.fixture(params=["memory", "redis"])
async def store(request):
    if request.param == "memory":
        s = MemoryStore()
        yield s
        await s.close()
    else:
        srv = RedisServer().start()
        s = RedisStore(srv.url)
        await s.start()
        yield s
        await s.close()
        srv.stop()




@pytest.fixture
async def service(store, audit):
    svc = ApprovalService(store, audit, Settings(sweep_seconds=0.1), workflows=WORKFLOWS.get)
    await svc.start()
    yield svc
    await svc.close()
