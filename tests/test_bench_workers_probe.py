"""bench/workers_probe.py: what the workers benchmark reads from /proc and Redis to explain its ratio."""
from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from bench.workers_probe import Roles, connections_by_pid, context_switches, redis_calls

from .harness import wait_until

_SLEEP = [sys.executable, "-c", "import time; time.sleep(60)"]


@pytest.fixture
def procs():
    started: list[subprocess.Popen] = []

    def start(cmd, **env):
        p = subprocess.Popen(cmd, env={**os.environ, **env})
        started.append(p)
        return p
    yield start
    for p in started:
        p.kill()
        p.wait()


def test_a_supervisor_tree_is_told_apart_by_the_worker_environment(procs):
    # a stand-in supervisor: two workers (started in reverse order) and an ingester
    script = ("import os, subprocess, sys, time\n"
              "sleep = [sys.executable, '-c', 'import time; time.sleep(60)']\n"
              "for i in (1, 0):\n"
              "    subprocess.Popen(sleep, env={**os.environ, 'AIRLOCK_WORKER': f'{i}/2'})\n"
              "subprocess.Popen(sleep + ['proxy.audit.ingester'])\n"
              "time.sleep(60)\n")
    sup = procs([sys.executable, "-c", script])
    roles = wait_until(lambda: (r := Roles.of(sup.pid)) and len(r.workers) == 2 and r.others and r,
                       what="the stand-in's three children")
    assert roles.supervisor == sup.pid and sup.pid not in roles.workers
    envs = [open(f"/proc/{p}/environ", "rb").read() for p in roles.workers]
    assert b"AIRLOCK_WORKER=0/2" in envs[0] and b"AIRLOCK_WORKER=1/2" in envs[1]
    assert set(roles.others) == {"ingester"}
    assert set(roles.pids()) == {"worker-0", "worker-1", "supervisor", "ingester"}


def test_a_single_process_is_its_own_worker(procs):
    p = procs(_SLEEP)
    roles = Roles.of(p.pid)
    assert roles.supervisor is None and roles.workers == [p.pid]
    assert roles.pids() == {"worker-0": p.pid}


def test_connections_are_counted_on_the_listening_side_only():
    with socket.create_server(("127.0.0.1", 0)) as srv:
        port = srv.getsockname()[1]
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        accepted = [srv.accept()[0] for _ in range(2)]        # the third waits in the backlog
        try:
            got = connections_by_pid(f"http://127.0.0.1:{port}/x", [os.getpid()])
            # the client ends have an ephemeral local port; the unaccepted one has no descriptor here
            assert got == {os.getpid(): 2}
        finally:
            for s in clients + accepted:
                s.close()


def test_context_switches_grow_when_the_process_waits():
    vol, inv = context_switches(os.getpid())
    subprocess.run([sys.executable, "-c", "pass"], check=True)        # waiting for it blocks: voluntary switches
    vol2, inv2 = context_switches(os.getpid())
    assert vol2 > vol and inv2 >= inv


def test_redis_calls_count_commands(redis_url):
    import redis
    before = redis_calls(redis_url)
    with redis.Redis.from_url(redis_url) as r:
        for _ in range(3):
            r.get("bench-workers-probe")
    assert redis_calls(redis_url)["get"] - before.get("get", 0) == 3
