"""`airlock audit verify` on a real proxy's trail after someone edited a row behind its back."""
from __future__ import annotations

import json

import clickhouse_connect
import httpx

from tests.harness import Airlock, run_cli, wait_until


def test_cli_verify_reports_an_edited_row(tmp_path, aimock):
    cfg = {"providers": {"openai": {"base_url": aimock.url + "/v1", "api_key_env": "TEST_OPENAI_KEY"}},
           "audit": {"flush_seconds": 0.1}}
    env = {"TEST_OPENAI_KEY": "sk-test-provider-key-000000", "AIRLOCK_ADMIN_TOKEN": "adm_tamper_test_token"}
    a = Airlock(cfg, env=env, workdir=tmp_path / "w").start()
    token = a.mint("acme")
    for _ in range(5):
        r = httpx.post(f"{a.gateway_url}/openai/v1/chat/completions", timeout=30,
                       json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
                       headers={"authorization": f"Bearer {token}"})
        assert r.status_code == 200
    ok = run_cli("audit", "verify", env=a.cli_env())
    assert ok.returncode == 0 and "OK" in ok.stdout, ok.stderr
    a.stop()

    # someone with file access rewrites the cost of one model call
    ch = clickhouse_connect.get_client(dsn=f"chdb://{a.workdir / 'var' / 'audit'}")
    try:
        ch.command("ALTER TABLE events UPDATE cost = 0, tokens = 1 WHERE kind = 'request' AND status = 200 "
                   "AND seq = (SELECT min(seq) FROM events WHERE kind = 'request' AND status = 200) "
                   "SETTINGS mutations_sync = 1")
        seq = ch.query("SELECT seq FROM events WHERE tokens = 1 AND kind = 'request'").result_rows[0][0]
    finally:
        ch.close()

    b = Airlock(a.config, env=env, workdir=a.workdir).start()
    try:
        bad = wait_until(lambda: (lambda r: r if r.returncode == 1 else None)(
            run_cli("audit", "verify", "--json", env=b.cli_env())), 30, "verify to run")
        report = json.loads(bad.stdout)
        assert not report["ok"]
        assert {"seq": seq, "problem": "edited"}.items() <= report["problems"][0].items()
        human = run_cli("audit", "verify", env=b.cli_env())
        assert human.returncode == 1 and "edited" in human.stdout and "Traceback" not in human.stderr
    finally:
        b.stop()
