"""``airlock run --workers N``: N processes behind one set of listeners, state in the shared store."""
from __future__ import annotations

import os
import signal

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .harness import Airlock, run_cli, wait_until


def _requests_total(text: str, **match) -> float:
    total = 0.0
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == "airlock_requests_total" and all(s.labels.get(k) == v for k, v in match.items()):
                total += s.value
    return total


def _worker_metrics(a: Airlock, index: int) -> str:
    sock = a.workdir / "var" / "run" / f"worker-{index}.sock"
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(sock))) as c:
        r = c.get("http://worker/metrics", headers=a.admin_headers)
        r.raise_for_status()
        return r.text


@pytest.fixture
def two_workers(tmp_path, redis_url, replay_upstream):
    a = Airlock({"store": {"redis": redis_url},
                 "providers": {"replay": {"base_url": replay_upstream.url + "/v1", "api_key_env": "TEST_KEY"}}},
                env={"TEST_KEY": "sk-upstream-secret"}, workdir=tmp_path / "airlock", args=["--workers", "2"])
    a.start(timeout=120)
    yield a
    a.stop(60)


def _workers(a: Airlock) -> list[dict]:
    r = a.admin("GET", "/v1/workers")
    r.raise_for_status()
    return r.json()["workers"]


def test_workers_share_the_listeners_and_the_store(two_workers):
    a = two_workers
    ws = _workers(a)
    assert [w["index"] for w in ws] == [0, 1]
    assert all(w["alive"] and w["ready"] for w in ws)
    assert len({w["pid"] for w in ws}) == 2 and a.proc.pid not in {w["pid"] for w in ws}

    token = a.mint("acme", agent="pytest")             # minted through the supervisor -> one worker
    n = 60
    for _ in range(n):                                  # a new connection each: the kernel spreads them
        r = httpx.post(f"{a.gateway_url}/replay/v1/json", json={"model": "gpt-4o-mini", "messages": []},
                       headers={"authorization": f"Bearer {token}", "connection": "close"}, timeout=30)
        assert r.status_code == 200, r.text            # the key works on whichever worker got the connection

    per_worker = [_requests_total(_worker_metrics(a, i), listener="gateway") for i in (0, 1)]
    assert all(c > 0 for c in per_worker), per_worker  # both workers served traffic
    for path in ("/metrics", "/readyz", "/v1/workers"):      # the supervisor's own routes need the token too
        assert httpx.get(a.admin_url + path, timeout=30).status_code == 401
    merged = a.admin("GET", "/metrics")
    assert merged.status_code == 200 and merged.headers["x-airlock-workers"] == "2"
    assert _requests_total(merged.text, listener="gateway") == sum(per_worker) >= n
    assert 'worker="0"' in merged.text and 'worker="1"' in merged.text   # gauges stay per process

    reload = a.admin("POST", "/v1/policy/reload").json()
    assert reload["ok"] is True and reload["workers"] == 2

    keys = a.admin("GET", "/v1/keys").json()           # any other admin call is forwarded to a worker
    assert any(k.get("account") == "acme" for k in keys)


def test_a_dead_worker_is_restarted_and_traffic_goes_on(two_workers):
    a = two_workers
    victim = _workers(a)[1]
    os.kill(victim["pid"], signal.SIGKILL)

    def restarted():
        w = _workers(a)[1]
        return w["restarts"] == 1 and w["ready"] and w["alive"] and w["pid"] != victim["pid"] and w
    wait_until(restarted, 60, "worker 1 restarted")
    token = a.mint("acme")
    for _ in range(20):
        r = httpx.post(f"{a.gateway_url}/replay/v1/json", json={"model": "gpt-4o-mini", "messages": []},
                       headers={"authorization": f"Bearer {token}", "connection": "close"}, timeout=30)
        assert r.status_code == 200
    assert "exited with code -9; restarting" in a.logs()

    ing = a.admin("GET", "/v1/workers").json()["ingester"]       # the one audit ingester is watched too
    assert ing["alive"] and ing["restarts"] == 0
    os.kill(ing["pid"], signal.SIGKILL)
    wait_until(lambda: (s := a.admin("GET", "/v1/workers").json()["ingester"])["restarts"] == 1 and s["alive"]
               and s["pid"] != ing["pid"], 60, "ingester restarted")
    def counted():
        r = a.admin("POST", "/v1/audit/query", {"sql": "SELECT count() AS n FROM events WHERE kind = 'request'"})
        return r.status_code == 200 and r.json()["rows"][0]["n"] >= 20
    wait_until(counted, 60, "audit rows queried through the restarted ingester")


def test_sigterm_stops_every_worker_and_exits_zero(two_workers):
    a = two_workers
    pids = [w["pid"] for w in _workers(a)]
    a.signal(signal.SIGTERM)
    assert a.wait(90) == 0

    def gone(pid):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return os.path.exists(f"/proc/{pid}/status") and "zombie" in open(f"/proc/{pid}/status").read()
    assert all(gone(p) for p in pids)


def test_several_workers_need_a_shared_store(tmp_path):
    cfg = tmp_path / "airlock.yaml"
    cfg.write_text("listen: {gateway: '127.0.0.1:0', proxy: '127.0.0.1:0', admin: '127.0.0.1:0'}\n")
    r = run_cli("run", "-c", str(cfg), "--workers", "2", cwd=tmp_path)
    assert r.returncode == 2
    assert "--workers 2 needs a shared store" in r.stderr and "store.redis" in r.stderr
