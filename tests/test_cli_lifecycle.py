"""The CLI against a running Airlock, start-up banner, graceful shutdown, start-up errors."""
from __future__ import annotations

import json
import signal
import socket
import threading

import httpx

from tests.harness import Airlock, free_port, run_cli, wait_until
from tests.upstreams import stream_bytes


def test_keys_mint_list_revoke_through_the_cli(airlock_factory):
    a = airlock_factory()
    env = a.cli_env()
    r = run_cli("keys", "mint", "--account", "acme", "--subject", "alice", "--agent", "codex", "--ttl", "2h",
                "--json", env=env)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert set(out) >= {"token", "account", "flow", "subject", "agent", "expires_at"}
    assert (out["account"], out["subject"], out["agent"], out["flow"]) == ("acme", "alice", "codex", None)
    listed = json.loads(run_cli("keys", "list", "--json", env=env).stdout)
    assert [k["id"] for k in listed] == [out["id"]]
    assert out["token"] not in json.dumps(listed)               # listings never show the token
    table = run_cli("keys", "list", env=env).stdout
    assert "ACCOUNT" in table and "acme" in table
    assert run_cli("keys", "revoke", out["id"], env=env).returncode == 0
    r = httpx.post(a.gateway_url + "/openai/v1/models", headers={"authorization": f"Bearer {out['token']}"})
    assert r.status_code == 401


def test_cli_without_a_running_airlock_says_what_to_do(tmp_path):
    port = free_port()
    r = run_cli("--admin", f"http://127.0.0.1:{port}", "--admin-token", "x", "keys", "list", cwd=tmp_path)
    assert r.returncode == 3
    assert "cannot reach Airlock's admin API" in r.stderr and "airlock run" in r.stderr
    assert "Traceback" not in r.stderr


def test_cli_with_a_wrong_admin_token(airlock_factory):
    a = airlock_factory()
    r = run_cli("--admin", a.admin_url, "--admin-token", "wrong", "keys", "list")
    assert r.returncode == 3 and "admin token" in r.stderr


def test_ca_path_prints_an_existing_certificate(tmp_path):
    (tmp_path / "airlock.yaml").write_text("data_dir: ./state\n")
    r = run_cli("ca", "path", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    path = r.stdout.strip()
    assert path.endswith("mitmproxy-ca-cert.pem")
    assert open(path).read().startswith("-----BEGIN CERTIFICATE-----")


def test_banner_says_what_listens_where(airlock_factory):
    a = airlock_factory()
    log = a.logs()
    for key in ("gateway", "proxy", "admin"):
        assert a.config["listen"][key] in log
    assert "CA" in log and "store    in-process" in log and "chdb://" in log


def test_sigterm_lets_an_in_flight_stream_finish_then_exits_0(tmp_path, replay_upstream):
    a = Airlock({"providers": {"replay": {"base_url": replay_upstream.url + "/v1"}}}, workdir=tmp_path / "a").start()
    token = a.mint("acme")
    got: list[bytes] = []
    first = threading.Event()

    def client():
        with httpx.stream("POST", f"{a.gateway_url}/replay/v1/slow-anthropic-text-basic/messages",
                          json={"stream": True}, headers={"authorization": f"Bearer {token}"}, timeout=60) as r:
            for chunk in r.iter_raw():
                got.append(chunk)
                first.set()

    t = threading.Thread(target=client)
    t.start()
    assert first.wait(30)
    a.signal(signal.SIGTERM)
    t.join(60)
    assert b"".join(got) == stream_bytes("anthropic-text-basic")
    assert a.wait(60) == 0
    # and the listeners are closed
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", int(a.config["listen"]["gateway"].rsplit(":", 1)[1]))) != 0


def test_port_in_use_is_a_clear_start_up_error(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = f"127.0.0.1:{s.getsockname()[1]}"
        a = Airlock({"listen": {"gateway": busy}}, workdir=tmp_path / "a")
        try:
            a.start(timeout=30)
            raise AssertionError("airlock started on a busy port")
        except RuntimeError:
            pass
        wait_until(lambda: a.proc.poll() is not None, 30, "airlock to exit")
        assert a.proc.returncode != 0
        assert "listen.gateway" in a.logs() and "already in use" in a.logs().lower()
        assert a.proc.returncode == 2
        assert "Traceback" not in a.logs()
