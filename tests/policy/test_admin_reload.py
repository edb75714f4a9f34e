"""A running Airlock: GET /v1/policy, POST /v1/policy/reload, the file watcher, the CLI over the admin API."""
from __future__ import annotations

from tests.harness import run_cli, wait_until

GOOD = "tools:\n  - {id: r, name: bash, action: deny}\n"
BETTER = "tools:\n  - {id: r, name: bash, action: require_approval}\n  - {id: s, name: ls, action: deny}\n"
BAD = "tools:\n  - {id: r, name: bash, action: explode}\n"


def test_reload_over_the_admin_api_and_cli(airlock_factory, tmp_path):
    pol = tmp_path / "policy.yaml"
    pol.write_text(GOOD)
    a = airlock_factory({"policies": [str(pol)]})
    st = a.admin("GET", "/v1/policy").json()
    assert st["files"] == [str(pol)] and st["counts"]["rules"] == 1
    v1 = st["version"]

    pol.write_text(BAD)
    r = a.admin("POST", "/v1/policy/reload")
    body = r.json()
    assert r.status_code == 200 and body["ok"] is False and body["version"] == v1
    assert "explode" in body["error"] and body["errors"][0]["line"] == 2
    assert a.admin("GET", "/v1/policy").json()["last_error"]

    cli = run_cli("policy", "reload", env=a.cli_env())
    assert cli.returncode == 1 and "reload rejected" in cli.stderr and "Traceback" not in cli.stderr

    pol.write_text(BETTER)
    r = run_cli("policy", "reload", "--json", env=a.cli_env())
    assert r.returncode == 0, r.stderr
    st = a.admin("GET", "/v1/policy").json()
    assert st["version"] != v1 and st["counts"]["rules"] == 2 and st["last_error"] is None
    r = run_cli("policy", "status", env=a.cli_env())
    assert r.returncode == 0 and st["version"] in r.stdout


def test_the_watcher_reloads_edited_files(airlock_factory, tmp_path):
    pol = tmp_path / "policy.yaml"
    pol.write_text(GOOD)
    a = airlock_factory({"policies": [str(tmp_path)]})
    v1 = a.admin("GET", "/v1/policy").json()["version"]
    pol.write_text(BETTER)
    wait_until(lambda: a.admin("GET", "/v1/policy").json()["version"] != v1, 20, "hot reload")
    v2 = a.admin("GET", "/v1/policy").json()["version"]
    pol.write_text(BAD)
    wait_until(lambda: a.admin("GET", "/v1/policy").json()["reloads"]["error"] >= 1, 20, "rejected reload")
    assert a.admin("GET", "/v1/policy").json()["version"] == v2
    assert "policy reload rejected" in a.logs()


def test_invalid_policy_at_startup_is_a_clear_error(airlock_factory, tmp_path):
    pol = tmp_path / "policy.yaml"
    pol.write_text(BAD)
    try:
        airlock_factory({"policies": [str(pol)]})
    except RuntimeError as e:
        assert "policy.yaml:2" in str(e) and "explode" in str(e)
    else:
        raise AssertionError("airlock started with an invalid policy")
