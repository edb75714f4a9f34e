"""``airlock env``: the exports an agent needs, checked by a real shell and by a real agent
(the official OpenAI SDK in a separate process) going through the explicit proxy."""
from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys

import pytest
import yaml

from tests.deploy.certs import start_tls_upstream
from tests.harness import run_cli
from tests.upstreams import stream_bytes

RECORDING = "openai-chat-text-include-usage"
PROVIDER_KEY = "sk-provider-key-for-env-test"


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "airlock.yaml"
    path.write_text(yaml.safe_dump({"listen": {"proxy": "0.0.0.0:18080"}, "policies": []}))
    return path


def env_json(config, *args: str) -> dict:
    res = run_cli("-c", str(config), "env", "--json", *args)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_exports_carry_the_token_and_a_bundle_that_keeps_system_cas(config):
    out = env_json(config, "--token", "alk_0123456789abcdef_secretpart")
    env = out["env"]
    assert env["HTTPS_PROXY"] == env["https_proxy"] == "http://airlock:alk_0123456789abcdef_secretpart@127.0.0.1:18080"
    assert env["HTTP_PROXY"] == env["HTTPS_PROXY"]
    assert "127.0.0.1" in env["NO_PROXY"].split(",") and "localhost" in env["NO_PROXY"].split(",")
    ca = env["NODE_EXTRA_CA_CERTS"]
    assert ca == out["ca"] and ca.endswith("var/ca/mitmproxy-ca-cert.pem")
    for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "CODEX_CA_CERTIFICATE"):
        assert env[name] == out["ca_bundle"]
    bundle = open(out["ca_bundle"], "rb").read()
    assert bundle.rstrip().endswith(open(ca, "rb").read().strip())
    assert bundle.count(b"BEGIN CERTIFICATE") > 10         # the system CAs are still there
    assert ssl.create_default_context(cafile=out["ca_bundle"])   # and it loads


def test_sh_output_survives_a_real_shell(config):
    token = "alk_x'y z$HOME"                                 # quotes, spaces, $: must stay literal
    res = run_cli("-c", str(config), "env", "--token", token)
    assert res.returncode == 0, res.stderr
    shell = subprocess.run(["sh", "-c", res.stdout + 'printf "%s\\n" "$HTTPS_PROXY" "$SSL_CERT_FILE"'],
                           capture_output=True, text=True, env={"PATH": os.environ["PATH"], "HOME": "/nowhere"})
    proxy, bundle = shell.stdout.splitlines()
    assert proxy == "http://airlock:alk_x%27y%20z%24HOME@127.0.0.1:18080"
    assert bundle.endswith("ca-bundle.pem")
    unset = run_cli("-c", str(config), "env", "--unset", "--mint").stdout     # --unset needs nothing else
    shell = subprocess.run(["sh", "-c", res.stdout + unset + 'echo "[${HTTPS_PROXY-unset}]"'],
                           capture_output=True, text=True)
    assert shell.stdout.strip() == "[unset]"
    names = json.loads(run_cli("env", "--unset", "--json").stdout)["unset"]
    assert {"HTTPS_PROXY", "NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE"} <= set(names)


@pytest.mark.parametrize("shell, line", [
    ("fish", "set -gx HTTPS_PROXY 'http://airlock:tok@127.0.0.1:18080'"),
    ("powershell", "$env:HTTPS_PROXY = 'http://airlock:tok@127.0.0.1:18080'"),
    ("sh", "export HTTPS_PROXY='http://airlock:tok@127.0.0.1:18080'"),
])
def test_other_shells(config, shell, line):
    res = run_cli("-c", str(config), "env", "--token", "tok", "--shell", shell)
    assert res.returncode == 0, res.stderr
    assert line in res.stdout.splitlines()


def test_proxy_url_override_and_errors(config, tmp_path):
    out = env_json(config, "--token", "t", "--proxy-url", "http://airlock.internal:8080")
    assert out["env"]["HTTPS_PROXY"] == "http://airlock:t@airlock.internal:8080"
    res = run_cli("-c", str(config), "env", "--shell", "tcsh")
    assert res.returncode == 2 and "sh, fish, powershell" in res.stderr
    res = run_cli("-c", str(config), "env", "--mint")
    assert res.returncode == 2 and "--account" in res.stderr
    res = run_cli("-c", str(config), "env", "--token", "t", "--ca", str(tmp_path / "missing.pem"))
    assert res.returncode == 1 and "no such file" in res.stderr and "Traceback" not in res.stderr
    res = run_cli("-c", str(config), "env")                  # works, but says what is missing
    assert res.returncode == 0 and "no gateway token" in res.stderr
    assert "export HTTPS_PROXY='http://127.0.0.1:18080'" in res.stdout


AGENT = r"""
import sys, openai
client = openai.OpenAI(base_url=sys.argv[1], api_key="not-a-real-key", max_retries=0)
stream = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}],
                                        stream=True, stream_options={"include_usage": True})
print("".join(c.choices[0].delta.content or "" for c in stream if c.choices))
"""


def test_minted_env_sends_an_unmodified_sdk_agent_through_airlock(airlock_factory, tmp_path):
    """A stand-in provider on https://127.0.0.2 (not in NO_PROXY); the agent process gets only the
    variables printed by ``airlock env --mint``."""
    upstream, _ = start_tls_upstream("127.0.0.2", 0, ["127.0.0.2"], tmp_path / "tls")
    try:
        base = f"https://127.0.0.2:{upstream.port}/{RECORDING}/v1"
        a = airlock_factory({"providers": {"openai": {"base_url": base, "api_key_env": "OPENAI_API_KEY"}},
                             "tls": {"ssl_insecure": True}}, env={"OPENAI_API_KEY": PROVIDER_KEY})
        res = run_cli("env", "--mint", "--account", "acme", "--agent", "env-test", "--json", env=a.cli_env(),
                      cwd=a.workdir)
        assert res.returncode == 0, res.stderr
        out = json.loads(res.stdout)
        assert out["token_id"]
        agent_env = {"PATH": os.environ["PATH"], **out["env"]}
        agent = subprocess.run([sys.executable, "-c", AGENT, base], capture_output=True, text=True,
                               env=agent_env, timeout=60)
        assert agent.returncode == 0, agent.stderr + a.logs()
        expected = "".join(
            (json.loads(line[6:])["choices"] or [{}])[0].get("delta", {}).get("content") or ""
            for line in stream_bytes(RECORDING).decode().splitlines()
            if line.startswith("data: {"))
        assert agent.stdout.strip() == expected.strip()
        seen = {k.lower(): v for k, v in upstream.requests[-1]["headers"].items()}
        assert seen["authorization"] == f"Bearer {PROVIDER_KEY}"          # key custody through the proxy
        assert "proxy-authorization" not in seen
        # the minted token is listed with its agent
        keys = a.admin("GET", "/v1/keys").json()
        assert any(k["id"] == out["token_id"] and k["agent"] == "env-test" for k in keys)
    finally:
        upstream.stop()

