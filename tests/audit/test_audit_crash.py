"""SIGKILL of a proxy under load: after a restart every acknowledged call has its audit row, exactly once."""
from __future__ import annotations

import signal
import threading

import httpx

from tests.harness import Airlock, wait_until


def test_sigkill_under_load_loses_no_acknowledged_row(tmp_path, aimock):
    cfg = {"providers": {"openai": {"base_url": aimock.url + "/v1", "api_key_env": "TEST_OPENAI_KEY"}},
           "audit": {"flush_seconds": 0.5}}
    env = {"TEST_OPENAI_KEY": "sk-test-provider-key-000000", "AIRLOCK_ADMIN_TOKEN": "adm_crash_test_token"}
    a = Airlock(cfg, env=env, workdir=tmp_path / "w").start()
    token = a.mint("acme", agent="load")
    acked: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def worker(w: int) -> None:
        with httpx.Client(timeout=30) as c:
            i = 0
            while not stop.is_set():
                sid = f"w{w}-{i}"
                i += 1
                try:
                    r = c.post(f"{a.gateway_url}/openai/v1/chat/completions",
                               json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
                               headers={"authorization": f"Bearer {token}", "x-airlock-session": sid})
                except httpx.HTTPError:
                    continue                     # no answer: not acknowledged
                if r.status_code == 200:
                    with lock:
                        acked.append(sid)

    threads = [threading.Thread(target=worker, args=(w,), daemon=True) for w in range(6)]
    for t in threads:
        t.start()
    wait_until(lambda: len(acked) >= 150, 120, "150 acknowledged calls")
    a.signal(signal.SIGKILL)
    a.wait(30)
    stop.set()
    for t in threads:
        t.join(30)
    with lock:
        acknowledged = list(acked)

    b = Airlock(a.config, env=env, workdir=a.workdir).start()     # same data dir: WAL replayed at start
    try:
        def counts():
            r = b.admin("POST", "/v1/audit/query", {
                "sql": "SELECT session, count() AS n FROM events WHERE kind = 'request' AND session != '' "
                       "GROUP BY session", "limit": 1_000_000})
            r.raise_for_status()
            return {x["session"]: x["n"] for x in r.json()["rows"]}

        seen = wait_until(lambda: (lambda c: c if all(s in c for s in acknowledged) else None)(counts()), 60,
                          "every acknowledged call in ClickHouse")
        assert [s for s in acknowledged if seen[s] != 1] == []
        assert [s for s, n in seen.items() if n != 1] == []           # nothing duplicated by the replay
        # the killed writer's stream, then the new one's (its first segment is sealed within flush_seconds)
        v = wait_until(lambda: (lambda x: x if x["streams"] >= 2 else None)(b.admin("GET", "/v1/audit/verify").json()),
                       60, "both writer streams in ClickHouse")
        assert v["problem_count"] == 0, v
    finally:
        b.stop()


def test_proxy_with_clickhouse_down_serves_and_spills_then_replays(tmp_path, aimock):
    """ClickHouse unreachable: calls still succeed, their rows wait in the WAL; the next start with a
    reachable ClickHouse (chDB here: no server binary is available) replays them exactly once."""
    from tests.harness import free_port
    env = {"TEST_OPENAI_KEY": "sk-test-provider-key-000000", "AIRLOCK_ADMIN_TOKEN": "adm_spill_test_token"}
    providers = {"openai": {"base_url": aimock.url + "/v1", "api_key_env": "TEST_OPENAI_KEY"}}
    down = Airlock({"providers": providers, "audit": {"clickhouse": f"http://127.0.0.1:{free_port()}/default",
                                                      "wal_dir": "var/wal"}},
                   env=env, workdir=tmp_path / "w").start()
    token = down.mint("acme")
    try:
        for i in range(10):
            r = httpx.post(f"{down.gateway_url}/openai/v1/chat/completions", timeout=30,
                           json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
                           headers={"authorization": f"Bearer {token}", "x-airlock-session": f"spill-{i}"})
            assert r.status_code == 200
        status = down.admin("GET", "/v1/audit/status").json()
        assert status["backlog"] is True and status["accepting"] is True and status["wal_bytes"] > 0
        q = down.admin("POST", "/v1/audit/query", {"sql": "SELECT 1"})
        assert q.status_code == 503 and "audit query failed" in q.json()["error"]["message"]
    finally:
        down.stop()
    cfg = dict(down.config, audit={"clickhouse": "chdb://./var/audit", "wal_dir": "var/wal"})
    up = Airlock(cfg, env=env, workdir=down.workdir).start()
    try:
        def sessions():
            r = up.admin("POST", "/v1/audit/query", {"sql": "SELECT session, count() AS n FROM events "
                                                            "WHERE kind = 'request' AND session LIKE 'spill-%' "
                                                            "GROUP BY session"})
            return {x["session"]: x["n"] for x in r.json()["rows"]} if r.status_code == 200 else {}

        seen = wait_until(lambda: (lambda s: s if len(s) == 10 else None)(sessions()), 60, "the spilled rows")
        assert set(seen.values()) == {1}
        assert up.admin("GET", "/v1/audit/verify").json()["ok"]
    finally:
        up.stop()
