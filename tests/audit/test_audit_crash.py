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
        v = b.admin("GET", "/v1/audit/verify").json()
        assert v["problem_count"] == 0 and v["streams"] >= 2, v
    finally:
        b.stop()
